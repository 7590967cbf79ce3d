/**
 * The committer's writes: one insertMany per grant of the write budget, of the
 * events or of the dead letters, read by positive evidence (verdict.ts) and
 * turned into what becomes of each item (plan.ts, outcomes.ts).
 */
import type { Collection } from 'mongodb';
import type { ConflictDocument, DeadDocument, EventDocument } from '../shared/document.js';
import type { Logger } from '../shared/logger.js';
import { within } from '../shared/time.js';
import { BatchLimit } from './batch-limit.js';
import {
  type CommandLimits,
  cachedBsonSize,
  DRIVER_DEFAULT_LIMITS,
  oneCommand,
} from './command-size.js';
import { ConflictCheck } from './conflicts.js';
import type { PersistMetrics } from './metrics.js';
import type { Outcomes } from './outcomes.js';
import { type Plan, plan, suspect } from './plan.js';
import type { DeadItem, EventItem, HeldQueue, Item } from './queue.js';
import type { WriteBudget } from './spacer.js';
import { type InsertVerdict, insertVerdict, WRITE_CONCERN } from './verdict.js';
import { type DeadWork, deadDocument, type EventWork } from './work.js';

const INSERT_OPTIONS = { ordered: false, writeConcern: WRITE_CONCERN, forceServerObjectId: false };

export interface WriterOptions {
  events: Collection<EventDocument>;
  dead: Collection<DeadDocument>;
  conflicts: Collection<ConflictDocument>;
  budget: WriteBudget;
  /** Where what a grant does not take goes back (the front), and retries go. */
  queue: HeldQueue;
  outcomes: Outcomes;
  maxBatchDocs: number;
  /** Writes slower than this (DB_LATENCY_TARGET_MS) cut the largest batch (batch-limit.ts). */
  latencyTargetMs: number;
  /** Asks the database whether it answers at all (a ping). */
  ping(): Promise<unknown>;
  /**
   * Deletes the entries of a write the database committed whole, before its
   * grant is released: the next grant, whichever replica takes it, finds the
   * stream without them (settle.ts reads the stream's front at a grant).
   */
  forgetCommitted?: (items: Item[]) => Promise<void>;
  /** Called as an event write's command is sent: what can be done for the next one meanwhile. */
  whileSending?: () => void;
  metrics: PersistMetrics;
  log: Logger;
}

/**
 * A group's batch as settled at its grant: what of the items taken is still
 * to be written, and what joins them (a fresh batch: what arrived while it
 * waited, and the stream's oldest entries).
 */
export type Settle = (taken: EventItem[]) => Promise<EventItem[]>;
export const asTaken: Settle = async (taken) => taken;

/** The events' write: committed, refused for their content (as dead letters), or rescheduled. */
export interface EventsWritten {
  committed: EventItem[];
  dead: DeadItem[];
  /** The database did not answer. */
  unavailable: boolean;
}

/** Where one kind of document is written. */
interface Target<D> {
  name: string;
  insert(docs: D[]): Promise<unknown>;
}

const answered = (verdict: InsertVerdict) => verdict.kind !== 'unavailable';

/** One insert command's verdict, with its own latency and size (what the budget adapts to). */
interface Sent {
  verdict: InsertVerdict;
  latencyMs: number;
  docs: number;
}

/** A grant whose batch was all committed elsewhere meanwhile: no command, nothing to adapt to. */
const NOTHING_SENT: Sent = {
  verdict: { kind: 'committed', duplicates: [] },
  latencyMs: 0,
  docs: 0,
};
const outcomeOf = (sent: Sent) => ({
  answered: answered(sent.verdict),
  latencyMs: sent.latencyMs,
  docs: sent.docs,
});

export class BatchWriter {
  /** What one insert command holds (the server's hello; the driver's defaults until then). */
  private commandLimits: CommandLimits = DRIVER_DEFAULT_LIMITS;
  /** This process's own largest batch, while the budget keeps none for every replica. */
  private readonly ownLimit: BatchLimit;
  private readonly events: Target<EventDocument>;
  private readonly dead: Target<DeadDocument>;
  private readonly conflicts: ConflictCheck;
  private abandoned = false;

  constructor(private readonly options: WriterOptions) {
    const { events, dead, budget, metrics, log } = options;
    this.ownLimit = new BatchLimit(options.maxBatchDocs, options.latencyTargetMs);
    this.events = {
      name: events.collectionName,
      insert: (docs) => events.insertMany(docs, INSERT_OPTIONS),
    };
    this.dead = {
      name: dead.collectionName,
      insert: (docs) => dead.insertMany(docs, INSERT_OPTIONS),
    };
    this.conflicts = new ConflictCheck(events, options.conflicts, budget, metrics, log);
  }

  /** The largest batch now: the budget's, else this process's own. */
  get batchLimit(): number {
    return this.options.budget.batchLimit ?? this.ownLimit.docs;
  }

  /** The server's limits of one write command (its hello), so that one grant is one command. */
  setCommandLimits(limits: CommandLimits): void {
    this.commandLimits = limits;
  }

  /** A stop gave up: what a write under way answers is not acted on (everything is answered). */
  abandon(): void {
    this.abandoned = true;
  }

  async writeEvents(group: EventItem[], settle: Settle): Promise<EventsWritten> {
    const form = async (taken: EventItem[]) => {
      const items = await settle(taken);
      const persistedAt = new Date();
      for (const item of items) item.work.doc.persistedAt = persistedAt;
      return items;
    };
    const written = await this.insert(this.events, group, form, this.options.whileSending);
    if (!written) return { committed: [], dead: [], unavailable: true };
    const planned = await this.judge(written.verdict, written.items);
    const unchecked = await this.conflicts.check(planned.duplicates);
    if (unchecked) {
      const { items, detail } = unchecked;
      this.options.outcomes.failed({ items, reason: 'unavailable', detail, halves: false });
    }
    return {
      committed: planned.committed.filter((item) => !unchecked?.items.includes(item)),
      dead: planned.dead.map(({ item, reason }) => deadItemOf(item, reason)),
      unavailable: planned.unavailable,
    };
  }

  /** The dead letters' write: the committed; a dead letter is text, so a refusal is retried. */
  async writeDead(group: DeadItem[]): Promise<DeadItem[]> {
    const written = await this.insert(this.dead, group, async (taken) => taken);
    if (!written) return [];
    const planned = await this.judge(written.verdict, written.items);
    this.options.metrics.deadLetters.inc(planned.committed.length);
    if (planned.dead.length > 0) {
      const items = planned.dead.map(({ item }) => item);
      const detail = `dead letter refused: ${planned.dead[0]?.reason}`;
      this.options.outcomes.failed({ items, reason: 'refused', detail, halves: false });
    }
    return planned.committed;
  }

  /**
   * One insertMany under one grant of the budget. At the grant the group is cut
   * to the largest batch as it is then (another replica's slow write may have
   * cut it since the group was formed), `form` settles it, and it is cut to
   * what one command holds; what is cut goes back to the front of the queue with
   * no attempt counted. Undefined when a stop gave up meanwhile.
   */
  private async insert<W extends EventWork | DeadWork>(
    target: Target<W['doc']>,
    group: Item<W>[],
    form: (taken: Item<W>[]) => Promise<Item<W>[]>,
    whileSending?: () => void,
  ): Promise<{ items: Item<W>[]; verdict: InsertVerdict } | undefined> {
    const { metrics, budget, queue } = this.options;
    let items: Item<W>[] = [];
    const sent = await budget.run(async (): Promise<Sent> => {
      const granted = performance.now();
      const limit = this.batchLimit;
      queue.putBack(group.slice(limit));
      const taken = group.slice(0, limit);
      const formed = this.abandoned ? taken : await form(taken);
      const sizes = formed.map((item) => cachedBsonSize(item.work.doc));
      const fit = oneCommand(sizes, this.commandLimits);
      queue.putBack(formed.slice(fit));
      items = formed.slice(0, fit);
      // Everything was committed elsewhere meanwhile: no command (an unused grant).
      if (items.length === 0) return NOTHING_SENT;
      metrics.formSeconds.observe((performance.now() - granted) / 1000);
      metrics.writeCommands.inc({ collection: target.name });
      const sending = this.send(target, items);
      whileSending?.();
      const sent = await sending;
      const { verdict } = sent;
      // What the database took is deleted now; duplicates wait for their conflict check.
      if (verdict.kind === 'committed' && !this.abandoned) {
        const duplicates = new Set(verdict.duplicates);
        await this.options.forgetCommitted?.(items.filter((_, i) => !duplicates.has(i)));
      }
      return sent;
    }, outcomeOf);
    return this.abandoned ? undefined : { items, verdict: sent.verdict };
  }

  /** The insert command itself, timed for the batch limit. */
  private async send<W extends EventWork | DeadWork>(
    target: Target<W['doc']>,
    items: Item<W>[],
  ): Promise<Sent> {
    const started = performance.now();
    let verdict: InsertVerdict;
    try {
      await target.insert(items.map((item) => item.work.doc));
      verdict = { kind: 'committed', duplicates: [] };
    } catch (error) {
      verdict = insertVerdict(error, items.length);
    }
    const sent = { verdict, latencyMs: performance.now() - started, docs: items.length };
    this.ownLimit.observe({ latencyMs: sent.latencyMs, ok: answered(verdict), docs: sent.docs });
    return sent;
  }

  /** The plan for a verdict, with its retries and splits scheduled. */
  private async judge<T extends Item>(verdict: InsertVerdict, items: T[]): Promise<Plan<T>> {
    const serverAnswers = suspect(verdict, items) && (await this.answers());
    const planned = plan(verdict, items, serverAnswers);
    this.options.metrics.duplicates.inc(planned.duplicates.length);
    if (planned.split) this.options.outcomes.split(planned.split);
    if (planned.failure) this.options.outcomes.failed(planned.failure);
    return planned;
  }

  /** The server answers a ping within a second (a read; it takes no token). */
  private answers(): Promise<boolean> {
    return within(this.options.ping(), 1000).catch(() => false);
  }
}

/** An event the database refused for its content, as the dead letter that keeps it. */
function deadItemOf(item: EventItem, reason: string): DeadItem {
  const doc = deadDocument(
    `the database refused the document: ${reason}`,
    item.ticket.streamId,
    JSON.stringify(item.work.fields),
  );
  return {
    ticket: item.ticket,
    work: { kind: 'dead', doc },
    bytes: item.bytes,
    readAt: item.readAt,
  };
}
