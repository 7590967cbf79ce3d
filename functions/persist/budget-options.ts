/**
 * What the shared write budget (shared-budget.ts) is made with, and what it
 * tells about each write: its options, checked once at construction.
 */
import type { Redis } from 'ioredis';
import type { BudgetLogger } from './budget-lease.js';
import { SLACK_MS } from './spacer.js';

/** Kept by the script for 10 minutes after its last use; a lease must be far shorter. */
const MAX_LEASE_MS = 60_000;

export type { BudgetLogger } from './budget-lease.js';

/** Where the budget comes from: Redis (shared by all replicas) or this process alone. */
export type BudgetMode = 'shared' | 'local';

/** One write made under the budget, for metrics. */
export interface BudgetWrite {
  /** From the write's start to its answer (or its error). */
  latencyMs: number;
  /** The database answered it (see WriteBudget.run's `answered`). */
  ok: boolean;
  /** The budget this write was made under. */
  mode: BudgetMode;
  /** Writes per second the budget allows after this write. */
  rate: number;
}

export interface SharedBudgetOptions {
  /**
   * The client the script runs on. A call made while it (re)connects waits for it
   * up to redisTimeoutMs, and fails at once on a connection error (refused, reset).
   */
  redis: Redis;
  /** writeBudgetKey(database) (functions/shared/redis/keys.ts). */
  key: string;
  /** The database's budget (DB_WRITE_OPS_PER_SEC): a hard ceiling, writes per second. */
  ceiling: number;
  /** The rate never adapts below this, writes per second. */
  floor: number;
  /** Writes slower than this (DB_LATENCY_TARGET_MS) lower the rate. */
  targetMs: number;
  /** The most replicas that may run: a replica cut off from Redis writes at ceiling / maxReplicas. */
  maxReplicas: number;
  /** How long a lease lasts without renewal; the others stall at most this long after a holder dies. Default 3000. */
  leaseMs?: number;
  /** MAX_BATCH_DOCS: with it, the largest batch is adapted in Redis for every replica (batchLimit). */
  maxBatchDocs?: number;
  /** How long a write waits on any one Redis call before falling back. Default 500. */
  redisTimeoutMs?: number;
  log: BudgetLogger;
  /** Called after every write (e.g. to observe spillway_persist_write_latency_seconds). */
  onWrite?: (write: BudgetWrite) => void;
  /** Called when the budget repaired a step of Redis's clock (commands/includes/budget.lua, "Clock steps"). */
  onClockStep?: () => void;
}

/** The options' figures, checked; with the lease's defaults filled in. */
export function checked(options: SharedBudgetOptions): { leaseMs: number; timeoutMs: number } {
  const leaseMs = options.leaseMs ?? 3000;
  const timeoutMs = options.redisTimeoutMs ?? 500;
  if (!(options.ceiling > 0)) throw new RangeError('ceiling must be above 0 writes/s');
  if (!(options.floor > 0)) throw new RangeError('floor must be above 0 writes/s');
  if (!(options.targetMs > 0)) throw new RangeError('targetMs must be above 0');
  if (!Number.isInteger(options.maxReplicas) || options.maxReplicas < 1)
    throw new RangeError('maxReplicas must be an integer of at least 1');
  if (!(timeoutMs > 0)) throw new RangeError('redisTimeoutMs must be above 0');
  // Renewed every leaseMs/3, each renewal given redisTimeoutMs: a slow renewal is not yet late.
  if (!(leaseMs >= 2 * timeoutMs && leaseMs <= MAX_LEASE_MS))
    throw new RangeError(`leaseMs must be between 2 × redisTimeoutMs and ${MAX_LEASE_MS}`);
  if (SLACK_MS / Math.min(options.floor, options.ceiling) > MAX_LEASE_MS)
    throw new RangeError('floor must allow at least one write a minute');
  const { maxBatchDocs } = options;
  if (maxBatchDocs !== undefined && !(Number.isInteger(maxBatchDocs) && maxBatchDocs >= 1))
    throw new RangeError('maxBatchDocs must be an integer of at least 1');
  return { leaseMs, timeoutMs };
}
