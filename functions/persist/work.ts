/**
 * What persist writes for a stream entry: its event document, or, when the entry
 * is not an event, a dead letter (`events_dead`) that keeps it as text.
 */
import { createHash } from 'node:crypto';
import { DocumentError, type EventDocument, toDocument } from '../shared/document.js';
import { EntryError, parseEntryFields } from '../shared/entry.js';

const MAX_REASON_CHARS = 2000;

/**
 * A document of `events_dead`: what could not become an event, and why. `raw` is
 * text (the stream entry's field list, or the CloudEvent, as JSON), so that a
 * dead letter is storable whatever its content.
 */
export interface DeadDocument {
  _id: string;
  reason: string;
  streamId: string | null;
  raw: string;
  deadAt: Date;
}

/** What a queued item writes: an event, or a dead letter. */
export type Work =
  | { kind: 'event'; doc: EventDocument; fields: readonly string[] }
  | { kind: 'dead'; doc: DeadDocument }
  /** A delivery that names a stream entry: what is written comes from the stream. */
  | { kind: 'doorbell' };

/** Builds the dead-letter document; its _id is stable so a retried write is idempotent. */
export function deadDocument(reason: string, streamId: string | null, raw: string): DeadDocument {
  const id = streamId ?? createHash('sha256').update(raw).digest('hex');
  const short = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
  return { _id: id, reason: short, streamId, raw, deadAt: new Date() };
}

/** Bytes a document adds to a batch, roughly (for MAX_BATCH_BYTES). */
export function entryBytes(fields: readonly string[]): number {
  let bytes = 64;
  for (const field of fields) bytes += field.length;
  return bytes;
}

/** The work a stream entry gives: its event, or a dead letter when it is not one. */
export function workOf(streamId: string, fields: readonly string[]): Work {
  try {
    return {
      kind: 'event',
      doc: toDocument(parseEntryFields(fields), streamId, new Date()),
      fields,
    };
  } catch (error) {
    if (!(error instanceof EntryError || error instanceof DocumentError)) throw error;
    return {
      kind: 'dead',
      doc: deadDocument(
        `stream entry is not an event: ${(error as Error).message}`,
        streamId,
        JSON.stringify(fields),
      ),
    };
  }
}
