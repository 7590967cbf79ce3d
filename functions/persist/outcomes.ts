/**
 * What the committer does with an item once its fate is known: committed (its
 * deliveries answered 2xx, counted), not committed (retried with backoff, or
 * parked once it has had MAX_COMMIT_ATTEMPTS: its deliveries answered 503, its
 * entry left in the stream for the pull intake after PARK_MS), or given up at
 * a stop (answered 503, left in the stream).
 */
import type { Logger } from '../shared/logger.js';
import { answerCommitted, answerNotCommitted, DeadlineError } from './deliveries.js';
import type { PersistMetrics } from './metrics.js';
import type { Failure } from './plan.js';
import { type HeldQueue, type Item, isEvent } from './queue.js';

export interface OutcomeOptions {
  queue: HeldQueue;
  maxCommitAttempts: number;
  parkMs: number;
  metrics: PersistMetrics;
  log: Logger;
}

const now = () => performance.now();

export class Outcomes {
  /** A write failed since the last one that committed (one log line per failing period). */
  private failing = false;

  constructor(private readonly options: OutcomeOptions) {}

  /**
   * Items whose entries left the stream while they waited: committed by another
   * replica (which counted them). Their deliveries are answered 2xx.
   */
  committedElsewhere(items: readonly Item[]): void {
    for (const item of items) {
      this.options.queue.letGo(item.ticket);
      answerCommitted(item.ticket.deliveries);
    }
  }

  /** Answers the deliveries of committed items and records them. */
  committed(items: readonly Item[]): void {
    const t = Date.now();
    const { metrics, queue } = this.options;
    for (const item of items) {
      const { ticket } = item;
      queue.letGo(ticket);
      if (isEvent(item)) {
        metrics.persisted.inc({ intake: ticket.intake });
        if (ticket.streamId !== null) {
          const addedAt = Number(ticket.streamId.slice(0, ticket.streamId.indexOf('-')));
          metrics.lag.observe((t - addedAt) / 1000);
        }
      }
      answerCommitted(ticket.deliveries);
    }
  }

  /** A batch committed: the next failure is logged again. */
  recovered(): void {
    if (!this.failing) return;
    this.failing = false;
    this.options.log.info('writes commit again');
  }

  /** Not committed: retried with backoff (in halves when asked), or parked once it has had its attempts. */
  failed(failure: Failure<Item>): void {
    const { metrics, maxCommitAttempts, log, queue } = this.options;
    metrics.batchFailures.inc({ reason: failure.reason });
    const park: Item[] = [];
    const retry: Item[] = [];
    let attempts = 0;
    for (const item of failure.items) {
      item.ticket.attempts++;
      if (item.ticket.attempts >= maxCommitAttempts) park.push(item);
      else {
        retry.push(item);
        attempts = Math.max(attempts, item.ticket.attempts);
      }
    }
    if (!this.failing || park.length > 0) {
      this.failing = true;
      const counts = { docs: failure.items.length, retrying: retry.length, parking: park.length };
      log.warn({ ...counts, reason: failure.detail }, 'write not committed');
    }
    if (retry.length > 0) {
      const dueAt = now() + Math.min(100 * 2 ** attempts, 5000) * (0.75 + Math.random() / 2);
      const half = failure.halves && retry.length > 1 ? Math.ceil(retry.length / 2) : retry.length;
      queue.retry(dueAt, retry.slice(0, half), retry.slice(half));
    }
    if (park.length > 0) this.park(park, failure.detail);
  }

  /** A document explains the refusal: the halves are tried at once, no attempt counted. */
  split(halves: [Item[], Item[]]): void {
    this.options.metrics.batchFailures.inc({ reason: 'split' });
    this.options.queue.retry(0, ...halves);
  }

  /** Answers the items' deliveries with `error` (redeliver); their entries stay in the stream. */
  notCommitted(items: readonly Item[], error: Error): void {
    for (const item of items) {
      this.options.queue.letGo(item.ticket);
      answerNotCommitted(item.ticket.deliveries, error);
    }
  }

  private park(items: Item[], detail: string): void {
    const { queue, parkMs, maxCommitAttempts, metrics } = this.options;
    queue.park(
      items.map((item) => item.ticket),
      now() + parkMs,
    );
    this.notCommitted(
      items,
      new DeadlineError(
        `not committed after ${maxCommitAttempts} attempts (${detail}); it stays in the stream and is retried later`,
      ),
    );
    metrics.parked.inc(items.length);
  }
}
