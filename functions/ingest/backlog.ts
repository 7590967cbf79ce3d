/**
 * The backlog's 503s and a `Retry-After` that tells the truth: persist
 * measures how fast the stream drains (entries taken out per second, over the
 * last few seconds, every replica together:
 * redis/commands/includes/drain-rate.lua) and ingest's script reads it where
 * it refuses, so the answer says when the backlog will be back under the
 * limit at that rate, not a constant. A drain just started, or measured for
 * less than 3 s, has no rate yet (the fallback); 0 is a drain that took
 * nothing out for a whole window.
 */
import { HttpError } from '../shared/http.js';

/** The longest Retry-After given: a prediction further out is not worth a client's wait. */
export const MAX_RETRY_AFTER_SEC = 300;

/**
 * Seconds for `excess` entries to drain at `rate` entries/s, at least 1 and at
 * most MAX_RETRY_AFTER_SEC (a drain stalled for a whole window, rate 0: the
 * most); `fallback` when no rate is known (BACKLOG_RETRY_AFTER_SEC).
 */
export function drainSeconds(excess: number, rate: number | undefined, fallback: number): number {
  if (rate === undefined || !Number.isFinite(rate)) return fallback;
  if (rate <= 0) return MAX_RETRY_AFTER_SEC;
  return Math.min(MAX_RETRY_AFTER_SEC, Math.max(1, Math.ceil(excess / rate)));
}

const rateText = (rate: number | undefined) =>
  rate === undefined ? 'no drain rate is known yet' : `it drains at ${rate.toFixed(1)} events/s`;

/** The stream holds MAX_BACKLOG entries or more: retry once it is back under. */
export function backlogFull(
  backlog: number,
  rate: number | undefined,
  limits: { maxBacklog: number; backlogRetryAfterSec: number },
): HttpError {
  const seconds = drainSeconds(backlog - limits.maxBacklog + 1, rate, limits.backlogRetryAfterSec);
  return new HttpError(
    'backlog_full',
    `${backlog} events are waiting to be persisted (MAX_BACKLOG ${limits.maxBacklog}) and ${rateText(rate)}; retry later`,
    { 'retry-after': String(seconds) },
  );
}

/** The backlog would take longer than MAX_DRAIN_SEC to drain at the measured rate. */
export function drainTooLong(
  backlog: number,
  rate: number,
  limits: { maxDrainSec: number; backlogRetryAfterSec: number },
): HttpError {
  const seconds = drainSeconds(
    backlog - Math.floor(rate * limits.maxDrainSec),
    rate,
    limits.backlogRetryAfterSec,
  );
  return new HttpError(
    'backlog_full',
    `${backlog} events are waiting to be persisted and ${rateText(rate)}: more than MAX_DRAIN_SEC (${limits.maxDrainSec} s) of work; retry later`,
    { 'retry-after': String(seconds) },
  );
}
