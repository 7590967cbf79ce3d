/**
 * Group commit. Deliveries (push) and pulled entries (pull) wait in one queue; a
 * single flusher takes a token from the write budget, then writes everything
 * queued (up to MAX_BATCH_DOCS / MAX_BATCH_BYTES) as ONE unordered insertMany
 * with {w: 1, j: true}. While the budget is spent, the queue grows, so batches
 * grow by themselves under load. One bulk write is in flight at a time.
 *
 * After a batch commits, its stream entries are acked for the source's group and
 * deleted (ack-delete-1.lua), then every waiting delivery is answered.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { type Collection, MongoBulkWriteError, MongoServerError } from 'mongodb';
import type { EventDocument } from '../shared/document.js';
import type { Logger } from '../shared/logger.js';
import type { TokenBucket } from './bucket.js';
import type { PersistMetrics } from './metrics.js';

const ACK_DELETE = readFileSync(new URL('./ack-delete-1.lua', import.meta.url), 'utf8');
const DUPLICATE_KEY = 11000;
const ACK_CHUNK = 1000;
const WRITE_CONCERN = { w: 1, j: true } as const;

/** A document of `events_dead`: what could not become an event, and why. */
export interface DeadDocument {
  _id: string;
  reason: string;
  streamId: string | null;
  raw: unknown;
  deadAt: Date;
}

export type Intake = 'push' | 'pull';

interface Item {
  doc: EventDocument | DeadDocument;
  dead: boolean;
  /** The stream entry to forget once this item is committed. */
  streamId: string | null;
  bytes: number;
  intake: Intake;
  waiter?: { resolve: () => void; reject: (error: Error) => void; timer: NodeJS.Timeout };
  settled?: boolean;
}

/** A delivery that was not committed in time: the Trigger should redeliver it. */
export class DeadlineError extends Error {
  readonly status = 503;
}

/** Builds the dead-letter document; its _id is stable so a retried write is idempotent. */
export function deadDocument(reason: string, streamId: string | null, raw: unknown): DeadDocument {
  const id =
    streamId ??
    createHash('sha256')
      .update(JSON.stringify(raw) ?? 'undefined')
      .digest('hex');
  return { _id: id, reason, streamId, raw, deadAt: new Date() };
}

export interface CommitterOptions {
  events: Collection<EventDocument>;
  dead: Collection<DeadDocument>;
  redis: Redis;
  streamKey: string;
  consumerGroup: string;
  bucket: TokenBucket;
  maxBatchDocs: number;
  maxBatchBytes: number;
  deliveryDeadlineMs: number;
  log: Logger;
  metrics: PersistMetrics;
}

export class Committer {
  private queue: Item[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  private stopping = false;
  private loop: Promise<void> | undefined;
  /** When the last batch committed (performance.now()), for readiness. */
  lastCommitAt = Number.NEGATIVE_INFINITY;
  /** Stream ids queued or being written: the pull intake does not read them twice. */
  readonly holding = new Set<string>();
  private readonly redis: Redis & {
    spillwayAckDelete(...args: string[]): Promise<[number, number]>;
  };

  constructor(private readonly o: CommitterOptions) {
    o.redis.defineCommand('spillwayAckDelete', { numberOfKeys: 1, lua: ACK_DELETE });
    this.redis = o.redis as typeof this.redis;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Push: resolves once the event is committed, rejects with DeadlineError past the deadline. */
  submit(
    doc: EventDocument | DeadDocument,
    dead: boolean,
    streamId: string | null,
    bytes: number,
  ): Promise<void> {
    if (this.stopping)
      return Promise.reject(new DeadlineError('persist is shutting down; redeliver'));
    return new Promise((resolve, reject) => {
      const item: Item = { doc, dead, streamId, bytes, intake: 'push' };
      const timer = setTimeout(() => {
        if (item.settled) return;
        item.settled = true;
        this.o.metrics.deadlines.inc();
        reject(
          new DeadlineError(
            `not committed within DELIVERY_DEADLINE_MS (${this.o.deliveryDeadlineMs} ms); redeliver`,
          ),
        );
      }, this.o.deliveryDeadlineMs);
      item.waiter = { resolve, reject, timer };
      this.push(item);
    });
  }

  /** Pull: queues entries read straight from the stream; nobody waits for them. */
  enqueue(doc: EventDocument | DeadDocument, dead: boolean, streamId: string, bytes: number): void {
    if (this.holding.has(streamId)) return;
    this.push({ doc, dead, streamId, bytes, intake: 'pull' });
  }

  private push(item: Item): void {
    if (item.streamId) this.holding.add(item.streamId);
    this.queue.push(item);
    this.wake?.();
  }

  /** Stops taking work, writes everything queued, answers every waiter. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
  }

  private takeBatch(): Item[] {
    const batch: Item[] = [];
    let bytes = 0;
    while (this.head < this.queue.length && batch.length < this.o.maxBatchDocs) {
      const item = this.queue[this.head] as Item;
      if (batch.length > 0 && bytes + item.bytes > this.o.maxBatchBytes) break;
      this.head++;
      // A delivery already answered 5xx still gets written: the entry is in the stream.
      batch.push(item);
      bytes += item.bytes;
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private async run(): Promise<void> {
    let failures = 0;
    let retry: Item[] = [];
    for (;;) {
      if (retry.length === 0 && this.queued === 0) {
        if (this.stopping) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      await this.o.bucket.take();
      // Everything that arrived while waiting for the token joins this batch.
      const batch = retry.length > 0 ? retry : this.takeBatch();
      retry = [];
      try {
        await this.commit(batch);
        failures = 0;
      } catch (error) {
        failures++;
        const backoff = Math.min(100 * 2 ** failures, 5000);
        this.o.log.warn(
          { err: error, docs: batch.length, retryInMs: backoff },
          'batch not committed; retrying',
        );
        this.o.metrics.batchFailures.inc();
        retry = batch;
        await new Promise((resolve) => setTimeout(resolve, backoff));
      }
    }
  }

  private async commit(batch: Item[]): Promise<void> {
    const started = performance.now();
    const events = batch.filter((item) => !item.dead);
    const deadItems = batch.filter((item) => item.dead);
    if (events.length > 0) {
      // persistedAt is the commit time of the batch.
      const persistedAt = new Date();
      for (const item of events) (item.doc as EventDocument).persistedAt = persistedAt;
      const rejected = await this.insertEvents(events);
      for (const [item, reason] of rejected) {
        item.dead = true;
        item.doc = deadDocument(
          `the database rejected the document: ${reason}`,
          item.streamId,
          item.doc,
        );
        deadItems.push(item);
      }
    }
    if (deadItems.length > 0) {
      if (events.length > 0) await this.o.bucket.take();
      await this.insertDead(deadItems);
    }
    await this.forget(batch);
    this.lastCommitAt = performance.now();
    const now = Date.now();
    for (const item of batch) {
      if (item.streamId) {
        this.holding.delete(item.streamId);
        if (!item.dead)
          this.o.metrics.lag.observe(
            (now - Number(item.streamId.slice(0, item.streamId.indexOf('-')))) / 1000,
          );
      }
      if (!item.dead) this.o.metrics.persisted.inc({ intake: item.intake });
      if (item.waiter && !item.settled) {
        item.settled = true;
        clearTimeout(item.waiter.timer);
        item.waiter.resolve();
      }
    }
    this.o.metrics.batchDocs.observe(batch.length);
    this.o.metrics.commitSeconds.observe((performance.now() - started) / 1000);
  }

  /** One insertMany; returns the items the server rejected for a reason other than a duplicate _id. */
  private async insertEvents(items: Item[]): Promise<Array<[Item, string]>> {
    this.o.metrics.writeCommands.inc({ collection: 'events' });
    try {
      await this.o.events.insertMany(
        items.map((item) => item.doc as EventDocument),
        { ordered: false, writeConcern: WRITE_CONCERN, forceServerObjectId: false },
      );
      return [];
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError) || error.writeConcernError) throw error;
      const errors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
      const rejected: Array<[Item, string]> = [];
      for (const writeError of errors) {
        if (writeError.code === DUPLICATE_KEY) continue;
        const item = items[writeError.index];
        if (item) rejected.push([item, `${writeError.code}: ${writeError.errmsg ?? 'rejected'}`]);
      }
      return rejected;
    }
  }

  private async insertDead(items: Item[]): Promise<void> {
    this.o.metrics.writeCommands.inc({ collection: 'events_dead' });
    this.o.metrics.deadLetters.inc(items.length);
    try {
      await this.o.dead.insertMany(
        items.map((item) => item.doc as DeadDocument),
        { ordered: false, writeConcern: WRITE_CONCERN },
      );
    } catch (error) {
      const duplicatesOnly =
        error instanceof MongoBulkWriteError &&
        !error.writeConcernError &&
        (Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors]).every(
          (e) => e.code === DUPLICATE_KEY,
        );
      if (!duplicatesOnly && !(error instanceof MongoServerError && error.code === DUPLICATE_KEY))
        throw error;
    }
  }

  /** XACK then XDEL the committed entries, atomically per chunk. */
  private async forget(batch: Item[]): Promise<void> {
    const ids = batch.flatMap((item) => (item.streamId ? [item.streamId] : []));
    const chunks: Promise<unknown>[] = [];
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      chunks.push(
        this.redis.spillwayAckDelete(
          this.o.streamKey,
          this.o.consumerGroup,
          ...ids.slice(i, i + ACK_CHUNK),
        ),
      );
    }
    await Promise.all(chunks);
  }
}
