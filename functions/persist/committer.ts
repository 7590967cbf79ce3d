/**
 * Group commit: the write loop. Deliveries (push) and pulled entries (pull) wait
 * in one queue (queue.ts); a single loop takes the write budget (shared-budget.ts),
 * then writes everything queued (up to the largest batch and MAX_BATCH_BYTES) as
 * ONE unordered insertMany with {w: 1, j: true}. While the budget is spent the
 * queue grows, so batches grow by themselves under load; a fresh batch is topped
 * up at its grant with what arrived while it waited. One write is in flight;
 * one attempt at a group is attempt.ts's.
 *
 * A document counts as committed only when the database said so (verdict.ts);
 * what becomes of each item is plan.ts's. Committed entries are acked and
 * deleted from the stream (ledger.ts); only then are their deliveries answered
 * 2xx (deliveries.ts).
 *
 * No single event blocks the others:
 *   - a document the database refuses for its content becomes a dead letter,
 *     stored as text (its raw stream entry), which any database takes;
 *   - a batch refused as a whole for a reason a document may explain is split in
 *     halves until the offender is alone;
 *   - anything else is retried with backoff, and an entry that still is not
 *     committed after MAX_COMMIT_ATTEMPTS is parked: its deliveries get 503, it
 *     stays in the stream, and the pull intake tries it again after PARK_MS while
 *     newer work goes through.
 * A stop is bounded: what is not committed by SHUTDOWN_TIMEOUT_MS stays in the
 * stream for the next start (nothing is acked that was not committed).
 */
import type { Redis } from 'ioredis';
import { Scripts } from '../shared/redis/scripts.js';
import { within } from '../shared/time.js';
import { type AttemptParts, attempt, forgets, persistedAtOf } from './attempt.js';
import type { CommandLimits } from './command-size.js';
import { awaitDelivery, DeadlineError } from './deliveries.js';
import { counted, Freshness } from './freshness.js';
import { StreamLedger } from './ledger.js';
import { Outcomes } from './outcomes.js';
import { type EventItem, HeldQueue, type Item, type Ticket } from './queue.js';
import { ReadSize } from './read-size.js';
import { Settler } from './settle.js';
import type { Work } from './work.js';
import { asTaken, BatchWriter, type Settle, type WriterOptions } from './writes.js';

export { DeadlineError } from './deliveries.js';
export type { Intake } from './queue.js';

/** The writer's options (writes.ts), and where the stream and the deliveries are. */
export interface CommitterOptions extends Omit<WriterOptions, 'queue' | 'outcomes'> {
  redis: Redis;
  streamKey: string;
  consumerGroup: string;
  maxBatchBytes: number;
  deliveryDeadlineMs: number;
  maxCommitAttempts: number;
  parkMs: number;
  /**
   * How long a dead letter's record for the status monitor lives at least
   * (persist's IDEMPOTENCY_TTL_SEC), ms: longer when ingest's receipts live
   * longer (dead-record-2.lua).
   */
  deadTtlMs: number;
  /** Entries taken out of the stream (the measured drain). */
  taken?: (entries: number) => void;
}

const now = () => performance.now();

export class Committer {
  private readonly queue: HeldQueue;
  private readonly ledger: StreamLedger;
  private readonly outcomes: Outcomes;
  private readonly writer: BatchWriter;
  private readonly settler: Settler;
  private readonly freshness = new Freshness();
  /** How many entries one read of the stream asks for (read-size.ts). */
  readonly reads = new ReadSize();
  private wake: (() => void) | undefined;
  private stopping = false;
  private abandoned = false;
  private inFlight: Item[] = [];
  private loop: Promise<void> | undefined;
  private readonly parts: AttemptParts;
  /** When the last batch committed (performance.now()), for readiness. */
  lastCommitAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: CommitterOptions) {
    const { redis, streamKey, consumerGroup, log } = options;
    this.queue = new HeldQueue(options.maxBatchBytes);
    this.ledger = new StreamLedger(redis, new Scripts(redis), streamKey, consumerGroup, log, {
      deadTtlMs: options.deadTtlMs,
      taken: options.taken,
      reads: this.reads,
    });
    this.outcomes = new Outcomes({ ...options, queue: this.queue });
    // Every grant is counted, whatever it writes: what was read before one may be stale.
    const budget = counted(options.budget, this.freshness);
    this.writer = new BatchWriter({
      ...options,
      budget,
      queue: this.queue,
      outcomes: this.outcomes,
      forgetCommitted: (items) => this.ledger.forgetNow(forgets(items), persistedAtOf(items)),
      whileSending: () => this.settler.prefetch(this.batchLimit),
    });
    this.parts = {
      ledger: this.ledger,
      writer: this.writer,
      outcomes: this.outcomes,
      freshness: this.freshness,
      metrics: options.metrics,
      batchLimit: () => this.batchLimit,
    };
    this.settler = new Settler({
      ...options,
      budget,
      freshness: this.freshness,
      queue: this.queue,
      ledger: this.ledger,
      outcomes: this.outcomes,
    });
  }

  /** The largest batch the committer takes now: the budget's, else this process's own. */
  get batchLimit(): number {
    return this.writer.batchLimit;
  }

  /** Items waiting for a write (fresh and retrying). */
  get queued(): number {
    return this.queue.size;
  }

  /** Items held: waiting for a write, or being written. */
  get held(): number {
    return this.queue.size + this.inFlight.length;
  }

  /** Resolves when the next batch is taken from the queue (room for more), or after `timeoutMs`. */
  whenTaken(timeoutMs: number): Promise<void> {
    return this.queue.whenTaken(timeoutMs);
  }

  /** The pull intake leaves alone what is held here or parked. */
  isBusy(streamId: string): boolean {
    return this.queue.isBusy(streamId);
  }

  /** The server's limits of one write command (its hello), so that one grant is one command. */
  setCommandLimits(limits: CommandLimits): void {
    this.writer.setCommandLimits(limits);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Push: resolves once the event is committed, rejects with DeadlineError when it is not. */
  submit(work: Work, streamId: string | null, bytes: number): Promise<void> {
    if (this.stopping)
      return Promise.reject(new DeadlineError('persist is shutting down; redeliver'));
    const { deliveryDeadlineMs, metrics } = this.options;
    return awaitDelivery(
      deliveryDeadlineMs,
      () => metrics.deadlines.inc(),
      (delivery) => {
        // A redelivery of an entry already held waits for the same write.
        const held = streamId === null ? undefined : this.queue.ticketOf(streamId);
        if (held) held.deliveries.push(delivery);
        else
          this.add({
            ticket: { streamId, intake: 'push', deliveries: [delivery], attempts: 0 },
            work,
            bytes,
          });
      },
    );
  }

  /** The stamp of a read of the stream that begins now (freshness.ts). */
  stamp(): number {
    return this.freshness.stamp();
  }

  /** Pull: queues an entry read straight from the stream (by a read stamped `readAt`); nobody waits for it. */
  enqueue(work: Work, streamId: string, bytes: number, readAt?: number): void {
    if (this.stopping || this.queue.isBusy(streamId)) return;
    const ticket: Ticket = { streamId, intake: 'pull', deliveries: [], attempts: 0 };
    this.add({ ticket, work, bytes, readAt });
  }

  private add(item: Item): void {
    this.queue.add(item);
    this.wake?.();
  }

  /**
   * Stops taking work and commits what is held, for at most timeoutMs; then
   * answers every delivery still waiting with 503 and leaves its entry in the
   * stream. Resolves with the number of entries left uncommitted.
   */
  async stop(timeoutMs: number): Promise<number> {
    this.stopping = true;
    this.wake?.();
    const done = await within(this.loop ?? Promise.resolve(), timeoutMs);
    return done ? 0 : this.abandon();
  }

  private abandon(): number {
    this.abandoned = true;
    this.writer.abandon();
    const left = [...this.queue.drain(), ...this.inFlight];
    const error = new DeadlineError(
      'persist is shutting down before this was committed; redeliver',
    );
    this.outcomes.notCommitted(left, error);
    this.wake?.();
    if (left.length > 0)
      this.options.log.warn(
        { entries: left.length },
        'stopping with entries not committed: they stay in the stream and are persisted after the next start',
      );
    return left.length;
  }

  private async run(): Promise<void> {
    while (!this.abandoned) {
      await this.ledger.retryDue();
      const next = this.queue.next(this.batchLimit);
      if (!next) {
        if (this.stopping && this.queue.size === 0 && !this.ledger.behind) return;
        await this.idleWait();
        continue;
      }
      if (this.abandoned) return;
      this.inFlight = next.items;
      try {
        const settle: Settle = next.fresh ? (taken) => this.settle(taken) : asTaken;
        if ((await attempt(this.parts, next.items, settle)) > 0) this.lastCommitAt = now();
      } catch (error) {
        // Nothing here is known to be committed: the whole group is tried again.
        const detail = `unexpected: ${String((error as Error)?.stack ?? error)}`;
        this.outcomes.failed({ items: next.items, reason: 'unexpected', detail, halves: false });
      } finally {
        this.inFlight = [];
      }
    }
  }

  /** Waits for new work, or until the earliest retry (or forget) is due. */
  private async idleWait(): Promise<void> {
    const dueAt = Math.min(this.queue.nextDueAt(), this.ledger.dueAt);
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      if (dueAt !== Number.POSITIVE_INFINITY)
        setTimeout(resolve, Math.max(1, Math.ceil(dueAt - now())));
    });
    this.wake = undefined;
  }

  /** A fresh batch at its grant (settle.ts); what joins it is in flight from then on. */
  private settle(taken: EventItem[]): Promise<EventItem[]> {
    return this.settler.settle(taken, this.batchLimit, (joined) => {
      this.inFlight = [...this.inFlight, ...joined];
    });
  }
}
