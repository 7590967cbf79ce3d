/**
 * The stream's measured drain rate, for ingest's `Retry-After` and
 * MAX_DRAIN_SEC (functions/ingest/backlog.ts): entries this replica took out
 * of the stream are added to the stream's drain rate in Redis
 * (drain-rate-report-1.lua) once a second, where every replica's land in the
 * same buckets. While it holds work that does not commit it reports 0, so a
 * drain stalled for a whole window reads 0; idle, it reports nothing, and a
 * drain rate nobody reports expires (a stopped persist claims no rate).
 * ("Drain" alone is persist's stop: what it holds committed before it exits.)
 */
import type { Logger } from '../shared/logger.js';
import { DRAIN_RATE_WINDOW_SEC } from '../shared/receipts.js';
import type { Scripts } from '../shared/redis/scripts.js';

const REPORT_MS = 1000;

export class DrainRate {
  private taken = 0;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  /** Work held now (waiting for a write, or being written); nothing before start. */
  private holding: () => boolean = () => false;
  /** The drain rate the last report read back, entries/s (undefined: not known). */
  rate: number | undefined;

  constructor(
    private readonly scripts: Scripts,
    private readonly key: string,
    private readonly log: Logger,
  ) {}

  /** Entries taken out of the stream. */
  add(entries: number): void {
    this.taken += entries;
  }

  /** Reports once a second; `holding`: whether work is held now (the committer's). */
  start(holding: () => boolean): void {
    this.holding = holding;
    this.timer ??= setInterval(() => void this.report(), REPORT_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One report, when there is anything to say. */
  async report(): Promise<void> {
    if (this.taken === 0 && !this.holding()) {
      this.rate = undefined;
      return;
    }
    const entries = this.taken;
    this.taken = 0;
    try {
      this.rate = await this.scripts.drainRateReport(this.key, entries, DRAIN_RATE_WINDOW_SEC);
      this.failing = false;
    } catch (error) {
      this.taken += entries;
      if (!this.failing) this.log.warn({ err: error }, 'could not report the drain rate');
      this.failing = true;
    }
  }
}
