/**
 * The items this process holds, one per stream entry: those waiting for a
 * write (fresh, in arrival order), those waiting to be tried again (retries,
 * each due at its time), and the entries given up for now (parked). Whatever
 * an item becomes (a doorbell, then the event its entry holds, then perhaps a
 * dead letter), its ticket stays: the entry's deliveries and its attempts.
 */
import type { Delivery } from './deliveries.js';
import type { DeadWork, Doorbell, EventWork, Work } from './work.js';

export type Intake = 'push' | 'pull';

/** One stream entry held here, through every form its item takes. */
export interface Ticket {
  /** The stream entry to forget once committed (null: a delivery that names none). */
  readonly streamId: string | null;
  readonly intake: Intake;
  /** The deliveries answered when it is committed (none for a pulled entry). */
  readonly deliveries: Delivery[];
  /** Write attempts that did not commit it. */
  attempts: number;
}

export interface Item<W extends Work = Work> {
  readonly ticket: Ticket;
  readonly work: W;
  /** Bytes it adds to a batch, roughly (MAX_BATCH_BYTES). */
  readonly bytes: number;
  /** When its entry was read, as freshness.ts stamps it (undefined: not read from the stream, or not known). */
  readonly readAt?: number;
}

export type EventItem = Item<EventWork>;
export type DeadItem = Item<DeadWork>;

export const isEvent = (item: Item): item is EventItem => item.work.kind === 'event';
export const isDead = (item: Item): item is DeadItem => item.work.kind === 'dead';
export const isDoorbell = (item: Item): item is Item<Doorbell> => item.work.kind === 'doorbell';

interface Retry {
  items: Item[];
  dueAt: number;
}

/** A group to write: a due retry, or a fresh batch (which may grow at its grant). */
export interface Next {
  items: Item[];
  fresh: boolean;
}

const now = () => performance.now();

export class HeldQueue {
  private fresh: Item[] = [];
  /** The first fresh item not taken yet: taking is O(1), the array is compacted now and then. */
  private head = 0;
  private retries: Retry[] = [];
  private readonly held = new Map<string, Ticket>();
  private readonly parked = new Map<string, number>();
  /** Called once when the next batch is taken (whenTaken). */
  private taken: Array<() => void> = [];

  constructor(private readonly maxBatchBytes: number) {}

  /** Items waiting for a write (fresh and retrying). */
  get size(): number {
    let retrying = 0;
    for (const retry of this.retries) retrying += retry.items.length;
    return this.fresh.length - this.head + retrying;
  }

  /** The ticket of an entry held here (queued, retrying or being written). */
  ticketOf(streamId: string): Ticket | undefined {
    return this.held.get(streamId);
  }

  /** Held here, or parked and not due again yet. */
  isBusy(streamId: string): boolean {
    if (this.held.has(streamId)) return true;
    const until = this.parked.get(streamId);
    if (until === undefined) return false;
    if (until > now()) return true;
    this.parked.delete(streamId);
    return false;
  }

  /** Queues a new item at the back and holds its entry (a parked entry is taken up again). */
  add(item: Item): void {
    this.hold(item);
    this.fresh.push(item);
  }

  /** Entries held here (queued, retrying or being written). */
  get heldCount(): number {
    return this.held.size;
  }

  /** Holds an item's entry without queuing it (it is being written now). */
  hold(item: Item): void {
    const id = item.ticket.streamId;
    if (id === null) return;
    this.held.set(id, item.ticket);
    this.parked.delete(id);
  }

  /** The entry is no longer held (committed or answered): a later delivery starts anew. */
  letGo(ticket: Ticket): void {
    if (ticket.streamId !== null && this.held.get(ticket.streamId) === ticket)
      this.held.delete(ticket.streamId);
  }

  /** A retry that is due, else a fresh batch of up to `limit` items. */
  next(limit: number): Next | undefined {
    const t = now();
    const due = this.retries.findIndex((retry) => retry.dueAt <= t);
    if (due !== -1) return { items: this.retries.splice(due, 1)[0]?.items ?? [], fresh: false };
    if (this.head >= this.fresh.length) return undefined;
    return { items: this.take(limit, 0), fresh: true };
  }

  /** Takes fresh items from the front, up to `count` and the byte cap (`bytes` already taken). */
  take(count: number, bytes: number): Item[] {
    const batch: Item[] = [];
    while (this.head < this.fresh.length && batch.length < count) {
      const item = this.fresh[this.head] as Item;
      if ((batch.length > 0 || bytes > 0) && bytes + item.bytes > this.maxBatchBytes) break;
      this.head++;
      batch.push(item);
      bytes += item.bytes;
    }
    if (this.head > 4096 && this.head * 2 > this.fresh.length) {
      this.fresh = this.fresh.slice(this.head);
      this.head = 0;
    }
    if (batch.length > 0) {
      const waiting = this.taken;
      this.taken = [];
      for (const taken of waiting) taken();
    }
    return batch;
  }

  /** Puts items taken but not written back at the front, in their order. */
  putBack(items: readonly Item[]): void {
    if (items.length > 0) this.fresh.splice(this.head, 0, ...items);
  }

  /** Tries these groups again at `dueAt` (0: before anything else). */
  retry(dueAt: number, ...groups: Item[][]): void {
    const retries = groups.filter((items) => items.length > 0).map((items) => ({ items, dueAt }));
    if (dueAt === 0) this.retries.unshift(...retries);
    else this.retries.push(...retries);
  }

  /** When the earliest retry is due (Infinity: none). */
  nextDueAt(): number {
    let dueAt = Number.POSITIVE_INFINITY;
    for (const retry of this.retries) dueAt = Math.min(dueAt, retry.dueAt);
    return dueAt;
  }

  /** Leaves these entries alone until `until` (the pull intake skips them); they are let go. */
  park(tickets: readonly Ticket[], until: number): void {
    // Entries persisted elsewhere meanwhile are never looked up again: forget expired ones.
    if (this.parked.size > 10_000)
      for (const [id, at] of this.parked) if (at <= now()) this.parked.delete(id);
    for (const ticket of tickets) {
      this.letGo(ticket);
      if (ticket.streamId !== null) this.parked.set(ticket.streamId, until);
    }
  }

  /** Everything waiting for a write, taken out (a stop that gives up). */
  drain(): Item[] {
    const left = [...this.fresh.slice(this.head), ...this.retries.flatMap((r) => r.items)];
    this.fresh = [];
    this.head = 0;
    this.retries = [];
    return left;
  }

  /** Resolves when the next batch is taken (room for more), or after `timeoutMs` at the latest. */
  whenTaken(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        // Gone from the list, so that waits while nothing is taken (a database down) do not pile up.
        this.taken = this.taken.filter((waiter) => waiter !== done);
        resolve();
      }, timeoutMs);
      this.taken.push(done);
    });
  }
}
