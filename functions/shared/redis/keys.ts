/**
 * Every Redis key Spillway uses, built in one place. The stream's name is
 * configurable (STREAM_KEY); everything else hangs off the `spillway:` prefix.
 */

/** Ingest's keys for one event (ingest-6.lua, in its KEYS order). */
export function ingestKeys(options: {
  stream: string;
  idempotencyKey: string | undefined;
  client: string;
  second: number;
  source: string;
  subject: string;
}): string[] {
  return [
    idempotencyKey(options.idempotencyKey ?? ''),
    rateWindowKey(options.client, options.second),
    options.stream,
    sourceSettingsKey(options.source),
    sourceStatsKey(options.source),
    sequenceKey(options.subject),
  ];
}

/** The first answer to an Idempotency-Key. */
export const idempotencyKey = (key: string) => `spillway:idem:${key}`;

/** A client's request count in one second (the rate limit); these expire by themselves. */
export const RATE_WINDOW_PREFIX = 'spillway:rate:';
const rateWindowKey = (client: string, second: number) =>
  `${RATE_WINDOW_PREFIX}${client}:${second}`;

/** A source's settings hash (`disabled`, `rateLimitPerSec`): set by operators. */
export const sourceSettingsKey = (source: string) => `spillway:source:${source}:settings`;

/** A source's counters (`accepted`). */
export const sourceStatsKey = (source: string) => `spillway:source:${source}:stats`;

/** The last sequence number given to a subject. */
export const sequenceKey = (subject: string) => `spillway:seq:${subject}`;

/** The pull intake's lease: one persist replica pulls from a stream at a time. */
export const pullLeaseKey = (stream: string) => `spillway:persist:lease:${stream}`;
