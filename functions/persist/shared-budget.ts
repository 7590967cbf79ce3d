/**
 * The database's write budget shared by every persist replica (1..N processes,
 * on any machines), adapted to the database's pain. Same shape as Spacer
 * (`run(write)`), so the committer can use either.
 *
 * The budget lives in one Redis hash per database (budget-*-1.lua, on
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
 * The largest batch is kept there too (when maxBatchDocs is given): cut by a
 * slow or failed write, at most once a second, grown back by fast ones, from the
 * writes of every replica (batch-limit.ts). Every budget call returns it, the grant too: a
 * batch settled at the grant (the committer's) is within the current figure.
 *
 * Fallback (budget-fallback.ts): when Redis does not answer a budget call within
 * redisTimeoutMs, the process writes on a local Spacer at ceiling / maxReplicas
 * until Redis answers again. A write never waits on any one Redis call longer
 * than redisTimeoutMs before falling back. The local share keeps the total
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
import { type BatchWrite, batchRule } from './batch-limit.js';
import { BudgetFallback } from './budget-fallback.js';
import { BudgetLease, type BudgetLogger } from './budget-lease.js';
import {
  type BudgetMode,
  type BudgetWrite,
  checked,
  type SharedBudgetOptions,
} from './budget-options.js';
import { type Grant, Spacer, type WriteOutcome } from './spacer.js';

export type {
  BudgetLogger,
  BudgetMode,
  BudgetWrite,
  SharedBudgetOptions,
} from './budget-options.js';

/**
 * Runs one write and then `after` with what its outcome says (also when it
 * throws: then the database did not answer it).
 */
async function timed<T>(
  write: () => Promise<T>,
  outcome: ((result: T) => WriteOutcome) | undefined,
  after: (write: BatchWrite) => void,
): Promise<T> {
  const started = performance.now();
  let said: WriteOutcome = { answered: false };
  try {
    const result = await write();
    said = outcome?.(result) ?? { answered: true };
    return result;
  } finally {
    const latencyMs = said.latencyMs ?? performance.now() - started;
    after({ latencyMs, ok: said.answered, docs: said.docs ?? 0 });
  }
}

export class SharedBudget {
  private readonly lease: BudgetLease;
  private readonly fallback: BudgetFallback;
  private readonly key: string;
  private readonly maxReplicas: number;
  private readonly leaseMs: number;
  private readonly log: BudgetLogger;
  private readonly onWrite: ((write: BudgetWrite) => void) | undefined;
  /** Per write, unique across replicas: `<host>:<pid>:<random>:<n>`. */
  private readonly id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private seq = 0;
  private readonly ceilingPerSec: number;
  private readonly local: Spacer;
  /** Writes of this process go one at a time: each waits for the previous one's release. */
  private chain: Promise<void> = Promise.resolve();

  constructor(options: SharedBudgetOptions) {
    const { leaseMs, timeoutMs } = checked(options);
    this.key = options.key;
    this.ceilingPerSec = options.ceiling;
    this.maxReplicas = options.maxReplicas;
    this.leaseMs = leaseMs;
    this.log = options.log;
    this.onWrite = options.onWrite;
    this.local = new Spacer(this.localRate);
    const { maxBatchDocs } = options;
    this.lease = new BudgetLease({
      redis: options.redis,
      key: options.key,
      bounds: { ceiling: options.ceiling, floor: options.floor, maxBatch: maxBatchDocs },
      rule: maxBatchDocs === undefined ? undefined : batchRule(maxBatchDocs),
      targetMs: options.targetMs,
      leaseMs,
      timeoutMs,
      log: options.log,
      onClockStep: options.onClockStep,
    });
    this.fallback = new BudgetFallback({
      redis: options.redis,
      lease: this.lease,
      key: options.key,
      localRate: this.localRate,
      log: options.log,
    });
  }

  /** Writes per second allowed now: the shared rate, or this process's share while cut off. */
  get rate(): number {
    return this.fallback.mode === 'shared' ? this.lease.rate : this.localRate;
  }

  /**
   * The largest batch for every replica, as the budget last answered (with
   * maxBatchDocs, while the budget is shared and has answered; else undefined,
   * and the caller keeps its own).
   */
  get batchLimit(): number | undefined {
    return this.fallback.mode === 'shared' ? this.lease.batch : undefined;
  }

  get mode(): BudgetMode {
    return this.fallback.mode;
  }

  /** One write in flight across every replica: while the budget is shared. */
  get singleFlight(): boolean {
    return this.fallback.mode === 'shared';
  }

  get ceiling(): number {
    return this.ceilingPerSec;
  }

  /** The local fallback's rate: this replica's share of the ceiling. */
  get localRate(): number {
    return this.ceilingPerSec / this.maxReplicas;
  }

  /**
   * Stops the background probe, and resolves once the writes already taken in
   * have released the budget (before the Redis client is closed).
   */
  async close(): Promise<void> {
    this.fallback.close();
    await this.chain;
  }

  /**
   * Takes the budget, runs ONE write command, and gives the budget back with the
   * write's latency. Resolves (or rejects) with the write's outcome as soon as it
   * is answered; the release follows, and this process's next write waits for it.
   */
  async run<T>(
    write: (grant: Grant) => Promise<T>,
    outcome?: (result: T) => WriteOutcome,
  ): Promise<T> {
    const previous = this.chain;
    let done!: () => void;
    this.chain = new Promise<void>((resolve) => {
      done = resolve;
    });
    await previous;
    let handedOver = false;
    try {
      if (this.fallback.mode === 'shared') {
        const owner = `${this.id}:${++this.seq}`;
        let granted: Grant | undefined;
        try {
          granted = await this.lease.acquire(owner);
        } catch (error) {
          // The call may still reach Redis and grant a lease nobody uses: give it back.
          this.lease.cancel(owner).catch(() => undefined);
          this.fallback.fallBack(error);
        }
        if (granted) {
          handedOver = true;
          return await this.runShared(owner, () => write(granted), outcome, done);
        }
      }
      // Other replicas may write beside this one meanwhile.
      return await this.runLocal(() => write({ followsOwn: false }), outcome);
    } finally {
      if (!handedOver) done();
    }
  }

  private async runShared<T>(
    owner: string,
    write: () => Promise<T>,
    outcome: ((result: T) => WriteOutcome) | undefined,
    done: () => void,
  ): Promise<T> {
    let lost = false;
    const renewal = setInterval(() => {
      this.lease.renew(owner).then(
        (renewed) => {
          if (!renewed && !lost) {
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
    return timed(write, outcome, (written) => {
      clearInterval(renewal);
      // The release goes on after the result is returned; the next write waits for it.
      void this.release(owner, written).finally(done);
    });
  }

  private async runLocal<T>(
    write: () => Promise<T>,
    outcome: ((result: T) => WriteOutcome) | undefined,
  ): Promise<T> {
    const spacer = this.local;
    await spacer.take();
    return timed(write, outcome, (written) => {
      spacer.completed();
      this.wrote(written, 'local');
    });
  }

  private async release(owner: string, written: BatchWrite): Promise<void> {
    // Every write, shared or not, also spaces this process's local share (for a fallback right after).
    this.local.completed();
    try {
      await this.lease.release(owner, written);
    } catch (error) {
      // Redis is gone: the lease ends by itself after leaseMs; this process goes on alone.
      this.fallback.fallBack(error);
    }
    this.wrote(written, 'shared');
  }

  private wrote({ latencyMs, ok }: BatchWrite, mode: BudgetMode): void {
    try {
      this.onWrite?.({ latencyMs, ok, mode, rate: this.rate });
    } catch (error) {
      // Metrics must not break the write path (the release runs detached from the caller).
      this.log.warn({ err: error }, 'write budget: onWrite threw');
    }
  }
}
