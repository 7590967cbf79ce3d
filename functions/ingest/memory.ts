/**
 * Redis's memory as ingest admits events: read every second (INFO memory, one
 * small command per process, never one per request), so that ingest refuses
 * new events at MAX_REDIS_MEMORY_PCT of `maxmemory`, before Redis itself
 * would. Redis refusing writes is a state the drain must never meet: what is
 * left between the limit and `maxmemory` is the drain's room (its leases,
 * cursors and budget), and the drain frees memory as it goes.
 */
import type { Redis } from 'ioredis';

const POLL_MS = 1000;

/** `used_memory` and `maxmemory` of an INFO memory reply (0: no limit). */
export function memoryOf(info: string): { used: number; max: number } {
  const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return { used: field('used_memory'), max: field('maxmemory') };
}

export class MemoryGauge {
  private used = 0;
  private max = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    /** Percent of maxmemory at which `full` is true; 0: never. */
    private readonly limitPct: number,
  ) {}

  start(): void {
    if (this.limitPct === 0 || this.timer) return;
    const poll = () => {
      this.redis.info('memory').then(
        (info) => Object.assign(this, memoryOf(info)),
        () => undefined, // Redis away: ingest's own requests say so
      );
    };
    poll();
    this.timer = setInterval(poll, POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Redis is at the admission limit (as of the last reading, at most a second old). */
  get full(): boolean {
    return this.limitPct > 0 && this.max > 0 && this.used * 100 >= this.max * this.limitPct;
  }

  /** The last reading, for the 503's message. */
  get reading(): { used: number; max: number } {
    return { used: this.used, max: this.max };
  }
}
