/**
 * The TypeScript side of ingest-6.lua: builds its KEYS and ARGV, runs it (EVALSHA,
 * one round trip) and turns its reply into a typed outcome.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { entryFields, type StreamEntry } from '../shared/entry.js';

const SCRIPT = readFileSync(new URL('./ingest-6.lua', import.meta.url), 'utf8');
const RATE_WINDOW_TTL_MS = 2000;
/** Where the entry's `seq` value sits in its field list (the codec's fixed order). */
const SEQ_VALUE_INDEX =
  entryFields({ id: '', type: '', source: '', subject: '', time: '', seq: 0, data: '' }).indexOf(
    'seq',
  ) + 1;

export type AcceptOutcome =
  | { kind: 'ok'; id: string; seq: number; streamId: string }
  | { kind: 'dup'; id: string; seq: number }
  | { kind: 'disabled' }
  | { kind: 'rate'; limit: number }
  | { kind: 'full'; backlog: number };

export interface AcceptLimits {
  streamKey: string;
  idempotencyTtlMs: number;
  rateLimitPerSec: number;
  maxBacklog: number;
}

type ScriptReply = string[];
interface IngestCommands {
  spillwayIngest(...args: string[]): Promise<ScriptReply>;
}

export class EventStore {
  private readonly redis: Redis & IngestCommands;

  constructor(
    redis: Redis,
    private readonly limits: AcceptLimits,
  ) {
    redis.defineCommand('spillwayIngest', { numberOfKeys: 6, lua: SCRIPT });
    this.redis = redis as Redis & IngestCommands;
  }

  /** Loads the script so the first request already runs by hash. */
  async preload(): Promise<void> {
    await this.redis.script('LOAD', SCRIPT);
  }

  /**
   * Appends `entry` (its seq is assigned by the script) unless the idempotency
   * record, the source's settings, the rate limit or the backlog say otherwise.
   */
  async accept(
    entry: Omit<StreamEntry, 'seq'>,
    client: string,
    nowMs: number,
  ): Promise<AcceptOutcome> {
    const fields = entryFields({ ...entry, seq: 0 });
    const second = Math.floor(nowMs / 1000);
    const reply = await this.redis.spillwayIngest(
      `spillway:idem:${entry.key ?? ''}`,
      `spillway:rate:${client}:${second}`,
      this.limits.streamKey,
      `spillway:source:${entry.source}:settings`,
      `spillway:source:${entry.source}:stats`,
      `spillway:seq:${entry.subject}`,
      entry.key === undefined ? '0' : '1',
      String(this.limits.idempotencyTtlMs),
      String(this.limits.rateLimitPerSec),
      String(RATE_WINDOW_TTL_MS),
      String(this.limits.maxBacklog),
      entry.id,
      String(8 + SEQ_VALUE_INDEX),
      ...fields,
    );
    switch (reply[0]) {
      case 'ok':
        return {
          kind: 'ok',
          id: String(reply[1]),
          seq: Number(reply[2]),
          streamId: String(reply[3]),
        };
      case 'dup':
        return { kind: 'dup', id: String(reply[1]), seq: Number(reply[2]) };
      case 'disabled':
        return { kind: 'disabled' };
      case 'rate':
        return { kind: 'rate', limit: Number(reply[1]) };
      case 'full':
        return { kind: 'full', backlog: Number(reply[1]) };
      default:
        throw new Error(`ingest script gave an unknown reply ${JSON.stringify(reply)}`);
    }
  }
}
