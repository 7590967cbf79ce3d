/**
 * What ingest and persist agree on for receipts (docs/architecture.md,
 * "Receipts"): the name of the stream's marker, the dead record persist
 * leaves for the status monitor, the announcement of what a batch took out of
 * the stream (one PUBLISH per batch), and the window of the measured drain
 * rate.
 */

/**
 * The stream's marker is a consumer group named this plus a random name
 * (redis/commands/includes/receipts.lua says why a group).
 */
export const RECEIPT_MARKER_PREFIX = 'spillway-receipts:';

/** Seconds of the drain rate persist measures and ingest reads (redis/commands/includes/drain-rate.lua). */
export const DRAIN_RATE_WINDOW_SEC = 10;

/** The longest reason a dead record keeps (the dead letter in MongoDB keeps all of it). */
const MAX_REASON_CHARS = 500;

/** A dead letter as the status monitor tells it. */
export interface DeadRecord {
  reason: string;
  /** ISO 8601. */
  deadAt: string;
}

export function deadRecordText(reason: string, deadAt: Date): string {
  const short = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
  return JSON.stringify({ reason: short, deadAt: deadAt.toISOString() });
}

export function parseDeadRecord(text: string): DeadRecord {
  const parsed = JSON.parse(text) as Partial<DeadRecord>;
  return { reason: String(parsed.reason ?? ''), deadAt: String(parsed.deadAt ?? '') };
}

/** What one batch took out of the stream, and when its events were stored (when known). */
export interface Announcement {
  ids: string[];
  persistedAt?: number;
}

const ID = /^(\d+)-(\d+)$/;

/** [ms, seq] of a stream id; undefined for anything else. */
export function splitStreamId(id: string): [number, bigint] | undefined {
  const match = ID.exec(id);
  if (!match) return undefined;
  const ms = Number(match[1]);
  return Number.isSafeInteger(ms) ? [ms, BigInt(match[2] as string)] : undefined;
}

/**
 * The announcement as text: `<persistedAt ms or nothing> <ids>`, the ids
 * sorted, each written as its millisecond's distance from the previous one and
 * its sequence, base 36 (`1ln8x3k2o-0,2-0,1-1`): four or five characters an id
 * at a steady flow, where the ids themselves take fifteen.
 */
export function announcementText(announcement: Announcement): string {
  const ids = announcement.ids
    .map(splitStreamId)
    .filter((id): id is [number, bigint] => id !== undefined)
    .sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  let previous = 0;
  const parts = ids.map(([ms, seq]) => {
    const part = `${(ms - previous).toString(36)}-${seq.toString(36)}`;
    previous = ms;
    return part;
  });
  return `${announcement.persistedAt ?? ''} ${parts.join(',')}`;
}

/** The announcement a text gives; undefined for a text that is not one. */
export function parseAnnouncement(text: string): Announcement | undefined {
  const space = text.indexOf(' ');
  if (space < 0) return undefined;
  const head = text.slice(0, space);
  const persistedAt = head === '' ? undefined : Number(head);
  if (persistedAt !== undefined && !Number.isSafeInteger(persistedAt)) return undefined;
  const ids: string[] = [];
  let ms = 0;
  for (const part of text.slice(space + 1).split(',')) {
    if (part === '') continue;
    const dash = part.indexOf('-');
    if (dash < 1) return undefined;
    const delta = parseBase36(part.slice(0, dash));
    const seq = parseBase36(part.slice(dash + 1));
    if (delta === undefined || seq === undefined) return undefined;
    ms += Number(delta);
    if (!Number.isSafeInteger(ms)) return undefined;
    ids.push(`${ms}-${seq}`);
  }
  return persistedAt === undefined ? { ids } : { ids, persistedAt };
}

function parseBase36(text: string): bigint | undefined {
  if (!/^[0-9a-z]+$/.test(text)) return undefined;
  // Ten digits of base 36 fit a double exactly: the common case, without BigInt arithmetic.
  if (text.length <= 10) return BigInt(Number.parseInt(text, 36));
  let value = 0n;
  for (const digit of text) value = value * 36n + BigInt(Number.parseInt(digit, 36));
  return value;
}
