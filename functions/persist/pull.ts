/**
 * The pull intake: persist reads entries straight from the stream into the same
 * group commit and budget, one replica at a time (the holder of a Redis lease),
 * so that a backlog is written in stream order:
 *
 * - Catch-up: when the backlog beyond the group's last-delivered id passes
 *   CATCHUP_BACKLOG, entries past that id (leaving CATCHUP_SKIP_ENTRIES to the
 *   source) are read in big chunks: one XRANGE instead of one HTTP request per
 *   event. Each chunk is claimed past one shared cursor (catchup-claim-2.lua),
 *   so a replica that takes the lease over goes on where the last one stopped.
 * - Sweeper: entries that stayed longer than STALE_AFTER_MS (the stream id is
 *   the time it was added). The source acknowledges an entry after failed
 *   sends, and drops it; it stays in the stream because only persist deletes,
 *   so the sweeper persists it. It also persists what was added while no
 *   consumer group existed, and what a replica that died had claimed.
 * What it commits is deleted, and XREADGROUP skips deleted entries.
 *
 * Why one replica: the events' ids are time-ordered (UUIDv7), so the stream's
 * order is the `_id` index's, and the database takes writes in that order at
 * the least I/O. Replicas catching up side by side, each on chunks it claimed,
 * wrote the chunks out of order under the one budget: a catch-up of 40,000
 * events of 4 KiB at 100 IOPS cost 72 write I/Os per 1,000 documents and
 * drained at 1,484 docs/s with three replicas, against 60 and 1,763 to 1,834
 * with one; three of which one pulls drained it at 1,730 and 1,755 (63 and 64
 * I/Os). Reading is not what bounds a drain: one replica's reads keep the
 * budget's writes full.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { catchupCursorKey, pullLeaseKey } from '../shared/redis/keys.js';
import { type Entries, Scripts } from '../shared/redis/scripts.js';
import type { Committer } from './committer.js';
import type { PersistConfig } from './config.js';
import type { PersistMetrics } from './metrics.js';
import { entryBytes, workOf } from './work.js';

/** The next stream id after `id` (for exclusive ranges). */
function after(id: string): string {
  return `(${id}`;
}

export class PullIntake {
  private readonly owner = randomUUID();
  private readonly leaseKey: string;
  private readonly scripts: Scripts;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private leased = false;
  private failing = false;
  private nextSweep = 0;
  /** Where the sweeper goes on from (exclusive), so entries it cannot commit do not hold it. */
  private sweepFrom: string | undefined;
  /** The last round claimed a chunk: the next comes at once. */
  private catchingUp = false;
  /** The last round found the committer's queue full: the next waits for it to take a batch. */
  private full = false;

  constructor(
    private readonly redis: Redis,
    private readonly committer: Committer,
    private readonly config: PersistConfig,
    private readonly metrics: PersistMetrics,
    private readonly log: Logger,
  ) {
    this.leaseKey = pullLeaseKey(config.streamKey);
    this.scripts = new Scripts(redis);
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.round()
        .then(
          () => {
            if (this.failing) this.log.info('pull rounds work again');
            this.failing = false;
          },
          (error) => {
            // One line when it starts failing (e.g. Redis down), not one per round.
            if (!this.failing) this.log.warn({ err: error }, 'pull round failed; retrying');
            this.failing = true;
          },
        )
        .finally(() => {
          if (this.stopped) return;
          // A full queue has room again only when the committer takes a batch:
          // wait for that rather than asking Redis every 20 ms meanwhile.
          if (this.full) void this.committer.whenTaken(250).then(tick);
          else this.timer = setTimeout(tick, this.catchingUp ? 20 : 250);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.leased)
      await this.scripts.leaseRelease(this.leaseKey, this.owner).catch(() => undefined);
  }

  private async lease(): Promise<boolean> {
    const ttl = this.config.leaseTtlMs;
    if (this.leased) {
      this.leased = await this.scripts.leaseRenew(this.leaseKey, this.owner, ttl);
    } else {
      this.leased = await this.scripts.leaseTake(this.leaseKey, this.owner, ttl);
      if (this.leased) this.log.info({ owner: this.owner }, 'pull lease taken');
    }
    return this.leased;
  }

  /**
   * One round, holding the lease (renewed every round, also while the queue is
   * full), while there is room in the queue: first the sweeper's turn when it
   * is due, so that nothing stays in the stream much longer than STALE_AFTER_MS
   * whatever catch-up is doing; then catch-up with the room that is left.
   */
  async round(): Promise<void> {
    const backlog = await this.redis.xlen(this.config.streamKey);
    this.metrics.backlog.set(backlog);
    this.metrics.queued.set(this.committer.queued);
    if (!(await this.lease())) {
      this.full = false;
      this.catchingUp = false;
      return;
    }
    // Keep about one batch queued: more would only wait in memory.
    const batch = this.committer.batchLimit;
    this.full = this.committer.queued >= batch;
    if (this.full) return;
    let room = Math.min(this.config.pullChunkEntries, batch * 2 - this.committer.queued);
    if (Date.now() >= this.nextSweep) {
      const { found, more } = await this.sweep(room);
      // A full chunk means there is more: come back at once.
      this.nextSweep = more ? 0 : Date.now() + this.config.sweepIntervalMs;
      room -= found;
      if (room <= 0) return;
    }
    const beyond = await this.beyondCursor(backlog);
    // Without a group no source reads the stream (it makes its group at `$` when it
    // comes back): everything in it is left to the pull intake.
    if (beyond.count > (beyond.grouped ? this.config.catchupBacklog : 0)) {
      await this.catchUp(beyond.cursor, room, beyond.grouped);
      return;
    }
    this.catchingUp = false;
  }

  /**
   * The group's last-delivered id and the backlog past it (all of it when there
   * is no group). Redis 7 gives that backlog as the group's `lag`, but not once
   * entries past the cursor were deleted (catch-up deletes them): then it is
   * the stream's length less what the group has in flight (its pending
   * entries), which also counts the entries behind the cursor that the source
   * acknowledged without a commit. Those are the sweeper's, whose turn comes
   * first in every round; catch-up past the cursor finds what is really there.
   * Counting the entries past the cursor instead read them all into Redis's
   * memory every round: with 4 KiB events, 10,000 of them held Redis for 1 to
   * 2 s a time, and ingest's scripts timed out behind it.
   */
  private async beyondCursor(
    backlog: number,
  ): Promise<{ cursor: string; count: number; grouped: boolean }> {
    let groups: unknown[] = [];
    try {
      groups = (await this.redis.xinfo('GROUPS', this.config.streamKey)) as unknown[];
    } catch {
      return { cursor: '0-0', count: backlog, grouped: false };
    }
    for (const raw of groups) {
      const info = raw as unknown[];
      const get = (name: string) => info[info.indexOf(name) + 1];
      if (get('name') !== this.config.consumerGroup) continue;
      const cursor = String(get('last-delivered-id'));
      const lag = get('lag');
      const pending = Number(get('pending'));
      const count = typeof lag === 'number' ? lag : Math.max(0, backlog - (pending || 0));
      return { cursor, count, grouped: true };
    }
    return { cursor: '0-0', count: backlog, grouped: false };
  }

  /** Claims the next chunk past what any replica claimed, and queues it. */
  private async catchUp(cursor: string, room: number, grouped: boolean): Promise<void> {
    const { streamKey, catchupSkipEntries } = this.config;
    const readAt = this.committer.stamp();
    const entries = await this.scripts.catchupClaim(
      { stream: streamKey, cursor: catchupCursorKey(streamKey) },
      {
        groupCursor: cursor,
        leftToSource: grouped ? catchupSkipEntries : 0,
        most: this.committer.reads.count(room),
        cursorTtlMs: 60_000,
      },
    );
    this.committer.reads.observe(entries.map(([, fields]) => fields));
    this.catchingUp = entries.length > 0;
    this.queue(entries, readAt);
  }

  /** One chunk of what is stale: how many entries it found, and whether there may be more. */
  private async sweep(room: number): Promise<{ found: number; more: boolean }> {
    const end = String(Math.max(0, Date.now() - this.config.staleAfterMs));
    const readAt = this.committer.stamp();
    const count = this.committer.reads.count(room);
    const entries = (await this.redis.xrange(
      this.config.streamKey,
      this.sweepFrom === undefined ? '-' : after(this.sweepFrom),
      end,
      'COUNT',
      count,
    )) as Entries;
    this.committer.reads.observe(entries.map(([, fields]) => fields));
    // A full chunk: go on past it next time; else start from the oldest again.
    const more = entries.length >= count;
    this.sweepFrom = more ? (entries.at(-1) as [string, string[]])[0] : undefined;
    const queued = this.queue(entries, readAt);
    if (queued > 0) this.log.info({ entries: queued }, 'sweeper found entries left behind');
    return { found: entries.length, more };
  }

  /** Queues what a read stamped `readAt` (Committer.stamp(), taken before it began) found. */
  private queue(entries: Entries, readAt: number): number {
    let queued = 0;
    for (const [streamId, fields] of entries) {
      if (this.committer.isBusy(streamId)) continue;
      queued++;
      this.committer.enqueue(workOf(streamId, fields), streamId, entryBytes(fields), readAt);
    }
    return queued;
  }
}
