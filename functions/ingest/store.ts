/**
 * The TypeScript side of ingest-7.lua (functions/shared/redis/commands): builds its
 * KEYS and ARGV, runs it (EVALSHA, one round trip) and turns its reply into a
 * typed outcome.
 */
import { entryFields, type StreamEntry } from '../shared/entry.js';
import { DRAIN_RATE_WINDOW_SEC } from '../shared/receipts.js';
import { ingestKeys } from '../shared/redis/keys.js';
import type { Scripts } from '../shared/redis/scripts.js';

const RATE_WINDOW_TTL_MS = 2000;

export type AcceptOutcome =
  | { kind: 'ok'; id: string; seq: number; streamId: string }
  /** streamId undefined: a record from before receipts. */
  | { kind: 'dup'; id: string; seq: number; source: string; streamId: string | undefined }
  | { kind: 'reused' }
  | { kind: 'disabled' }
  | { kind: 'rate'; limit: number }
  /** `full`: at MAX_BACKLOG; `drain`: over MAX_DRAIN_SEC. rate: the measured drain, entries/s. */
  | { kind: 'full' | 'drain'; backlog: number; rate: number | undefined }
  /** The stream does not exist: nothing was written (it must be made with its marker first). */
  | { kind: 'nostream' };

export interface AcceptLimits {
  streamKey: string;
  idempotencyTtlMs: number;
  rateLimitPerSec: number;
  maxBacklog: number;
  /** MAX_DRAIN_SEC: 0, none. */
  maxDrainSec: number;
  sequenceTtlMs: number;
  countersTtlMs: number;
}

/** Who sent the request, for its idempotency scope and its rate limit. */
export interface Caller {
  /** The rate-limit identity: the API key's digest, else the client's address. */
  client: string;
  /** The idempotency scope: the API key's digest, or "anon". */
  scope: string;
  /** The request's fingerprint: a reused Idempotency-Key must come with the same one. */
  fingerprint: string;
}

export class EventStore {
  constructor(
    private readonly scripts: Scripts,
    private readonly limits: AcceptLimits,
  ) {}

  /** Loads the scripts so the first request already runs by hash. */
  async preload(): Promise<void> {
    await this.scripts.preload();
  }

  /**
   * Appends `entry` (its seq is assigned by the script) unless the idempotency
   * record, the source's settings, the rate limit or the backlog say otherwise.
   */
  async accept(
    entry: Omit<StreamEntry, 'seq'>,
    caller: Caller,
    nowMs: number,
    request: {
      /** The request's Idempotency-Key (the entry's key, but for a replay). */
      idempotencyKey: string | undefined;
      /** A replayed entry's own seq, else undefined: the script assigns the next. */
      seq?: number;
    } = { idempotencyKey: entry.key },
  ): Promise<AcceptOutcome> {
    const fields = entryFields({ ...entry, seq: 0 });
    const keys = ingestKeys({
      stream: this.limits.streamKey,
      scope: caller.scope,
      idempotencyKey: request.idempotencyKey,
      client: caller.client,
      nowMs,
      source: entry.source,
      subject: entry.subject,
    });
    const reply = await this.scripts.ingest(keys, {
      hasIdempotencyKey: request.idempotencyKey !== undefined,
      idempotencyTtlMs: this.limits.idempotencyTtlMs,
      rateLimitPerSec: this.limits.rateLimitPerSec,
      rateWindowTtlMs: RATE_WINDOW_TTL_MS,
      maxBacklog: this.limits.maxBacklog,
      id: entry.id,
      source: entry.source,
      sequenceTtlMs: this.limits.sequenceTtlMs,
      countersTtlMs: this.limits.countersTtlMs,
      fingerprint: caller.fingerprint,
      fixedSeq: request.seq ?? 0,
      maxDrainSec: this.limits.maxDrainSec,
      drainRateWindowSec: DRAIN_RATE_WINDOW_SEC,
      fields,
    });
    return outcomeOf(reply);
  }
}

/** ingest-7.lua's reply as a typed outcome. */
function outcomeOf(reply: string[]): AcceptOutcome {
  const [kind, first, second, third, fourth] = reply;
  switch (kind) {
    case 'ok':
      return { kind, id: String(first), seq: Number(second), streamId: String(third) };
    case 'dup':
      return {
        kind,
        id: String(first),
        seq: Number(second),
        source: String(third),
        streamId: fourth ? fourth : undefined,
      };
    case 'reused':
    case 'disabled':
    case 'nostream':
      return { kind };
    case 'rate':
      return { kind: 'rate', limit: Number(first) };
    case 'full':
    case 'drain':
      return { kind, backlog: Number(first), rate: second ? Number(second) : undefined };
    default:
      throw new Error(`ingest script gave an unknown reply ${JSON.stringify(reply)}`);
  }
}
