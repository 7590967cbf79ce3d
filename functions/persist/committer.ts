/**
 * Group commit. Deliveries (push) and pulled entries (pull) wait in one queue; a
 * single flusher takes the write budget (shared-budget.ts), then writes everything
 * queued (up to MAX_BATCH_DOCS / MAX_BATCH_BYTES) as ONE unordered insertMany
 * with {w: 1, j: true}. While the budget is spent the queue grows, so batches
 * grow by themselves under load. One bulk write is in flight at a time.
 *
 * A document counts as committed only when the database said so (verdict.ts).
 * Committed entries are acked for the source's group and deleted from the stream
 * (ack-delete-1.lua, in functions/shared/redis/commands); only then are their deliveries answered 2xx.
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
import type { Collection } from 'mongodb';
import type { EventDocument } from '../shared/document.js';
import { HttpError } from '../shared/http.js';
import type { Logger } from '../shared/logger.js';
import { CONFLICTS_COLLECTION } from '../shared/names.js';
import { Scripts } from '../shared/redis/scripts.js';
import { within } from '../shared/time.js';
import type { WriteBudget } from './bucket.js';
import { bsonSize, type CommandLimits, DRIVER_DEFAULT_LIMITS, oneCommand } from './command-size.js';
import type { PersistMetrics } from './metrics.js';
import { type InsertVerdict, insertVerdict } from './verdict.js';
import {
  type ConflictDocument,
  type DeadDocument,
  deadDocument,
  entryBytes,
  sameContent,
  type Work,
  workOf,
} from './work.js';

type EventWork = Extract<Work, { kind: 'event' }>;
type DeadWork = Extract<Work, { kind: 'dead' }>;

const ACK_CHUNK = 1000;
const WRITE_CONCERN = { w: 1, j: true } as const;

export type Intake = 'push' | 'pull';

/** A delivery that was not committed (in time, or at all yet): the Trigger should redeliver it. */
export class DeadlineError extends HttpError {
  override name = 'DeadlineError';

  constructor(detail: string) {
    super('not_persisted', detail);
  }
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  settled: boolean;
}

interface Item {
  work: Work;
  /** The stream entry to forget once this item is committed. */
  streamId: string | null;
  bytes: number;
  intake: Intake;
  waiters: Waiter[];
  /** Write attempts that did not commit it. */
  attempts: number;
}

interface Retry {
  items: Item[];
  dueAt: number;
}

export interface CommitterOptions {
  events: Collection<EventDocument>;
  dead: Collection<DeadDocument>;
  /** Where an event goes whose (source, id) was stored before with other content. */
  conflicts: Collection<ConflictDocument>;
  redis: Redis;
  streamKey: string;
  consumerGroup: string;
  /** Every write command goes through it (shared-budget.ts, or a local TokenBucket). */
  budget: WriteBudget;
  maxBatchDocs: number;
  /**
   * Writes slower than this (DB_LATENCY_TARGET_MS) halve the largest batch (at
   * most once a second); faster ones let it grow back toward maxBatchDocs. The
   * budget's own figure (SharedBudget, the same rule over every replica's writes)
   * wins while it has one.
   */
  latencyTargetMs: number;
  maxBatchBytes: number;
  deliveryDeadlineMs: number;
  maxCommitAttempts: number;
  parkMs: number;
  /** Asks the database whether it answers at all (a ping). */
  ping(): Promise<unknown>;
  log: Logger;
  metrics: PersistMetrics;
}

const now = () => performance.now();

/** BSON sizes of the documents written, computed once per document. */
const bsonSizes = new WeakMap<object, number>();
function bsonOf(doc: object): number {
  let size = bsonSizes.get(doc);
  if (size === undefined) {
    size = bsonSize(doc);
    bsonSizes.set(doc, size);
  }
  return size;
}

export class Committer {
  private queue: Item[] = [];
  private head = 0;
  private retries: Retry[] = [];
  /** Committed entries whose ack-delete failed; retried without writing again. */
  private unforgotten: string[] = [];
  private forgetDueAt = 0;
  /** Items queued, retrying or being written, by stream id: one item per entry. */
  private readonly held = new Map<string, Item>();
  /** Entries given up for now, and when they may be tried again. */
  private readonly parked = new Map<string, number>();
  private wake: (() => void) | undefined;
  /** Called once when the next batch is taken from the queue (whenTaken). */
  private takenWaiters: Array<() => void> = [];
  /** What one insert command holds (the server's hello; the driver's defaults until then). */
  private commandLimits: CommandLimits = DRIVER_DEFAULT_LIMITS;
  private stopping = false;
  private abandoned = false;
  private inFlight: Item[] = [];
  private loop: Promise<void> | undefined;
  private failing = false;
  /**
   * The largest batch now: smaller while writes are slower than the latency
   * target. Backing off the rate alone cannot bring a slow disk's write latency
   * down (fewer writes make each batch larger); smaller batches do, and what is
   * not written yet waits in the stream, which is what it is for.
   */
  private batchCap: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  /** When the last batch committed (performance.now()), for readiness. */
  lastCommitAt = Number.NEGATIVE_INFINITY;
  private readonly scripts: Scripts;

  constructor(private readonly options: CommitterOptions) {
    this.scripts = new Scripts(options.redis);
    this.batchCap = options.maxBatchDocs;
  }

  /** The largest batch the committer takes now: the budget's, else this process's own. */
  get batchLimit(): number {
    return this.options.budget.batchLimit ?? this.batchCap;
  }

  /** Adapts the largest batch to a write's latency (AIMD, as the budget's rate). */
  private adapt(latencyMs: number, ok: boolean): void {
    const max = this.options.maxBatchDocs;
    if (!ok || latencyMs > this.options.latencyTargetMs) {
      if (now() - this.lastCut < 1000) return;
      this.lastCut = now();
      this.batchCap = Math.max(Math.min(10, max), Math.floor(this.batchCap / 2));
    } else {
      this.batchCap = Math.min(max, this.batchCap + Math.max(1, Math.floor(max / 50)));
    }
  }

  /** Items waiting for a write (fresh and retrying). */
  get queued(): number {
    let retrying = 0;
    for (const retry of this.retries) retrying += retry.items.length;
    return this.queue.length - this.head + retrying;
  }

  /**
   * Resolves when the next batch is taken from the queue (room for more), or
   * after `timeoutMs` at the latest.
   */
  whenTaken(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        // Gone from the list, so that waits while nothing is taken (a database down) do not pile up.
        this.takenWaiters = this.takenWaiters.filter((waiter) => waiter !== done);
        resolve();
      }, timeoutMs);
      this.takenWaiters.push(done);
    });
  }

  /** The pull intake leaves alone what is held here or parked. */
  isBusy(streamId: string): boolean {
    if (this.held.has(streamId)) return true;
    const until = this.parked.get(streamId);
    if (until === undefined) return false;
    if (until > now()) return true;
    this.parked.delete(streamId);
    return false;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Push: resolves once the event is committed, rejects with DeadlineError when it is not. */
  /** The server's limits of one write command (its hello), so that one grant is one command. */
  setCommandLimits(limits: CommandLimits): void {
    this.commandLimits = limits;
  }

  submit(work: Work, streamId: string | null, bytes: number): Promise<void> {
    if (this.stopping)
      return Promise.reject(new DeadlineError('persist is shutting down; redeliver'));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined as never, settled: false };
      waiter.timer = setTimeout(() => {
        if (waiter.settled) return;
        waiter.settled = true;
        this.options.metrics.deadlines.inc();
        reject(
          new DeadlineError(
            `not committed within DELIVERY_DEADLINE_MS (${this.options.deliveryDeadlineMs} ms); redeliver`,
          ),
        );
      }, this.options.deliveryDeadlineMs);
      // A redelivery of an entry already held waits for the same write.
      const existing = streamId === null ? undefined : this.held.get(streamId);
      if (existing) {
        existing.waiters.push(waiter);
        return;
      }
      if (streamId !== null) this.parked.delete(streamId);
      this.push({ work, streamId, bytes, intake: 'push', waiters: [waiter], attempts: 0 });
    });
  }

  /** Pull: queues an entry read straight from the stream; nobody waits for it. */
  enqueue(work: Work, streamId: string, bytes: number): void {
    if (this.stopping || this.isBusy(streamId)) return;
    this.push({ work, streamId, bytes, intake: 'pull', waiters: [], attempts: 0 });
  }

  private push(item: Item): void {
    if (item.streamId !== null) this.held.set(item.streamId, item);
    this.queue.push(item);
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
    if (done) return 0;
    return this.abandon();
  }

  private abandon(): number {
    this.abandoned = true;
    const left = [
      ...this.queue.slice(this.head),
      ...this.retries.flatMap((r) => r.items),
      ...this.inFlight,
    ];
    const error = new DeadlineError(
      'persist is shutting down before this was committed; redeliver',
    );
    for (const item of left) this.reject(item, error);
    this.queue = [];
    this.head = 0;
    this.retries = [];
    this.wake?.();
    if (left.length > 0)
      this.options.log.warn(
        { entries: left.length },
        'stopping with entries not committed: they stay in the stream and are persisted after the next start',
      );
    return left.length;
  }

  private idle(): boolean {
    return this.queued === 0 && this.unforgotten.length === 0;
  }

  private async run(): Promise<void> {
    while (!this.abandoned) {
      if (this.unforgotten.length > 0 && now() >= this.forgetDueAt) await this.retryForget();
      const next = this.next();
      if (!next) {
        if (this.stopping && this.idle()) return;
        await this.idleWait();
        continue;
      }
      if (this.abandoned) return;
      const group = next.items;
      this.inFlight = group;
      try {
        await this.attempt(group, next.fresh);
      } catch (error) {
        // Nothing here is known to be committed: the whole group is tried again.
        this.failed(group, `unexpected: ${String((error as Error)?.stack ?? error)}`, 'unexpected');
      } finally {
        this.inFlight = [];
      }
    }
  }

  /** Waits for new work, or until the earliest retry (or forget) is due. */
  private async idleWait(): Promise<void> {
    let dueAt = Number.POSITIVE_INFINITY;
    for (const retry of this.retries) dueAt = Math.min(dueAt, retry.dueAt);
    if (this.unforgotten.length > 0) dueAt = Math.min(dueAt, this.forgetDueAt);
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      if (dueAt !== Number.POSITIVE_INFINITY)
        setTimeout(resolve, Math.max(1, Math.ceil(dueAt - now())));
    });
    this.wake = undefined;
  }

  /**
   * A retry that is due, else a fresh batch of everything queued (up to the
   * caps; a fresh batch is topped up again when its write is granted).
   */
  private next(): { items: Item[]; fresh: boolean } | undefined {
    const t = now();
    const due = this.retries.findIndex((retry) => retry.dueAt <= t);
    if (due !== -1) return { items: this.retries.splice(due, 1)[0]?.items ?? [], fresh: false };
    if (this.head >= this.queue.length) return undefined;
    return { items: this.take(this.batchLimit, 0), fresh: true };
  }

  /** Takes queued items from the front, up to `count` and the byte cap (`bytes` already taken). */
  private take(count: number, bytes: number): Item[] {
    const batch: Item[] = [];
    while (this.head < this.queue.length && batch.length < count) {
      const item = this.queue[this.head] as Item;
      if ((batch.length > 0 || bytes > 0) && bytes + item.bytes > this.options.maxBatchBytes) break;
      this.head++;
      batch.push(item);
      bytes += item.bytes;
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (batch.length > 0) {
      const waiters = this.takenWaiters;
      this.takenWaiters = [];
      for (const taken of waiters) taken();
    }
    return batch;
  }

  /**
   * What arrived while a fresh batch waited for the budget, up to the largest
   * batch: read from the stream like the rest (doorbells), events only (anything
   * else goes back to the front of the queue). Deliveries whose entry is gone are
   * answered at once.
   */
  private async topUp(items: Item[]): Promise<Item[]> {
    const bytes = items.reduce((sum, item) => sum + item.bytes, 0);
    const extra = this.take(this.batchLimit - items.length, bytes);
    if (extra.length === 0) return [];
    this.inFlight = [...this.inFlight, ...extra];
    try {
      // Takes the deliveries whose entry is gone out of `extra`.
      this.settle(await this.openDoors(extra));
    } catch {
      // The stream cannot be read now: they wait for the next batch.
      this.queue.splice(this.head, 0, ...extra);
      return [];
    }
    const events = extra.filter((item) => item.work.kind === 'event');
    if (events.length < extra.length)
      this.queue.splice(this.head, 0, ...extra.filter((item) => item.work.kind !== 'event'));
    return events;
  }

  /** One write attempt for a group: events first, then dead letters (another token). */
  private async attempt(group: Item[], fresh = false): Promise<void> {
    const started = now();
    const answered = await this.openDoors(group);
    const events = group.filter((item) => item.work.kind === 'event');
    const dead = group.filter((item) => item.work.kind === 'dead');
    const committed: Item[] = [];
    if (events.length > 0) {
      const outcome = await this.write(this.options.events, events, 'events', fresh);
      const unchecked =
        outcome.duplicates.length > 0 ? await this.checkDuplicates(outcome.duplicates) : [];
      committed.push(...outcome.committed.filter((item) => !unchecked.includes(item)));
      for (const [item, reason] of outcome.refused) {
        const fields = (item.work as EventWork).fields;
        item.work = {
          kind: 'dead',
          doc: deadDocument(
            `the database refused the document: ${reason}`,
            item.streamId,
            JSON.stringify(fields),
          ),
        };
        dead.push(item);
      }
      if (outcome.unavailable) {
        // The database is not answering: the dead letters would not get through either.
        if (dead.length > 0) this.failed(dead, 'the database is unavailable', 'unavailable');
        dead.length = 0;
      }
    }
    if (dead.length > 0) {
      const outcome = await this.write(this.options.dead, dead, 'events_dead');
      committed.push(...outcome.committed);
      this.options.metrics.deadLetters.inc(outcome.committed.length);
      // A dead letter is text: a refusal of its content is not expected, so it is retried.
      if (outcome.refused.length > 0)
        this.failed(
          outcome.refused.map(([item]) => item),
          `dead letter refused: ${outcome.refused[0]?.[1]}`,
          'refused',
        );
    }
    if (answered.length > 0) this.settle(answered);
    if (committed.length === 0) return;
    this.lastCommitAt = now();
    await this.forget(committed);
    this.settle(committed);
    this.options.metrics.batchDocs.observe(committed.length);
    this.options.metrics.batchLimit.set(this.batchLimit);
    this.options.metrics.commitSeconds.observe((now() - started) / 1000);
    if (this.failing) {
      this.failing = false;
      this.options.log.info('writes commit again');
    }
  }

  /**
   * One insertMany of the items' documents, at most the largest batch as it is
   * when the budget is granted: the batch was formed before (another replica's
   * slow write may have cut the limit meanwhile), and what is over the limit is
   * held back for the next write, with no attempt counted; a fresh batch under
   * the limit is topped up with what was queued while it waited (the budget's
   * wait is when a group commit grows). Returns the committed
   * items and those refused for their content; every other item written is
   * already rescheduled (retry, split or park).
   */
  private async write(
    collection: Collection<EventDocument> | Collection<DeadDocument>,
    group: Item[],
    name: 'events' | 'events_dead',
    fresh = false,
  ): Promise<{
    committed: Item[];
    refused: Array<[Item, string]>;
    unavailable: boolean;
    /** Committed items the database held already (by _id). */
    duplicates: Item[];
  }> {
    this.options.metrics.writeCommands.inc({ collection: name });
    let items = group;
    let kept = group.length;
    /** Taken into this write, then left for the next one: over what one command holds. */
    let over: Item[] = [];
    // Every write command takes a token of the budget, and tells it whether the
    // database answered (a refused document is an answer; a timeout is not).
    const answered = (verdict: InsertVerdict) => verdict.kind !== 'unavailable';
    const verdict: InsertVerdict = await this.options.budget.run(async () => {
      kept = Math.min(group.length, this.batchLimit);
      items = group.slice(0, kept);
      if (fresh && items.length < this.batchLimit && !this.abandoned)
        items = [...items, ...(await this.topUp(items))];
      if (name === 'events') {
        const persistedAt = new Date();
        for (const item of items) (item.work as EventWork).doc.persistedAt = persistedAt;
      }
      // One grant, one command: what the driver would send as a second command waits.
      const fit = oneCommand(
        items.map((item) => bsonOf((item.work as EventWork | DeadWork).doc)),
        this.commandLimits,
      );
      over = items.slice(fit);
      items = items.slice(0, fit);
      const started = now();
      let verdict: InsertVerdict;
      try {
        await (collection as Collection<EventDocument | DeadDocument>).insertMany(
          items.map((item) => (item.work as EventWork | DeadWork).doc),
          { ordered: false, writeConcern: WRITE_CONCERN, forceServerObjectId: false },
        );
        verdict = { kind: 'committed', duplicates: [] };
      } catch (error) {
        verdict = insertVerdict(error, items.length);
      }
      this.adapt(now() - started, answered(verdict));
      return verdict;
    }, answered);
    // Abandoned meanwhile: abandon() has answered them with the rest of the group.
    if ((over.length > 0 || kept < group.length) && !this.abandoned)
      this.queue.splice(this.head, 0, ...over, ...group.slice(kept));
    if (this.abandoned) return { committed: [], refused: [], unavailable: true, duplicates: [] };
    const result = {
      committed: [] as Item[],
      refused: [] as Array<[Item, string]>,
      unavailable: false,
      duplicates: [] as Item[],
    };
    switch (verdict.kind) {
      case 'committed':
        this.options.metrics.duplicates.inc(verdict.duplicates.length);
        result.committed = items;
        result.duplicates = verdict.duplicates.map((i) => items[i] as Item);
        break;
      case 'partial': {
        this.options.metrics.duplicates.inc(verdict.duplicates.length);
        result.duplicates = verdict.duplicates.map((i) => items[i] as Item);
        const retry: Item[] = [];
        items.forEach((item, index) => {
          const refusal = verdict.refused.get(index);
          if (!refusal) result.committed.push(item);
          else if (refusal.content)
            result.refused.push([item, `${refusal.code}: ${refusal.message}`]);
          else retry.push(item);
        });
        if (retry.length > 0)
          this.failed(retry, `refused for a reason not known to be the document's`, 'refused');
        break;
      }
      case 'unavailable':
        // A batch that failed before while the server answers a ping now is suspect
        // itself (a server can drop the connection over one document): split it.
        if (items.length > 1 && items.some((item) => item.attempts > 0) && (await this.answers())) {
          this.failed(items, `${verdict.reason} (the server answers: split)`, 'unknown', {
            split: true,
          });
          break;
        }
        result.unavailable = true;
        this.failed(items, verdict.reason, 'unavailable');
        break;
      case 'split':
        if (items.length === 1 && verdict.content) {
          result.refused = items.map((item) => [item, verdict.reason]);
        } else if (verdict.content) {
          // A document explains it: halves are tried at once, until the offender is alone.
          this.options.metrics.batchFailures.inc({ reason: 'split' });
          const half = Math.ceil(items.length / 2);
          this.retries.unshift(
            { items: items.slice(0, half), dueAt: 0 },
            { items: items.slice(half), dueAt: 0 },
          );
        } else {
          // Unforeseen: not committed; retried in halves with backoff, parked after its attempts.
          this.failed(items, verdict.reason, 'unknown', { split: true });
        }
        break;
    }
    return result;
  }

  /**
   * Duplicates the database already held: a redelivery of the same entry, the
   * same event twice (same content), or another event under the same (source,
   * id), a conflict. The first stored stays (CloudEvents' rule); a conflict is
   * counted and kept in events_conflicts, and its entry is forgotten only once
   * that record is written. Reads the stored events (one read command; reads
   * are not write commands of the budget). Returns the items whose check could
   * not be done now: they are retried (their insert finds the duplicate again).
   */
  private async checkDuplicates(duplicates: Item[]): Promise<Item[]> {
    const docOf = (item: Item) => (item.work as EventWork).doc;
    const key = (id: { source: string; id: string }) => `${id.source}\u0000${id.id}`;
    let conflicts: Array<[Item, Partial<EventDocument>]>;
    try {
      const stored = await this.options.events
        .find(
          { _id: { $in: duplicates.map((item) => docOf(item)._id) } },
          {
            projection: {
              type: 1,
              subject: 1,
              time: 1,
              timeText: 1,
              data: 1,
              attributes: 1,
              streamId: 1,
            },
            promoteValues: false,
          },
        )
        .toArray();
      const byId = new Map(stored.map((doc) => [key(doc._id), doc as Partial<EventDocument>]));
      conflicts = [];
      for (const item of duplicates) {
        const first = byId.get(key(docOf(item)._id));
        // Gone meanwhile, the same entry again, or the same event: nothing to keep.
        if (!first || first.streamId === item.streamId || sameContent(first, docOf(item))) continue;
        conflicts.push([item, first]);
      }
    } catch (error) {
      this.failed(duplicates, `duplicates not checked: ${String(error)}`, 'unavailable');
      return duplicates;
    }
    if (conflicts.length === 0) return [];
    const records: ConflictDocument[] = conflicts.map(([item, first]) => ({
      _id: item.streamId ?? `${docOf(item)._id.source} ${docOf(item)._id.id}`,
      event: docOf(item)._id,
      storedStreamId: String(first.streamId ?? ''),
      raw: JSON.stringify((item.work as EventWork).fields),
      detectedAt: new Date(),
    }));
    this.options.metrics.writeCommands.inc({ collection: CONFLICTS_COLLECTION });
    const answered = (verdict: InsertVerdict) => verdict.kind !== 'unavailable';
    const verdict = await this.options.budget.run(async () => {
      try {
        await this.options.conflicts.insertMany(records, {
          ordered: false,
          writeConcern: WRITE_CONCERN,
        });
        return { kind: 'committed', duplicates: [] } as InsertVerdict;
      } catch (error) {
        return insertVerdict(error, records.length);
      }
    }, answered);
    const items = conflicts.map(([item]) => item);
    if (verdict.kind !== 'committed') {
      this.failed(items, `conflict not recorded: ${verdict.kind}`, 'unavailable');
      return items;
    }
    this.options.metrics.conflicts.inc(items.length);
    this.options.log.warn(
      { conflicts: items.length, first: records[0]?.event },
      'events with the (source, id) of a stored event and other content: the first stays, these are in events_conflicts',
    );
    return [];
  }

  /**
   * The stream is the truth, a delivery only a doorbell: every doorbell of the
   * group is replaced by the work its stream entry gives, all read in one round
   * trip. An entry that is not in the stream (persisted and deleted already, or
   * never there) has nothing to write: its deliveries are answered at once, and
   * nothing is written or deleted for them. Returns those.
   */
  private async openDoors(group: Item[]): Promise<Item[]> {
    const doorbells = group.filter((item) => item.work.kind === 'doorbell');
    if (doorbells.length === 0) return [];
    const pipeline = this.options.redis.pipeline();
    for (const item of doorbells)
      pipeline.xrange(this.options.streamKey, item.streamId as string, item.streamId as string);
    const replies = (await pipeline.exec()) ?? [];
    const absent: Item[] = [];
    doorbells.forEach((item, i) => {
      const [error, entries] = replies[i] ?? [new Error('no reply')];
      if (error) throw error;
      const entry = (entries as Array<[string, string[]]>)[0];
      if (entry) {
        item.work = workOf(entry[0], entry[1]);
        item.bytes = entryBytes(entry[1]);
      } else absent.push(item);
    });
    for (const item of absent) group.splice(group.indexOf(item), 1);
    this.options.metrics.absentEntries.inc(absent.length);
    return absent;
  }

  /** The server answers a ping within a second (a read; it takes no token). */
  private answers(): Promise<boolean> {
    return within(this.options.ping(), 1000).catch(() => false);
  }

  /** Not committed: retried with backoff, or parked once it has had its attempts. */
  private failed(items: Item[], reason: string, kind: string, { split = false } = {}): void {
    this.options.metrics.batchFailures.inc({ reason: kind });
    const park: Item[] = [];
    const retry: Item[] = [];
    let attempts = 0;
    for (const item of items) {
      item.attempts++;
      if (item.attempts >= this.options.maxCommitAttempts) park.push(item);
      else {
        retry.push(item);
        attempts = Math.max(attempts, item.attempts);
      }
    }
    if (!this.failing || park.length > 0) {
      this.failing = true;
      this.options.log.warn(
        { docs: items.length, retrying: retry.length, parking: park.length, reason },
        'write not committed',
      );
    }
    if (retry.length > 0) {
      const dueAt = now() + Math.min(100 * 2 ** attempts, 5000) * (0.75 + Math.random() / 2);
      const half = split && retry.length > 1 ? Math.ceil(retry.length / 2) : retry.length;
      this.retries.push({ items: retry.slice(0, half), dueAt });
      if (half < retry.length) this.retries.push({ items: retry.slice(half), dueAt });
    }
    if (park.length > 0) this.park(park, reason);
  }

  private park(items: Item[], reason: string): void {
    const until = now() + this.options.parkMs;
    // Entries persisted elsewhere meanwhile are never looked up again: forget expired ones.
    if (this.parked.size > 10_000)
      for (const [id, at] of this.parked) if (at <= now()) this.parked.delete(id);
    const error = new DeadlineError(
      `not committed after ${this.options.maxCommitAttempts} attempts (${reason}); it stays in the stream and is retried later`,
    );
    for (const item of items) {
      if (item.streamId !== null) this.parked.set(item.streamId, until);
      this.reject(item, error);
    }
    this.options.metrics.parked.inc(items.length);
  }

  private reject(item: Item, error: Error): void {
    if (item.streamId !== null && this.held.get(item.streamId) === item)
      this.held.delete(item.streamId);
    for (const waiter of item.waiters) {
      if (waiter.settled) continue;
      waiter.settled = true;
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
  }

  /** Answers the deliveries of committed items and records them. */
  private settle(items: Item[]): void {
    const t = Date.now();
    for (const item of items) {
      if (item.streamId !== null && this.held.get(item.streamId) === item)
        this.held.delete(item.streamId);
      if (item.work.kind === 'event') {
        this.options.metrics.persisted.inc({ intake: item.intake });
        if (item.streamId !== null)
          this.options.metrics.lag.observe(
            (t - Number(item.streamId.slice(0, item.streamId.indexOf('-')))) / 1000,
          );
      }
      for (const waiter of item.waiters) {
        if (waiter.settled) continue;
        waiter.settled = true;
        clearTimeout(waiter.timer);
        waiter.resolve();
      }
    }
  }

  /**
   * XACK then XDEL the committed entries, atomically per chunk. What fails here is
   * committed all the same; it is retried later without writing again (and, if
   * persist stops first, the sweeper finds it stored: a duplicate, then deleted).
   */
  private async forget(items: Item[]): Promise<void> {
    const ids = items.flatMap((item) => (item.streamId === null ? [] : [item.streamId]));
    await this.ackDelete(ids);
  }

  private async ackDelete(ids: string[]): Promise<void> {
    const chunks: Promise<void>[] = [];
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      const chunk = ids.slice(i, i + ACK_CHUNK);
      chunks.push(
        this.scripts
          .run('ack-delete', [this.options.streamKey], [this.options.consumerGroup, ...chunk])
          .then(
            () => undefined,
            (error: unknown) => {
              if (this.unforgotten.length === 0)
                this.options.log.warn(
                  { err: error },
                  'could not delete committed entries; will retry',
                );
              this.unforgotten.push(...chunk);
              this.forgetDueAt = now() + 1000;
            },
          ),
      );
    }
    await Promise.all(chunks);
  }

  private async retryForget(): Promise<void> {
    const ids = this.unforgotten;
    this.unforgotten = [];
    await this.ackDelete(ids);
  }
}
