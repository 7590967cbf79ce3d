/**
 * Every Redis key Spillway uses, built in one place. The stream's name is
 * configurable (STREAM_KEY); everything else hangs off the `spillway:` prefix.
 */

/** Ingest's keys for one event (ingest-6.lua, in its KEYS order). */
/** ingest-6.lua's keys, in its order. */
export type IngestKeys = readonly [string, string, string, string, string, string];

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
