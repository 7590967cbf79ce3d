/**
 * Requests waiting for their event's commit (`Prefer: wait`, RFC 7240).
 *
 * Persist announces what each batch took out of the stream: one PUBLISH per
 * batch on the stream's channel (functions/shared/receipts.ts). This process
 * holds one subscriber connection, subscribed to that channel only while
 * requests wait (and LINGER_MS after the last), and wakes the waiters of the
 * ids announced; a woken waiter asks the status monitor, which is the truth:
 * an announcement only wakes. So a lost one (the subscriber reconnecting, a
 * persist that died between its delete and its PUBLISH) only delays an answer
 * to its deadline, where the monitor is asked once more. A waiter is
 * registered, and the subscription confirmed by Redis, before its first
 * question to the monitor, so a batch announced after that question is
 * delivered and one announced before it is in its answer.
 *
 * Bounded: at most MAX_WAITERS at once in this process; beyond that a request
 * is answered at once, as if it had not asked. A request that does not ask
 * costs nothing: no waiter, and while nobody waits, no announcement reaches
 * this process at all.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { parseAnnouncement } from '../shared/receipts.js';
import { watchConnection } from '../shared/redis/client.js';
import { committedChannel } from '../shared/redis/keys.js';
import { within } from '../shared/time.js';

/** How long the subscription outlives the last waiter (waits that come and go keep one). */
const LINGER_MS = 5000;
/** The longest a waiter waits for Redis to confirm the subscription (else it relies on its deadline). */
const SUBSCRIBE_WAIT_MS = 1000;

/** How a wait ended: the monitor said it is settled, its time ran out, or ingest is stopping. */
export type WaitEnd = 'settled' | 'timeout' | 'shutdown' | 'gone';

export interface WaitResult<S> {
  status: S;
  end: WaitEnd;
  /** When the batch that took the entry out of the stream stored its events (when announced). */
  persistedAt?: number;
}

type Why = 'woken' | 'deadline' | 'shutdown' | 'gone';

class Waiter {
  persistedAt: number | undefined;
  ended: 'shutdown' | 'gone' | undefined;
  private woken = false;
  private resolve: ((why: Why) => void) | undefined;

  constructor(readonly streamId: string) {}

  wake(why: Why = 'woken'): void {
    if (why === 'shutdown' || why === 'gone') this.ended = why;
    else this.woken = true;
    this.resolve?.(why);
  }

  /** Resolves when woken, ended, or after `ms`. */
  next(ms: number): Promise<Why> {
    if (this.ended) return Promise.resolve(this.ended);
    if (this.woken) {
      this.woken = false;
      return Promise.resolve('woken');
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle('deadline'), Math.max(0, ms));
      const settle = (why: Why) => {
        clearTimeout(timer);
        this.resolve = undefined;
        this.woken = false;
        resolve(why);
      };
      this.resolve = settle;
    });
  }
}

export interface WaitersOptions {
  streamKey: string;
  maxWaiters: number;
  log: Logger;
}

export class Waiters {
  private readonly byId = new Map<string, Set<Waiter>>();
  private count = 0;
  private stopping = false;
  private subscriber: Redis | undefined;
  /** The subscription to the announcements: true once Redis confirmed it (undefined: none). */
  private subscription: Promise<boolean> | undefined;
  private linger: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly options: WaitersOptions,
  ) {}

  /** Requests waiting now. */
  get size(): number {
    return this.count;
  }

  /** Opens the subscriber connection (subscribed while requests wait; again after every reconnect). */
  start(): void {
    if (this.subscriber || this.options.maxWaiters === 0) return;
    const channel = committedChannel(this.options.streamKey);
    const subscriber = this.redis.duplicate({
      enableOfflineQueue: true,
      enableAutoPipelining: false,
      commandTimeout: undefined,
      maxRetriesPerRequest: null,
    });
    watchConnection(subscriber, this.options.log, 'redis (announcements)');
    subscriber.on('message', (from: string, text: string) => {
      if (from === channel && this.count > 0) this.announced(text);
    });
    this.subscriber = subscriber;
  }

  /**
   * Waits, for at most `ms`, until `check` (the monitor; it must not throw)
   * says the entry is settled; undefined when no waiter may be added (the
   * limit, or a stop), and nothing was asked. `signal`: the client is gone.
   */
  async wait<S>(
    streamId: string,
    ms: number,
    check: () => Promise<S>,
    settled: (status: S) => boolean,
    signal?: AbortSignal,
  ): Promise<WaitResult<S> | undefined> {
    if (this.stopping || this.count >= this.options.maxWaiters) return undefined;
    const deadline = performance.now() + ms;
    const waiter = this.add(streamId);
    const gone = () => waiter.wake('gone');
    signal?.addEventListener('abort', gone, { once: true });
    try {
      await this.subscribed();
      let status = await check();
      let why: Why = 'woken';
      while (!settled(status) && why === 'woken') {
        why = await waiter.next(deadline - performance.now());
        if (why !== 'gone') status = await check();
      }
      let end: WaitEnd = 'settled';
      if (!settled(status)) end = why === 'deadline' || why === 'woken' ? 'timeout' : why;
      return { status, end, persistedAt: waiter.persistedAt };
    } finally {
      signal?.removeEventListener('abort', gone);
      this.remove(waiter);
    }
  }

  /** Wakes every waiter for its last question (ingest is stopping); no new one is added. */
  drain(): void {
    this.stopping = true;
    for (const set of this.byId.values()) for (const waiter of set) waiter.wake('shutdown');
  }

  async stop(): Promise<void> {
    this.drain();
    clearTimeout(this.linger);
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (!subscriber) return;
    // Its commands queue while Redis is away: a stop never waits on them.
    if (subscriber.status === 'ready') await within(subscriber.quit(), 1000).catch(() => false);
    subscriber.disconnect();
  }

  /**
   * Resolves once Redis confirmed the subscription (at once when it stands),
   * or after SUBSCRIBE_WAIT_MS: a waiter never waits on Redis for it.
   */
  private async subscribed(): Promise<void> {
    clearTimeout(this.linger);
    this.linger = undefined;
    const subscriber = this.subscriber;
    if (!subscriber) return;
    if (!this.subscription) {
      const subscription: Promise<boolean> = subscriber
        .subscribe(committedChannel(this.options.streamKey))
        .then(
          () => true,
          (error: unknown) => {
            if (this.subscription === subscription) this.subscription = undefined;
            this.options.log.warn({ err: error }, 'could not subscribe to announcements');
            return false;
          },
        );
      this.subscription = subscription;
    }
    await within(this.subscription, SUBSCRIBE_WAIT_MS).catch(() => false);
  }

  /** Nobody waits: the subscription ends after LINGER_MS unless a waiter comes. */
  private idle(): void {
    clearTimeout(this.linger);
    this.linger = setTimeout(() => {
      this.linger = undefined;
      if (this.count > 0 || !this.subscription) return;
      this.subscription = undefined;
      this.subscriber
        ?.unsubscribe(committedChannel(this.options.streamKey))
        .catch((error: unknown) =>
          this.options.log.debug({ err: error }, 'could not unsubscribe from announcements'),
        );
    }, LINGER_MS);
    this.linger.unref();
  }

  private announced(text: string): void {
    const announcement = parseAnnouncement(text);
    if (!announcement) return;
    for (const id of announcement.ids) {
      const set = this.byId.get(id);
      if (!set) continue;
      for (const waiter of set) {
        waiter.persistedAt = announcement.persistedAt;
        waiter.wake();
      }
    }
  }

  private add(streamId: string): Waiter {
    const waiter = new Waiter(streamId);
    const set = this.byId.get(streamId) ?? new Set<Waiter>();
    set.add(waiter);
    this.byId.set(streamId, set);
    this.count++;
    return waiter;
  }

  private remove(waiter: Waiter): void {
    const set = this.byId.get(waiter.streamId);
    if (!set?.delete(waiter)) return;
    this.count--;
    if (set.size === 0) this.byId.delete(waiter.streamId);
    if (this.count === 0 && !this.stopping) this.idle();
  }
}
