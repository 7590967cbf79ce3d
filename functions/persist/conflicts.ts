/**
 * Duplicates the database already held: a redelivery of the same entry, the
 * same event twice (same content), or another event under the same (source,
 * id), a conflict. The first stored stays (CloudEvents' rule); a conflict is
 * counted and kept in events_conflicts, and its entry is forgotten only once
 * that record is written. The stored events are read in one read command
 * (reads are not write commands of the budget); the record is one write
 * command under the budget.
 */
import type { Collection } from 'mongodb';
import type { ConflictDocument, EventDocument } from '../shared/document.js';
import type { Logger } from '../shared/logger.js';
import type { PersistMetrics } from './metrics.js';
import type { EventItem } from './queue.js';
import type { WriteBudget } from './spacer.js';
import { type InsertVerdict, insertVerdict, WRITE_CONCERN } from './verdict.js';
import { sameContent } from './work.js';

/** The checks not done now: these items are retried (their insert finds the duplicate again). */
export interface Unchecked {
  items: EventItem[];
  detail: string;
}

const key = (id: { source: string; id: string }) => `${id.source}\u0000${id.id}`;

export class ConflictCheck {
  constructor(
    private readonly events: Collection<EventDocument>,
    private readonly conflicts: Collection<ConflictDocument>,
    private readonly budget: WriteBudget,
    private readonly metrics: PersistMetrics,
    private readonly log: Logger,
  ) {}

  /** Records the conflicts among `duplicates`; returns what could not be checked now. */
  async check(duplicates: readonly EventItem[]): Promise<Unchecked | undefined> {
    if (duplicates.length === 0) return undefined;
    let found: Array<[EventItem, Partial<EventDocument>]>;
    try {
      found = await this.find(duplicates);
    } catch (error) {
      return { items: [...duplicates], detail: `duplicates not checked: ${String(error)}` };
    }
    if (found.length === 0) return undefined;
    const items = found.map(([item]) => item);
    const verdict = await this.record(found);
    if (verdict.kind !== 'committed')
      return { items, detail: `conflict not recorded: ${verdict.kind}` };
    this.metrics.conflicts.inc(items.length);
    this.log.warn(
      { conflicts: items.length, first: items[0]?.work.doc._id },
      'events with the (source, id) of a stored event and other content: the first stays, these are in events_conflicts',
    );
    return undefined;
  }

  /** The duplicates that are conflicts, each with the event stored first. */
  private async find(
    duplicates: readonly EventItem[],
  ): Promise<Array<[EventItem, Partial<EventDocument>]>> {
    const projection = { type: 1, subject: 1, time: 1, timeText: 1, data: 1, attributes: 1 };
    const stored = await this.events
      .find(
        { _id: { $in: duplicates.map((item) => item.work.doc._id) } },
        { projection: { ...projection, streamId: 1 }, promoteValues: false },
      )
      .toArray();
    const byId = new Map(stored.map((doc) => [key(doc._id), doc as Partial<EventDocument>]));
    const conflicts: Array<[EventItem, Partial<EventDocument>]> = [];
    for (const item of duplicates) {
      const first = byId.get(key(item.work.doc._id));
      // Gone meanwhile, the same entry again, or the same event: nothing to keep.
      if (!first || first.streamId === item.ticket.streamId || sameContent(first, item.work.doc))
        continue;
      conflicts.push([item, first]);
    }
    return conflicts;
  }

  private async record(found: Array<[EventItem, Partial<EventDocument>]>): Promise<InsertVerdict> {
    const records: ConflictDocument[] = found.map(([item, first]) => ({
      _id: item.ticket.streamId ?? `${item.work.doc._id.source} ${item.work.doc._id.id}`,
      event: item.work.doc._id,
      storedStreamId: String(first.streamId ?? ''),
      raw: JSON.stringify(item.work.fields),
      detectedAt: new Date(),
    }));
    this.metrics.writeCommands.inc({ collection: this.conflicts.collectionName });
    const outcome = (verdict: InsertVerdict) => ({
      answered: verdict.kind !== 'unavailable',
      docs: records.length,
    });
    return this.budget.run(async (): Promise<InsertVerdict> => {
      try {
        await this.conflicts.insertMany(records, { ordered: false, writeConcern: WRITE_CONCERN });
        return { kind: 'committed', duplicates: [] };
      } catch (error) {
        return insertVerdict(error, records.length);
      }
    }, outcome);
  }
}
