/**
 * One write attempt for a group the write loop took (committer.ts): the
 * entries still in the stream are opened (ledger.ts), the events written
 * under one grant (writes.ts), then the dead letters under another; what the
 * database took is forgotten in the stream and only then are its deliveries
 * answered (outcomes.ts). Entries already gone from the stream were
 * committed before: they are answered without a write.
 */
import { deadRecordText } from '../shared/receipts.js';
import type { Freshness } from './freshness.js';
import type { Forget, StreamLedger } from './ledger.js';
import type { PersistMetrics } from './metrics.js';
import type { Outcomes } from './outcomes.js';
import { type Item, isDead, isEvent } from './queue.js';
import type { BatchWriter, Settle } from './writes.js';

/** What an attempt works with: the write loop's parts. */
export interface AttemptParts {
  ledger: StreamLedger;
  writer: BatchWriter;
  outcomes: Outcomes;
  freshness: Freshness;
  metrics: PersistMetrics;
  /** The largest batch now (recorded with each batch). */
  batchLimit: () => number;
}

const now = () => performance.now();

/** Writes `group`; resolves with how many items were committed. */
export async function attempt(parts: AttemptParts, group: Item[], settle: Settle): Promise<number> {
  const { ledger, writer, outcomes, freshness, metrics } = parts;
  const started = now();
  const { ready, absent } = await ledger.open(group, freshness.stamp());
  metrics.absentEntries.inc(absent.length);
  const committed: Item[] = [];
  let dead = ready.filter(isDead);
  const events = ready.filter(isEvent);
  if (events.length > 0) {
    const written = await writer.writeEvents(events, settle);
    committed.push(...written.committed);
    // The database is not answering: the dead letters would not get through either.
    if (!written.unavailable) dead = [...dead, ...written.dead];
    else if (dead.length > 0) {
      const detail = 'the database is unavailable';
      outcomes.failed({ items: dead, reason: 'unavailable', detail, halves: false });
      dead = [];
    }
  }
  if (dead.length > 0) committed.push(...(await writer.writeDead(dead)));
  outcomes.committed(absent);
  if (committed.length > 0) await finish(parts, committed, started);
  return committed.length;
}

/** Forgets the committed entries, answers their deliveries, records the batch. */
async function finish(parts: AttemptParts, committed: Item[], started: number): Promise<void> {
  const { ledger, outcomes, metrics } = parts;
  await ledger.forget(forgets(committed), persistedAtOf(committed));
  outcomes.committed(committed);
  metrics.batchDocs.observe(committed.length);
  metrics.batchLimit.set(parts.batchLimit());
  metrics.commitSeconds.observe((now() - started) / 1000);
  outcomes.recovered();
}

/** What the ledger forgets of committed items: their entries, a dead letter's with its record. */
export function forgets(items: readonly Item[]): Forget[] {
  return items.flatMap((item): Forget[] => {
    const id = item.ticket.streamId;
    if (id === null) return [];
    if (!isDead(item)) return [{ id }];
    const { reason, deadAt } = item.work.doc;
    return [{ id, deadRecord: deadRecordText(reason, deadAt) }];
  });
}

/** When the events among these items were stored (one write's share one time). */
export function persistedAtOf(items: readonly Item[]): Date | undefined {
  for (const item of items) if (isEvent(item)) return item.work.doc.persistedAt;
  return undefined;
}
