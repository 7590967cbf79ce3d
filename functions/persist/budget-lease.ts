/**
 * The shared side of the write budget: the lease in Redis (budget-*-1.lua, on
 * Redis's clock) that every persist replica takes for each write, and what the
 * budget's answers say (the shared rate, the largest batch, the clock steps it
 * repaired). Every call is answered within redisTimeoutMs or rejected; the
 * caller (shared-budget.ts) falls back to its local share then.
 */
import type { Redis } from 'ioredis';
import { whenUsable } from '../shared/redis/client.js';
import { type BatchRule, type BudgetBounds, Scripts } from '../shared/redis/scripts.js';
import { deadline, sleep } from '../shared/time.js';
import type { BatchWrite } from './batch-limit.js';
import type { Grant } from './spacer.js';

/** Logs the budget writes: pino's Logger fits. */
export interface BudgetLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface LeaseOptions {
  redis: Redis;
  key: string;
  bounds: BudgetBounds;
  /** How the largest batch adapts (with bounds.maxBatch). */
  rule: BatchRule | undefined;
  targetMs: number;
  leaseMs: number;
  timeoutMs: number;
  log: BudgetLogger;
  onClockStep: (() => void) | undefined;
}

export class RedisUnavailable extends Error {
  override name = 'RedisUnavailable';
}

export class BudgetLease {
  private readonly scripts: Scripts;
  /** The shared rate, as the budget last answered. */
  rate: number;
  /** The largest batch, as the budget last answered (with bounds.maxBatch). */
  batch: number | undefined;
  /** The budget's count of repaired clock steps, as last seen. */
  private clockSteps: number | undefined;

  constructor(private readonly options: LeaseOptions) {
    this.scripts = new Scripts(options.redis);
    this.rate = options.bounds.ceiling;
  }

  /**
   * Loops until the lease is granted, and says whether the previous grant was
   * this writer's too; throws when Redis does not answer in time.
   */
  async acquire(owner: string): Promise<Grant> {
    const { key, leaseMs, bounds } = this.options;
    for (;;) {
      const grant = await this.call('acquire', (s) => s.budgetAcquire(key, owner, leaseMs, bounds));
      this.rate = grant.rate;
      this.keep(grant.batch);
      this.noteClock(grant.steps);
      if (grant.granted) return { followsOwn: grant.again };
      // A little jitter, so replicas waiting for the same moment do not always arrive in the same order.
      await sleep(grant.ms + Math.random() * Math.min(5, 1 + grant.ms / 10));
    }
  }

  /** Extends the lease while a write runs; false when it ended and is someone else's. */
  renew(owner: string): Promise<boolean> {
    const { key, leaseMs } = this.options;
    return this.call('renew', (s) => s.budgetRenew(key, owner, leaseMs));
  }

  /** Gives the lease back with the write's latency and size; throws when Redis does not answer. */
  async release(owner: string, written: BatchWrite): Promise<void> {
    const { key, bounds, rule, targetMs, log } = this.options;
    const { latencyMs } = written;
    const write = { ...written, targetMs };
    const released = await this.call('release', (s) =>
      s.budgetRelease(key, owner, write, bounds, rule),
    );
    this.rate = released.rate;
    this.keep(released.batch);
    if (!released.released)
      log.warn(
        { key, latencyMs: Math.round(latencyMs) },
        'write budget: released after the lease had ended',
      );
  }

  /** Gives back a lease taken but not used (a grant that came too late). */
  cancel(owner: string): Promise<boolean> {
    return this.call('cancel', (s) => s.budgetCancel(this.options.key, owner));
  }

  /** Reads the budget's rate and batch (read only); throws when Redis does not answer. */
  async refresh(): Promise<void> {
    const { key, bounds } = this.options;
    const state = await this.call('state', (s) => s.budgetState(key, bounds));
    if (state.rate !== undefined) this.rate = state.rate;
    this.keep(state.batch);
  }

  private keep(batch: number | undefined): void {
    if (this.options.bounds.maxBatch !== undefined && batch !== undefined) this.batch = batch;
  }

  /** Logs and counts the clock steps the scripts repaired since this replica last looked. */
  private noteClock(steps: number): void {
    if (!Number.isFinite(steps)) return;
    if (this.clockSteps !== undefined && steps > this.clockSteps) {
      this.options.log.warn(
        { key: this.options.key, steps: steps - this.clockSteps },
        "write budget: Redis's clock moved; the budget's times were repaired",
      );
      this.options.onClockStep?.();
    }
    this.clockSteps = steps;
  }

  /**
   * One script call, answered within redisTimeoutMs or rejected. A client that is
   * still connecting is given that long to be ready (a replica's first write does
   * not fall back because its client was made a moment ago); one that fails to
   * connect meanwhile (refused, reset) fails the call at once.
   */
  private call<T>(op: string, send: (scripts: Scripts) => Promise<T>): Promise<T> {
    const { redis, timeoutMs } = this.options;
    return deadline(
      async (signal) => {
        await whenUsable(redis, signal);
        return send(this.scripts);
      },
      timeoutMs,
      () =>
        new RedisUnavailable(
          `Redis did not answer within ${timeoutMs} ms (${op}; connection ${redis.status})`,
        ),
    );
  }
}
