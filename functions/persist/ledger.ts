/**
 * The stream as persist's ledger: what an entry holds, read by id (a delivery
 * is only a doorbell: the stream is the truth), and the committed entries
 * forgotten: XACK then XDEL, atomically per chunk (ack-delete-1.lua). A forget
 * that fails is committed all the same; it is retried later without writing
 * again (and, if persist stops first, the sweeper finds the entry stored: a
 * duplicate, then deleted).
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import type { Scripts } from '../shared/redis/scripts.js';
import { type Item, isDoorbell } from './queue.js';
import { entryBytes, workOf } from './work.js';

const ACK_CHUNK = 1000;
const RETRY_AFTER_MS = 1000;

/** A stream entry: its id and its field/value strings. */
export interface StreamEntry {
  id: string;
  fields: string[];
}

export class StreamLedger {
  /** Committed entries whose ack-delete failed. */
  private unforgotten: string[] = [];
  /** Deleted at their commit (forgetNow), not yet handed to forget. */
  private readonly forgotten = new Set<string>();
  private retryDueAt = 0;

  constructor(
    private readonly redis: Redis,
    private readonly scripts: Scripts,
    private readonly stream: string,
    private readonly group: string,
    private readonly log: Logger,
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
  present(ids: readonly string[]): Promise<boolean[]> {
    return this.scripts.streamPresent(this.stream, ids);
  }

  /** The oldest `count` entries of the stream that have waited longer than `waitedMs` (Redis's clock). */
  async waited(waitedMs: number, count: number): Promise<StreamEntry[]> {
    const entries = await this.scripts.streamBehind(this.stream, waitedMs, count);
    return entries.map(([id, fields]) => ({ id, fields }));
  }

  /** Acks and deletes these committed entries (what fails is retried later: `retryDue`). */
  async forget(ids: readonly string[]): Promise<void> {
    const left = ids.filter((id) => !this.forgotten.delete(id));
    await this.ackDelete(left);
  }

  /**
   * Acks and deletes a whole commit's entries at once, under its grant (the
   * next grant finds the stream without them); `forget` then skips them.
   */
  async forgetNow(ids: readonly string[]): Promise<void> {
    await this.ackDelete(ids);
    for (const id of ids) this.forgotten.add(id);
  }

  private async ackDelete(ids: readonly string[]): Promise<void> {
    const chunks: Promise<void>[] = [];
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      const chunk = ids.slice(i, i + ACK_CHUNK);
      chunks.push(
        this.scripts.ackDelete(this.stream, this.group, chunk).then(
          () => undefined,
          (error: unknown) => {
            if (this.unforgotten.length === 0)
              this.log.warn({ err: error }, 'could not delete committed entries; will retry');
            this.unforgotten.push(...chunk);
            this.retryDueAt = performance.now() + RETRY_AFTER_MS;
          },
        ),
      );
    }
    await Promise.all(chunks);
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
    const ids = this.unforgotten;
    this.unforgotten = [];
    await this.forget(ids);
  }

  /**
   * Replaces every doorbell of the group by the work its stream entry gives, all
   * read in one round trip (the stream is the truth, a delivery only a doorbell).
   * An entry not in the stream (persisted and deleted already, or never there)
   * has nothing to write: its item is `absent`, answered without a write.
   */
  async open(group: readonly Item[]): Promise<{ ready: Item[]; absent: Item[] }> {
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
        });
    }
    return { ready, absent };
  }
}
