/**
 * The stream's measured drain, for ingest's `Retry-After` and MAX_DRAIN_SEC
 * (functions/ingest/backlog.ts): entries this replica took out of the stream
 * are added to the stream's drain in Redis (drain-report-1.lua) once a second,
 * where every replica's land in the same buckets. While it holds work that
 * does not commit it reports 0, so a stalled drain reads as one; idle, it
 * reports nothing, and a drain nobody reports expires (a stopped persist
 * claims no rate).
 */
import type { Logger } from '../shared/logger.js';
import { DRAIN_WINDOW_SEC } from '../shared/receipts.js';
import type { Scripts } from '../shared/redis/scripts.js';

const REPORT_MS = 1000;

export class DrainReport {
  private taken = 0;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  /** The drain rate the last report read back, entries/s (undefined: not known). */
  rate: number | undefined;

  constructor(
    private readonly scripts: Scripts,
    private readonly key: string,
    /** Work held now (waiting for a write, or being written). */
    private readonly holding: () => boolean,
    private readonly log: Logger,
  ) {}

  /** Entries taken out of the stream. */
  add(entries: number): void {
    this.taken += entries;
  }

  start(): void {
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
      this.rate = await this.scripts.drainReport(this.key, entries, DRAIN_WINDOW_SEC);
      this.failing = false;
    } catch (error) {
      this.taken += entries;
      if (!this.failing) this.log.warn({ err: error }, 'could not report the drain rate');
      this.failing = true;
    }
  }
}
