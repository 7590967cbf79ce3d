/**
 * The stream as persist's ledger: what an entry holds, read by id (a delivery
 * is only a doorbell: the stream is the truth), and the committed entries
 * forgotten: XACK then XDEL, atomically per chunk (ack-delete-1.lua). A forget
 * that fails is committed all the same; it is retried later without writing
 * again (and, if persist stops first, the sweeper finds the entry stored: a
 * duplicate, then deleted).
 *
 * For the status monitor (docs/architecture.md, "Receipts"): a dead letter's
 * record is written before its entry is deleted, never after (an entry gone
 * without one was committed as an event), and what one forget took out of the
 * stream is announced in one PUBLISH (ingest wakes the requests waiting for
 * it); a lost announcement only delays their answer.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { announcementText } from '../shared/receipts.js';
import { committedChannel, deadRecordKey, receiptLedgerKey } from '../shared/redis/keys.js';
import type { Scripts } from '../shared/redis/scripts.js';
import { type Item, isDoorbell } from './queue.js';
import type { ReadSize } from './read-size.js';
import { entryBytes, workOf } from './work.js';

const ACK_CHUNK = 1000;
const RETRY_AFTER_MS = 1000;

/** A stream entry: its id and its field/value strings. */
export interface StreamEntry {
  id: string;
  fields: string[];
}

/** A committed entry to forget; a dead letter's carries its record (functions/shared/receipts.ts). */
export interface Forget {
  id: string;
  deadRecord?: string;
}

export interface LedgerOptions {
  /**
   * How long a dead letter's record lives at least (persist's
   * IDEMPOTENCY_TTL_SEC), ms; dead-record-2.lua keeps it as long as ingest's
   * receipts live when that is longer.
   */
  deadTtlMs: number;
  /** Entries taken out of the stream (the measured drain). */
  taken?: (entries: number) => void;
  /** How many entries one read asks for (read-size.ts). */
  reads: ReadSize;
}

export class StreamLedger {
  /** Committed entries whose ack-delete (or dead record) failed. */
  private unforgotten: Forget[] = [];
  /** Deleted at their commit (forgetNow), not yet handed to forget. */
  private readonly forgotten = new Set<string>();
  private retryDueAt = 0;

  constructor(
    private readonly redis: Redis,
    private readonly scripts: Scripts,
    private readonly stream: string,
    private readonly group: string,
    private readonly log: Logger,
    private readonly options: LedgerOptions,
  ) {}

  /**
   * Each entry, or undefined for one not in the stream (or no id), read in one
   * round trip. Throws when Redis fails.
   */
  async read(ids: ReadonlyArray<string | null>): Promise<Array<StreamEntry | undefined>> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) if (id !== null) pipeline.xrange(this.stream, id, id);
    const replies = ids.some((id) => id !== null) ? ((await pipeline.exec()) ?? []) : [];
    let i = 0;
    return ids.map((id) => {
      if (id === null) return undefined;
      const [error, entries] = replies[i++] ?? [new Error('no reply')];
      if (error) throw error;
      const found = (entries as Array<[string, string[]]>)[0];
      return found ? { id: found[0], fields: found[1] } : undefined;
    });
  }

  /**
   * Whether each of these entries is still in the stream (one round trip). Only
   * persist deletes, and only what is committed: one gone was committed.
   */
  async present(ids: readonly string[]): Promise<boolean[]> {
    // Redis copies each entry it looks at: a few hundred KiB of them a command.
    const chunk = Math.max(1, this.options.reads.count(ids.length));
    const parts: Promise<boolean[]>[] = [];
    for (let i = 0; i < ids.length; i += chunk)
      parts.push(this.scripts.streamPresent(this.stream, ids.slice(i, i + chunk)));
    return (await Promise.all(parts)).flat();
  }

  /**
   * The oldest entries of the stream that have waited longer than `waitedMs`
   * (Redis's clock), after `after` when given, at most `most` and no more than
   * one read's worth (read-size.ts): a read that returns fewer than it asked
   * for reached the last of them.
   */
  async waited(
    waitedMs: number,
    most: number,
    after?: string,
  ): Promise<{ entries: StreamEntry[]; last: boolean }> {
    const { reads } = this.options;
    const count = reads.count(most);
    const read = await this.scripts.streamBehind(this.stream, waitedMs, count, after);
    reads.observe(read.map(([, fields]) => fields));
    return { entries: read.map(([id, fields]) => ({ id, fields })), last: read.length < count };
  }

  /**
   * Acks and deletes these committed entries (what fails is retried later:
   * `retryDue`); `persistedAt`: when their events were stored, for the announcement.
   */
  async forget(entries: readonly Forget[], persistedAt?: Date): Promise<void> {
    const left = entries.filter((entry) => !this.forgotten.delete(entry.id));
    await this.ackDelete(left, persistedAt);
  }

  /**
   * Acks and deletes a whole commit's entries at once, under its grant (the
   * next grant finds the stream without them); `forget` then skips them.
   */
  async forgetNow(entries: readonly Forget[], persistedAt?: Date): Promise<void> {
    await this.ackDelete(entries, persistedAt);
    for (const entry of entries) this.forgotten.add(entry.id);
  }

  private async ackDelete(entries: readonly Forget[], persistedAt?: Date): Promise<void> {
    const ready = await this.recordDead(entries);
    const done: string[] = [];
    const chunks: Promise<void>[] = [];
    for (let i = 0; i < ready.length; i += ACK_CHUNK) {
      const chunk = ready.slice(i, i + ACK_CHUNK);
      const ids = chunk.map((entry) => entry.id);
      chunks.push(
        this.scripts.ackDelete(this.stream, this.group, ids).then(
          (deleted) => {
            done.push(...ids);
            this.options.taken?.(deleted);
          },
          (error: unknown) => this.later(chunk, error),
        ),
      );
    }
    await Promise.all(chunks);
    this.announce(done, persistedAt);
  }

  /** Writes the dead letters' records; returns the entries that may be deleted now. */
  private async recordDead(entries: readonly Forget[]): Promise<Forget[]> {
    const dead = entries.filter((entry) => entry.deadRecord !== undefined);
    if (dead.length === 0) return [...entries];
    const ledger = receiptLedgerKey(this.stream);
    try {
      await Promise.all(
        dead.map((entry) =>
          this.scripts.deadRecord(
            { record: deadRecordKey(this.stream, entry.id), ledger },
            entry.deadRecord as string,
            this.options.deadTtlMs,
          ),
        ),
      );
      return [...entries];
    } catch (error) {
      // Not deleted without its record: retried with it later.
      this.later(dead, error);
      return entries.filter((entry) => entry.deadRecord === undefined);
    }
  }

  private later(entries: readonly Forget[], error: unknown): void {
    if (this.unforgotten.length === 0)
      this.log.warn({ err: error }, 'could not delete committed entries; will retry');
    this.unforgotten.push(...entries);
    this.retryDueAt = performance.now() + RETRY_AFTER_MS;
  }

  /** One PUBLISH for what one forget took out of the stream (nobody may listen: fine). */
  private announce(ids: readonly string[], persistedAt: Date | undefined): void {
    if (ids.length === 0) return;
    const text = announcementText({ ids: [...ids], persistedAt: persistedAt?.getTime() });
    this.redis.publish(committedChannel(this.stream), text).catch(() => undefined);
  }

  /** Committed entries are still to be forgotten. */
  get behind(): boolean {
    return this.unforgotten.length > 0;
  }

  /** When the next retry of a failed forget is due (Infinity: none). */
  get dueAt(): number {
    return this.behind ? this.retryDueAt : Number.POSITIVE_INFINITY;
  }

  /** Retries the failed forgets, once due. */
  async retryDue(): Promise<void> {
    if (!this.behind || performance.now() < this.retryDueAt) return;
    const entries = this.unforgotten;
    this.unforgotten = [];
    await this.forget(entries);
  }

  /**
   * Replaces every doorbell of the group by the work its stream entry gives, all
   * read in one round trip (the stream is the truth, a delivery only a doorbell).
   * An entry not in the stream (persisted and deleted already, or never there)
   * has nothing to write: its item is `absent`, answered without a write.
   * `readAt`: the stamp of this read (freshness.ts), kept on the items it opens.
   */
  async open(group: readonly Item[], readAt?: number): Promise<{ ready: Item[]; absent: Item[] }> {
    const doorbells = group.filter(isDoorbell);
    if (doorbells.length === 0) return { ready: [...group], absent: [] };
    const entries = await this.read(doorbells.map((item) => item.ticket.streamId));
    const found = new Map(doorbells.map((item, i) => [item, entries[i]]));
    const ready: Item[] = [];
    const absent: Item[] = [];
    for (const item of group) {
      const entry = isDoorbell(item) ? found.get(item) : undefined;
      if (!isDoorbell(item)) ready.push(item);
      else if (!entry) absent.push(item);
      else
        ready.push({
          ticket: item.ticket,
          work: workOf(entry.id, entry.fields),
          bytes: entryBytes(entry.fields),
          readAt,
        });
    }
    return { ready, absent };
  }
}
