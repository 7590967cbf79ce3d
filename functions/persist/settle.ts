/**
 * A fresh batch settled at its grant of the write budget:
 *   - what arrived while it waited (doorbells read from the stream);
 *   - then, up to the largest batch and MAX_BATCH_BYTES, the stream's oldest
 *     entries not held here that have waited longer than twice the latency
 *     target (DB_LATENCY_TARGET_MS), whoever got their deliveries: the fill;
 *   - what of the batch is still in the stream, for the entries read before
 *     another replica last wrote (freshness.ts): its grant may have taken an
 *     entry meanwhile, and only a commit takes an entry out, so one gone is
 *     committed (its deliveries are answered, not counted here);
 *   - when some were gone, the fill again, read now: another writer's grant
 *     took them from the front (its fill, or the pull intake's chunk this
 *     replica was queueing), and without it the write would carry only what
 *     that grant left (writes of a few documents, each costing a slot).
 * So while a backlog waits, each grant writes as much as the database takes in
 * one command, whatever the source has in flight and however many replicas
 * share its deliveries. An entry younger than that is not behind: its delivery
 * brings it soon enough, and a steady flow the database keeps up with is
 * written as it is delivered, in writes no larger than the flow makes them
 * (larger ones only make a slow disk's writes slower).
 *
 * The fill is read ahead: while a write is in flight (`prefetch`), the next
 * grant's candidates are read and converted, so that the grant itself costs no
 * round trip when nothing it writes was read before another writer's write
 * (one replica, or a replica that keeps the budget), and the database waits
 * on nothing but the command. What is held here when they are read (the write
 * in flight among it) is left out; what another replica commits meanwhile is
 * caught by the check above. An entry written twice anyway is a duplicate,
 * which counts as committed: the check is not what makes a write safe, but a
 * duplicate costs the database (a write that meets one is checked for
 * conflicts by a read, which a server without a usable index for it, such as
 * FerretDB on SQLite, pays for with a scan of the collection). The fill is only for a
 * single flight (the shared budget while Redis answers): replicas writing side
 * by side on their local shares would all fill from the same front.
 * Only events join (a dead letter goes to the queue, for a grant of its own).
 * When the stream cannot be read, the batch is written as it was taken.
 */

import type { Freshness } from './freshness.js';
import type { StreamEntry, StreamLedger } from './ledger.js';
import type { PersistMetrics } from './metrics.js';
import type { Outcomes } from './outcomes.js';
import { type EventItem, type HeldQueue, type Item, isEvent, type Ticket } from './queue.js';
import type { WriteBudget } from './spacer.js';
import { entryBytes, workOf } from './work.js';

export interface SettlerOptions {
  queue: HeldQueue;
  ledger: StreamLedger;
  outcomes: Outcomes;
  budget: WriteBudget;
  freshness: Freshness;
  metrics: PersistMetrics;
  maxBatchBytes: number;
  /** DB_LATENCY_TARGET_MS: entries that have waited twice this long fill a grant's write. */
  latencyTargetMs: number;
}

/** The most reads one fill makes (of a few hundred KiB each: read-size.ts). */
const MAX_FILL_READS = 64;

const bytesOf = (items: readonly Item[]) => items.reduce((sum, item) => sum + item.bytes, 0);

export class Settler {
  /** The next grant's fill, read while a write was in flight (by stream id, oldest first). */
  private ahead: Promise<Map<string, Item>> | undefined;

  constructor(private readonly options: SettlerOptions) {}

  /**
   * While a write is in flight: reads the fill of the next grant, when the queue
   * will not fill it (`limit`: the largest batch now).
   */
  prefetch(limit: number): void {
    const room = limit - this.options.queue.size;
    this.ahead = room > 0 && this.options.budget.singleFlight ? this.front(room) : undefined;
  }

  /**
   * The batch to write for `taken`, at most `limit` items; `joined` is told
   * what joins it from the queue or the stream as soon as it is taken.
   */
  async settle(
    taken: EventItem[],
    limit: number,
    joined: (items: Item[]) => void,
  ): Promise<EventItem[]> {
    const { queue, ledger, outcomes, metrics } = this.options;
    const extra = queue.take(limit - taken.length, bytesOf(taken));
    joined(extra);
    let opened: { ready: Item[]; absent: Item[] };
    try {
      opened = await ledger.open(extra, this.options.freshness.stamp());
    } catch {
      // The stream cannot be read now: what was taken is written as it is.
      queue.putBack(extra);
      return taken;
    }
    metrics.absentEntries.inc(opened.absent.length);
    outcomes.committed(opened.absent);
    queue.putBack(opened.ready.filter((item) => !isEvent(item)));
    const batch = [...taken, ...opened.ready.filter(isEvent)];
    const filled = await this.fill(limit - batch.length, bytesOf(batch));
    joined(filled);
    const all = [...batch, ...filled];
    // A check that cannot be made costs nothing but a duplicate, which counts as committed.
    const there = await this.stillThere(all).catch(() => all);
    if (there.length === all.length) return there;
    // Another writer took part of it: the front, read now, fills it again.
    const refilled = await this.fill(limit - there.length, bytesOf(there));
    joined(refilled);
    return [...there, ...refilled];
  }

  /**
   * What of the batch is still in the stream, asked only of what was read
   * before another writer last wrote (freshness.ts); what left it was
   * committed elsewhere.
   */
  private async stillThere(batch: EventItem[]): Promise<EventItem[]> {
    const { freshness, ledger, outcomes } = this.options;
    const unsure = batch.filter(
      (item) => item.ticket.streamId !== null && !freshness.current(item.readAt),
    );
    if (unsure.length === 0) return batch;
    const present = await ledger.present(unsure.map((item) => item.ticket.streamId as string));
    const gone = new Set(unsure.filter((_, i) => !present[i]));
    outcomes.committedElsewhere([...gone]);
    return gone.size === 0 ? batch : batch.filter((item) => !gone.has(item));
  }

  /**
   * Up to `room` candidates and the byte cap, not held here, held here from now
   * on: read ahead, or now when nothing was.
   */
  private async fill(room: number, bytes: number): Promise<EventItem[]> {
    if (room <= 0 || !this.options.budget.singleFlight) return [];
    const ahead = this.ahead;
    this.ahead = undefined;
    const candidates = (ahead ? await ahead : undefined) ?? (await this.front(room));
    const { queue, maxBatchBytes } = this.options;
    const filled: EventItem[] = [];
    for (const [id, item] of candidates) {
      if (filled.length >= room) break;
      if (queue.isBusy(id)) continue;
      if (bytes + item.bytes > maxBatchBytes) break;
      if (!isEvent(item)) {
        queue.add(item);
        continue;
      }
      queue.hold(item);
      filled.push(item);
      bytes += item.bytes;
    }
    return filled;
  }

  /** The stream's oldest entries that are behind, not held here, as items (none when unreadable). */
  private async front(room: number): Promise<Map<string, Item>> {
    const { queue, ledger, latencyTargetMs, freshness } = this.options;
    const candidates = new Map<string, Item>();
    const readAt = freshness.stamp();
    // Read by reads of a few hundred KiB, past what is held here, until `room` are found.
    let after: string | undefined;
    for (let reads = 0; candidates.size < room && reads < MAX_FILL_READS; reads++) {
      let read: { entries: StreamEntry[]; last: boolean };
      try {
        read = await ledger.waited(
          2 * latencyTargetMs,
          room - candidates.size + queue.heldCount,
          after,
        );
      } catch {
        return candidates;
      }
      this.addCandidates(read.entries, room, readAt, candidates);
      if (read.last || read.entries.length === 0) break;
      after = read.entries.at(-1)?.id;
    }
    return candidates;
  }

  /** Entries not held here, converted, into `candidates` (up to `room`). */
  private addCandidates(
    entries: StreamEntry[],
    room: number,
    readAt: number,
    candidates: Map<string, Item>,
  ): void {
    const { queue } = this.options;
    for (const entry of entries) {
      if (candidates.size >= room) break;
      if (queue.isBusy(entry.id)) continue;
      const ticket: Ticket = { streamId: entry.id, intake: 'pull', deliveries: [], attempts: 0 };
      const item = {
        ticket,
        work: workOf(entry.id, entry.fields),
        bytes: entryBytes(entry.fields),
        readAt,
      };
      candidates.set(entry.id, item);
    }
  }
}
