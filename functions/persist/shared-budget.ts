/**
 * The database's write budget shared by every persist replica (1..N processes,
 * on any machines), adapted to the database's pain. Same shape as TokenBucket
 * (`run(write)`), so the committer can use either.
 *
 * The budget lives in one Redis hash per database (write-budget-1.lua, on
 * Redis's clock): a single flight across all replicas, the next write starting
 * no earlier than 1010/rate ms after the previous one's answer, so no one-second
 * window at the server holds more than the ceiling, whichever way the server
 * counts. The rate adapts (AIMD): writes slower than the latency target (or
 * failing) cut it by 30 % at most once a second, down to the floor; while writes
 * are fast it climbs back by a tenth of the ceiling per second, never above it.
 *
 * Per write: take the lease (waiting what the script says, plus a small jitter),
 * renew it every leaseMs/3 while the write runs (a write may take seconds on a
 * slow disk; a replica that dies holds the others up for at most leaseMs), time
 * the write, and release with its latency, also when it throws (as a failure).
 * Writes of one process go one at a time. While another replica holds the lease,
 * a waiting replica asks again every spacing (1010/rate ms): at most `rate` small
 * script calls a second per waiting replica.
 *
 * The largest batch is kept there too (when maxBatchDocs is given): halved by a
 * slow or failed write, at most once a second, grown back by fast ones, from the
 * writes of every replica. Every budget call returns it, the grant too: a
 * batch settled at the grant (the committer's) is within the current figure.
 *
 * Fallback: when Redis does not answer a budget call within redisTimeoutMs
 * (connection down, command error, timeout), the process falls back to a local
 * TokenBucket at ceiling / maxReplicas, logs it once, probes Redis in the
 * background (every second, and whenever the client reconnects), and logs once
 * when the shared budget is used again. A write never waits on any one Redis
 * call longer than redisTimeoutMs before falling back, and while it is cut off
 * it does not wait on Redis at all. The local share keeps the total
 * within the ceiling only when every replica is cut off: while some replicas
 * still share the budget, each one that is cut off from Redis may add up to
 * ceiling / maxReplicas writes per second at the database, and around the
 * switch (either way) one write of a replica may come closer than one spacing
 * to another replica's.
 *
 * A lease is only as good as its renewals: a holder that cannot reach Redis for
 * longer than leaseMs while its write still runs (a partition, a long pause)
 * loses the lease, and another replica may write alongside it once.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { Scripts } from '../shared/redis/scripts.js';
import { sleep } from '../shared/time.js';
import { TokenBucket } from './bucket.js';

/** Kept by the script for 10 minutes after its last use; a lease must be far shorter. */
const MAX_LEASE_MS = 60_000;
const PROBE_EVERY_MS = 1000;

/** Logs the budget writes: pino's Logger fits. */
export interface BudgetLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

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
  /** Called when the budget repaired a step of Redis's clock (write-budget-1.lua, "Clock steps"). */
  onClockStep?: () => void;
}

type Reply = Array<string | number | null>;

class RedisUnavailable extends Error {
  override name = 'RedisUnavailable';
}

/**
 * Runs one write and then `after` with its latency and whether the database
 * answered it (also when it throws: then it did not).
 */
async function timed<T>(
  write: () => Promise<T>,
  answered: ((result: T) => boolean) | undefined,
  after: (latencyMs: number, ok: boolean) => void,
): Promise<T> {
  const started = performance.now();
  let ok = false;
  try {
    const result = await write();
    ok = answered === undefined || answered(result);
    return result;
  } finally {
    after(performance.now() - started, ok);
  }
}

export class SharedBudget {
  private readonly redis: Redis;
  private readonly scripts: Scripts;
  private readonly key: string;
  private readonly floor: number;
  private readonly targetMs: number;
  private readonly maxReplicas: number;
  private readonly maxBatchDocs: number | undefined;
  /** The largest batch as the budget's last answer gave it (with maxBatchDocs). */
  private sharedBatch: number | undefined;
  private readonly leaseMs: number;
  private readonly timeoutMs: number;
  private readonly log: BudgetLogger;
  private readonly onWrite: ((write: BudgetWrite) => void) | undefined;
  private readonly onClockStep: (() => void) | undefined;
  /** The budget's count of repaired clock steps, as last seen. */
  private clockSteps: number | undefined;
  /** Per write, unique across replicas: `<host>:<pid>:<random>:<n>`. */
  private readonly id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private seq = 0;
  private ceilingPerSec: number;
  private local: TokenBucket;
  private sharedRate: number;
  private latencyMs: number | undefined;
  private currentMode: BudgetMode = 'shared';
  /** Writes of this process go one at a time: each waits for the previous one's release. */
  private chain: Promise<void> = Promise.resolve();
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  private readonly onReady = () => {
    if (this.currentMode === 'local') void this.probe();
  };

  constructor(options: SharedBudgetOptions) {
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
    if (1010 / Math.min(options.floor, options.ceiling) > MAX_LEASE_MS)
      throw new RangeError('floor must allow at least one write a minute');
    this.key = options.key;
    this.ceilingPerSec = options.ceiling;
    this.floor = options.floor;
    this.targetMs = options.targetMs;
    this.maxReplicas = options.maxReplicas;
    if (
      options.maxBatchDocs !== undefined &&
      !(Number.isInteger(options.maxBatchDocs) && options.maxBatchDocs >= 1)
    )
      throw new RangeError('maxBatchDocs must be an integer of at least 1');
    this.maxBatchDocs = options.maxBatchDocs;
    this.leaseMs = leaseMs;
    this.timeoutMs = timeoutMs;
    this.log = options.log;
    this.onWrite = options.onWrite;
    this.onClockStep = options.onClockStep;
    this.sharedRate = options.ceiling;
    this.local = new TokenBucket(this.localRate);
    this.redis = options.redis;
    this.scripts = new Scripts(options.redis);
    this.redis.on('ready', this.onReady);
  }

  /** Writes per second allowed now: the shared rate, or this process's share while cut off. */
  get rate(): number {
    return this.currentMode === 'shared' ? this.sharedRate : this.localRate;
  }

  /**
   * The largest batch for every replica, as the budget last answered (with
   * maxBatchDocs, while the budget is shared and has answered; else undefined,
   * and the caller keeps its own).
   */
  get batchLimit(): number | undefined {
    return this.currentMode === 'shared' ? this.sharedBatch : undefined;
  }

  /** The last write's latency in ms (undefined before the first write). */
  get lastLatencyMs(): number | undefined {
    return this.latencyMs;
  }

  get mode(): BudgetMode {
    return this.currentMode;
  }

  get ceiling(): number {
    return this.ceilingPerSec;
  }

  /** The local fallback's rate: this replica's share of the ceiling. */
  get localRate(): number {
    return this.ceilingPerSec / this.maxReplicas;
  }

  /** A new ceiling (DB_WRITE_OPS_PER_SEC) for the next write; a lower one holds at once for every replica. */
  setCeiling(perSec: number): void {
    if (!(perSec > 0)) throw new RangeError('ceiling must be above 0 writes/s');
    this.ceilingPerSec = perSec;
    this.sharedRate = Math.min(this.sharedRate, perSec);
    // A fresh bucket gives its first token one (new) spacing from now.
    this.local = new TokenBucket(this.localRate);
  }

  /**
   * Stops the background probe, and resolves once the writes already taken in
   * have released the budget (before the Redis client is closed).
   */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.redis.off('ready', this.onReady);
    await this.chain;
  }

  /**
   * Takes the budget, runs ONE write command, and gives the budget back with the
   * write's latency. Resolves (or rejects) with the write's outcome as soon as it
   * is answered; the release follows, and this process's next write waits for it.
   */
  async run<T>(write: () => Promise<T>, answered?: (result: T) => boolean): Promise<T> {
    const previous = this.chain;
    let done!: () => void;
    this.chain = new Promise<void>((resolve) => {
      done = resolve;
    });
    await previous;
    let handedOver = false;
    try {
      if (this.currentMode === 'shared') {
        const owner = `${this.id}:${++this.seq}`;
        let granted = false;
        try {
          granted = await this.acquire(owner);
        } catch (error) {
          // The call may still reach Redis and grant a lease nobody uses: give it back.
          this.call('cancel', owner).catch(() => undefined);
          this.fallBack(error);
        }
        if (granted) {
          handedOver = true;
          return await this.runShared(owner, write, answered, done);
        }
      }
      return await this.runLocal(write, answered);
    } finally {
      if (!handedOver) done();
    }
  }

  private async runShared<T>(
    owner: string,
    write: () => Promise<T>,
    answered: ((result: T) => boolean) | undefined,
    done: () => void,
  ): Promise<T> {
    let lost = false;
    const renewal = setInterval(() => {
      this.call('renew', owner, this.leaseMs).then(
        (reply) => {
          if (reply[0] !== 1 && !lost) {
            lost = true;
            this.log.warn(
              { key: this.key },
              'write budget: the lease ended while the write still ran; another replica may write alongside it',
            );
          }
        },
        () => undefined,
      );
    }, this.leaseMs / 3);
    return timed(write, answered, (latencyMs, ok) => {
      clearInterval(renewal);
      // The release goes on after the result is returned; the next write waits for it.
      void this.release(owner, latencyMs, ok).finally(done);
    });
  }

  private async runLocal<T>(
    write: () => Promise<T>,
    answered: ((result: T) => boolean) | undefined,
  ): Promise<T> {
    const bucket = this.local;
    await bucket.take();
    return timed(write, answered, (latencyMs, ok) => {
      bucket.completed();
      this.wrote(latencyMs, ok, 'local');
    });
  }

  /** Loops until the lease is granted; throws when Redis does not answer in time. */
  private async acquire(owner: string): Promise<true> {
    for (;;) {
      const reply = await this.call(
        'acquire',
        owner,
        this.leaseMs,
        this.ceilingPerSec,
        this.floor,
        ...this.batchArgs(),
      );
      this.sharedRate = Number(reply[1]);
      this.keepBatch(reply[3]);
      this.noteClock(Number(reply[4]));
      if (reply[0] === 1) return true;
      const wait = Number(reply[2]);
      // A little jitter, so replicas waiting for the same moment do not always arrive in the same order.
      await sleep(wait + Math.random() * Math.min(5, 1 + wait / 10));
    }
  }

  private async release(owner: string, latencyMs: number, ok: boolean): Promise<void> {
    // Every write, shared or not, also spaces this process's local share (for a fallback right after).
    this.local.completed();
    try {
      const reply = await this.call(
        'release',
        owner,
        Math.round(latencyMs),
        ok ? 1 : 0,
        this.targetMs,
        this.ceilingPerSec,
        this.floor,
        ...this.batchArgs(),
      );
      this.sharedRate = Number(reply[0] === 1 ? reply[1] : reply[2]);
      this.keepBatch(reply[3]);
      if (reply[0] !== 1)
        this.log.warn(
          { key: this.key, latencyMs: Math.round(latencyMs) },
          'write budget: released after the lease had ended',
        );
    } catch (error) {
      // Redis is gone: the lease ends by itself after leaseMs; this process goes on alone.
      this.fallBack(error);
    }
    this.wrote(latencyMs, ok, 'shared');
  }

  /** The script's optional last argument: this replica's MAX_BATCH_DOCS. */
  private batchArgs(): number[] {
    return this.maxBatchDocs === undefined ? [] : [this.maxBatchDocs];
  }

  private keepBatch(value: string | number | null | undefined): void {
    if (this.maxBatchDocs !== undefined && value !== undefined && value !== null)
      this.sharedBatch = Number(value);
  }

  /** Logs and counts the clock steps the script repaired since this replica last looked. */
  private noteClock(steps: number): void {
    if (!Number.isFinite(steps)) return;
    if (this.clockSteps !== undefined && steps > this.clockSteps) {
      this.log.warn(
        { key: this.key, steps: steps - this.clockSteps },
        "write budget: Redis's clock moved; the budget's times were repaired",
      );
      this.onClockStep?.();
    }
    this.clockSteps = steps;
  }

  private wrote(latencyMs: number, ok: boolean, mode: BudgetMode): void {
    this.latencyMs = latencyMs;
    try {
      this.onWrite?.({ latencyMs, ok, mode, rate: this.rate });
    } catch (error) {
      // Metrics must not break the write path (the release runs detached from the caller).
      this.log.warn({ err: error }, 'write budget: onWrite threw');
    }
  }

  /**
   * One script call, answered within redisTimeoutMs or rejected. A client that is
   * still connecting is given that long to be ready (a replica's first write does
   * not fall back because its client was made a moment ago); one that fails to
   * connect meanwhile (refused, reset) fails the call at once.
   */
  private call(op: string, ...args: Array<string | number>): Promise<Reply> {
    const redis = this.redis;
    return new Promise<Reply>((resolve, reject) => {
      let settled = false;
      const settle = (error: unknown, reply?: Reply) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        unwatch();
        if (reply) resolve(reply);
        else reject(error instanceof Error ? error : new RedisUnavailable(String(error)));
      };
      const timer = setTimeout(
        () =>
          settle(
            new RedisUnavailable(
              `Redis did not answer within ${this.timeoutMs} ms (${op}; connection ${redis.status})`,
            ),
          ),
        this.timeoutMs,
      );
      const send = () => {
        if (settled) return;
        unwatch();
        try {
          (this.scripts.run('write-budget', [this.key], [op, ...args]) as Promise<Reply>).then(
            (reply) => settle(undefined, reply),
            (error: unknown) => settle(error),
          );
        } catch (error) {
          settle(error);
        }
      };
      const failed = (error?: unknown) =>
        settle(error ?? new RedisUnavailable(`Redis connection ${redis.status}`));
      const ended = () => failed();
      const unwatch = () => {
        redis.off('ready', send);
        redis.off('error', failed);
        redis.off('end', ended);
      };
      if (redis.status === 'ready' || redis.status === 'wait') send();
      else if (redis.status === 'end') ended();
      else {
        redis.once('ready', send);
        redis.once('error', failed);
        redis.once('end', ended);
      }
    });
  }

  private fallBack(error: unknown): void {
    if (this.currentMode === 'local') return;
    this.currentMode = 'local';
    this.log.warn(
      { err: error, key: this.key, localRate: this.localRate },
      'write budget: Redis unreachable; writing at this replica’s share of the ceiling until it is back',
    );
    if (!this.closed) {
      this.probeTimer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
      this.probeTimer.unref();
    }
  }

  /** While cut off: one budget call that answers in time brings the shared budget back. */
  private async probe(): Promise<void> {
    if (this.probing || this.currentMode === 'shared' || this.closed) return;
    this.probing = true;
    try {
      const reply = await this.call('state', this.ceilingPerSec, this.floor, ...this.batchArgs());
      if (reply[3] !== '') this.sharedRate = Number(reply[3]);
      this.keepBatch(reply[4]);
      if (this.currentMode === 'local') {
        this.currentMode = 'shared';
        clearInterval(this.probeTimer);
        this.probeTimer = undefined;
        this.log.info({ key: this.key }, 'write budget: Redis is back; the budget is shared again');
      }
    } catch {
      // Still cut off.
    } finally {
      this.probing = false;
    }
  }
}
