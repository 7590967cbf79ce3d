/**
 * A fresh batch settled at its grant of the write budget, in one round trip to
 * Redis:
 *   - what of it is still in the stream: another replica's grant may have taken
 *     an entry from the stream's front while this batch waited, and only a
 *     commit takes an entry out, so one gone is committed (its deliveries are
 *     answered, not counted here);
 *   - what arrived while it waited (doorbells read from the stream);
 *   - then, up to the largest batch and MAX_BATCH_BYTES, the stream's oldest
 *     entries not held here that have waited longer than twice the latency
 *     target (DB_LATENCY_TARGET_MS), whoever got their deliveries.
 * So while a backlog waits, each grant writes as much as the database takes in
 * one command, whatever the source has in flight and however many replicas
 * share its deliveries. An entry younger than that is not behind: its delivery
 * brings it soon enough, and a steady flow the database keeps up with is
 * written as it is delivered, in writes no larger than the flow makes them
 * (larger ones only make a slow disk's writes slower).
 * Only events join (a dead letter goes to the queue, for a grant of its own).
 * When the stream cannot be read, the batch is written as it was taken.
 */
import type { StreamEntry, StreamLedger } from './ledger.js';
import type { PersistMetrics } from './metrics.js';
import type { Outcomes } from './outcomes.js';
import { type EventItem, type HeldQueue, type Item, isEvent, type Ticket } from './queue.js';
import { entryBytes, workOf } from './work.js';

export interface SettlerOptions {
  queue: HeldQueue;
  ledger: StreamLedger;
  outcomes: Outcomes;
  metrics: PersistMetrics;
  maxBatchBytes: number;
  /** DB_LATENCY_TARGET_MS: entries that have waited twice this long fill a grant's write. */
  latencyTargetMs: number;
}

const bytesOf = (items: readonly Item[]) => items.reduce((sum, item) => sum + item.bytes, 0);

export class Settler {
  constructor(private readonly options: SettlerOptions) {}

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
    const room = limit - taken.length - extra.length;
    let read: [boolean[], { ready: Item[]; absent: Item[] }, StreamEntry[]];
    try {
      read = await Promise.all([
        ledger.present(taken.flatMap((item) => item.ticket.streamId ?? [])),
        ledger.open(extra),
        room > 0 ? ledger.waited(2 * this.options.latencyTargetMs, room + queue.heldCount) : [],
      ]);
    } catch {
      queue.putBack(extra);
      return taken;
    }
    const [present, opened, oldest] = read;
    const kept: EventItem[] = [];
    const gone: EventItem[] = [];
    let i = 0;
    for (const item of taken)
      (item.ticket.streamId === null || present[i++] ? kept : gone).push(item);
    outcomes.committedElsewhere(gone);
    metrics.absentEntries.inc(opened.absent.length);
    outcomes.committed(opened.absent);
    queue.putBack(opened.ready.filter((item) => !isEvent(item)));
    const batch = [...kept, ...opened.ready.filter(isEvent)];
    const filled = this.fill(oldest, limit - batch.length, bytesOf(batch));
    joined(filled);
    return [...batch, ...filled];
  }

  /** Entries from the stream's front (those behind) not held here, held here from now on, up to `room` and the byte cap. */
  private fill(oldest: StreamEntry[], room: number, bytes: number): EventItem[] {
    const { queue, maxBatchBytes } = this.options;
    const filled: EventItem[] = [];
    for (const { id, fields } of oldest) {
      if (filled.length >= room) break;
      if (queue.isBusy(id)) continue;
      const size = entryBytes(fields);
      if (bytes + size > maxBatchBytes) break;
      const ticket: Ticket = { streamId: id, intake: 'pull', deliveries: [], attempts: 0 };
      const item: Item = { ticket, work: workOf(id, fields), bytes: size };
      if (!isEvent(item)) {
        queue.add(item);
        continue;
      }
      queue.hold(item);
      filled.push(item);
      bytes += size;
    }
    return filled;
  }
}
