/**
 * The TypeScript side of ingest-7n.lua (functions/shared/redis/commands): the
 * events accepted in one turn of the event loop go to Redis together, one
 * EVALSHA (one round trip, one command to build and write, one reply to read)
 * for all the requests that came in with them, instead of one each; each
 * event's reply is turned into its typed outcome.
 */
import { entryFields, type StreamEntry } from '../shared/entry.js';
import { DRAIN_RATE_WINDOW_SEC } from '../shared/receipts.js';
import { ingestKeys } from '../shared/redis/keys.js';
import type { IngestEvent, IngestLimits, Scripts } from '../shared/redis/scripts.js';

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

/** The most events one call carries, and about the most bytes of their fields. */
export const CALL_MAX_EVENTS = 256;
export const CALL_MAX_BYTES = 1 << 20;

interface Waiting {
  event: IngestEvent;
  /** The length of its fields' strings (their bytes, for ASCII). */
  size: number;
  resolve: (outcome: AcceptOutcome) => void;
  reject: (error: unknown) => void;
}

export class EventStore {
  private readonly callLimits: IngestLimits;
  /** Events waiting for the end of this turn of the event loop. */
  private waiting: Waiting[] = [];
  private scheduled = false;

  constructor(
    private readonly scripts: Scripts,
    private readonly limits: AcceptLimits,
  ) {
    this.callLimits = {
      idempotencyTtlMs: limits.idempotencyTtlMs,
      rateLimitPerSec: limits.rateLimitPerSec,
      rateWindowTtlMs: RATE_WINDOW_TTL_MS,
      maxBacklog: limits.maxBacklog,
      sequenceTtlMs: limits.sequenceTtlMs,
      countersTtlMs: limits.countersTtlMs,
      maxDrainSec: limits.maxDrainSec,
      drainRateWindowSec: DRAIN_RATE_WINDOW_SEC,
    };
  }

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
    const event: IngestEvent = {
      keys,
      hasIdempotencyKey: request.idempotencyKey !== undefined,
      id: entry.id,
      source: entry.source,
      fingerprint: caller.fingerprint,
      fixedSeq: request.seq ?? 0,
      fields,
    };
    let size = 0;
    for (const field of fields) size += field.length;
    return new Promise((resolve, reject) => {
      this.waiting.push({ event, size, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      // After this turn's I/O: every request read in it is in the call.
      setImmediate(() => this.send());
    });
  }

  /** Sends the waiting events, CALL_MAX_EVENTS or CALL_MAX_BYTES to a call. */
  private send(): void {
    this.scheduled = false;
    const waiting = this.waiting;
    this.waiting = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < waiting.length; i++) {
      const size = (waiting[i] as Waiting).size;
      if (i > start && (i - start === CALL_MAX_EVENTS || bytes + size > CALL_MAX_BYTES)) {
        void this.call(waiting.slice(start, i));
        start = i;
        bytes = 0;
      }
      bytes += size;
    }
    void this.call(waiting.slice(start));
  }

  /** One call; each event's reply settles its own request, and a failed call every one of them. */
  private async call(events: Waiting[]): Promise<void> {
    let replies: string[][];
    try {
      replies = await this.scripts.ingest(
        this.callLimits,
        events.map((w) => w.event),
      );
    } catch (error) {
      for (const w of events) w.reject(error);
      return;
    }
    for (const [i, w] of events.entries()) {
      try {
        w.resolve(outcomeOf(replies[i] as string[]));
      } catch (error) {
        w.reject(error);
      }
    }
  }
}

/** An event's reply of ingest-7n.lua as a typed outcome; a command that failed for it, thrown. */
function outcomeOf(reply: string[]): AcceptOutcome {
  const [kind, first, second, third, fourth] = reply;
  switch (kind) {
    case 'error':
      throw new Error(`Redis refused the event: ${first}`);
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
