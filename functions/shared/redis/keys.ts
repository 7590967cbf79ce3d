/**
 * Every Redis key Spillway uses, built in one place. The stream's name is
 * configurable (STREAM_KEY); everything else hangs off the `spillway:` prefix.
 */

/** ingest-7n.lua's keys for one event, in its KEYS order. */
export type IngestKeys = readonly [string, string, string, string, string, string, string];

export function ingestKeys(options: {
  stream: string;
  /** Whose key it is: the API key's digest, or "anon" (clients without an API key share one scope). */
  scope: string;
  idempotencyKey: string | undefined;
  client: string;
  nowMs: number;
  source: string;
  subject: string;
}): IngestKeys {
  return [
    idempotencyKey(options.scope, options.idempotencyKey ?? ''),
    rateWindowKey(options.client, Math.floor(options.nowMs / 1000)),
    options.stream,
    sourceSettingsKey(options.source),
    countersKey(options.nowMs),
    sequenceKey(options.source, options.subject),
    drainRateKey(options.stream),
  ];
}

/** The first answer to an Idempotency-Key, in the scope of the client that sent it. */
export const idempotencyKey = (scope: string, key: string) => `spillway:idem:${scope}:${key}`;

/** A client's request count in one second (the rate limit); these expire by themselves. */
export const RATE_WINDOW_PREFIX = 'spillway:rate:';
const rateWindowKey = (client: string, second: number) =>
  `${RATE_WINDOW_PREFIX}${client}:${second}`;

/** A source's settings hash (`disabled`, `rateLimitPerSec`): set by operators. */
export const sourceSettingsKey = (source: string) => `spillway:source:${source}:settings`;

/** One day's counters: a hash of source → events accepted that day (UTC). */
export const COUNTERS_PREFIX = 'spillway:stats:';
const DAY_MS = 86_400_000;
let countersDay = Number.NaN;
let countersOfDay = '';
/** The day's key, made once a day (JavaScript time has no leap seconds). */
export function countersKey(nowMs: number): string {
  const day = Math.floor(nowMs / DAY_MS);
  if (day !== countersDay) {
    countersDay = day;
    countersOfDay = `${COUNTERS_PREFIX}${new Date(nowMs).toISOString().slice(0, 10)}`;
  }
  return countersOfDay;
}

/**
 * The last sequence number given to a subject of a source (a CloudEvents subject
 * is relative to its source). The source's length comes first, so no pair of
 * (source, subject) shares a key with another.
 */
export const sequenceKey = (source: string, subject: string) =>
  `spillway:seq:${source.length}:${source}:${subject}`;

/** Where the replicas' catch-up has claimed the backlog up to (catchup-claim-2.lua). */
export const catchupCursorKey = (stream: string) => `spillway:persist:catchup:${stream}`;

/** The sweeper's lease: one persist replica sweeps a stream at a time. */
export const pullLeaseKey = (stream: string) => `spillway:persist:lease:${stream}`;

/** The shared write budget of one database (budget-*-1.lua): two databases never share one. */
export const writeBudgetKey = (database: string) => `spillway:budget:${database}`;

/**
 * What the status monitor knows of a stream besides the stream itself
 * (receipt-epoch-2.lua writes it, receipt-status-3.lua and dead-record-2.lua
 * read it): the Redis run it last saw, the gaps of stream ids a restore of an
 * older AOF lost, and the longest time a receipt answers (ingest's
 * IDEMPOTENCY_TTL_SEC). Ingest refreshes it while it appends; it expires twice
 * that time after the last refresh.
 */
export const receiptLedgerKey = (stream: string) => `spillway:receipts:${stream}`;

/**
 * The receipts' MAC key when RECEIPT_SECRET is not set: made once (SET NX) by
 * the first ingest that needs it, shared by every ingest on this Redis. The
 * one key Spillway writes that never expires: every receipt depends on it, so
 * deleting it turns every receipt given so far into a 404 (a rotation).
 */
export const RECEIPT_SECRET_KEY = 'spillway:receipt-secret';

/**
 * A dead letter's record for the status monitor: persist writes it before the
 * entry leaves the stream, and it expires with the receipts (dead-record-2.lua).
 */
export const deadRecordKey = (stream: string, streamId: string) =>
  `spillway:receipts:${stream}:dead:${streamId}`;

/** Where persist announces the entries each batch took out of the stream (PUBLISH). */
export const committedChannel = (stream: string) => `spillway:committed:${stream}`;

/**
 * The stream's measured drain: entries taken out of it per second of Redis's
 * clock, over the last few seconds, added to by every persist replica
 * (drain-report-1.lua); it expires when none reports.
 */
export const drainRateKey = (stream: string) => `spillway:drain:${stream}`;
