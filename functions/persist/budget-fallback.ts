/**
 * Whether the write budget is shared now, or this process's own share while
 * Redis does not answer. A budget call that fails or does not answer within
 * redisTimeoutMs (connection down, command error, timeout) switches to the
 * local share, logged once; then one budget call a second (and one whenever the
 * client reconnects) probes Redis, and the first that answers in time brings
 * the shared budget back, logged once. While cut off, no write waits on Redis.
 */
import type { Redis } from 'ioredis';
import type { BudgetLease, BudgetLogger } from './budget-lease.js';
import type { BudgetMode } from './budget-options.js';

const PROBE_EVERY_MS = 1000;

export interface FallbackOptions {
  redis: Redis;
  lease: BudgetLease;
  key: string;
  /** This replica's share of the ceiling, for the log line. */
  localRate: number;
  log: BudgetLogger;
}

export class BudgetFallback {
  private current: BudgetMode = 'shared';
  private probeTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private closed = false;
  private readonly onReady = () => {
    if (this.current === 'local') void this.probe();
  };

  constructor(private readonly options: FallbackOptions) {
    options.redis.on('ready', this.onReady);
  }

  get mode(): BudgetMode {
    return this.current;
  }

  /** Stops probing for good (the budget is closing). */
  close(): void {
    this.closed = true;
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.options.redis.off('ready', this.onReady);
  }

  /** A budget call failed: this process writes at its own share until Redis answers again. */
  fallBack(error: unknown): void {
    if (this.current === 'local') return;
    this.current = 'local';
    const { key, localRate, log } = this.options;
    log.warn(
      { err: error, key, localRate },
      'write budget: Redis unreachable; writing at this replica’s share of the ceiling until it is back',
    );
    if (!this.closed) {
      this.probeTimer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
      this.probeTimer.unref();
    }
  }

  /** While cut off: one budget call that answers in time brings the shared budget back. */
  private async probe(): Promise<void> {
    if (this.probing || this.current === 'shared' || this.closed) return;
    this.probing = true;
    try {
      await this.options.lease.refresh();
      if (this.current === 'local') {
        this.current = 'shared';
        clearInterval(this.probeTimer);
        this.probeTimer = undefined;
        this.options.log.info(
          { key: this.options.key },
          'write budget: Redis is back; the budget is shared again',
        );
      }
    } catch {
      // Still cut off.
    } finally {
      this.probing = false;
    }
  }
}
