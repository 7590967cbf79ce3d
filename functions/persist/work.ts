/**
 * What persist writes for a stream entry: its event document, or, when the entry
 * is not an event, a dead letter (`events_dead`) that keeps it as text.
 */
import { createHash } from 'node:crypto';
import { BSON } from 'mongodb';
import {
  type DeadDocument,
  DocumentError,
  type EventDocument,
  toDocument,
} from '../shared/document.js';
import { EntryError, parseEntryFields } from '../shared/entry.js';
import { cachedBsonSize } from './command-size.js';

const MAX_REASON_CHARS = 2000;

/** An event to store, with the stream entry's fields it came from. */
export interface EventWork {
  readonly kind: 'event';
  readonly doc: EventDocument;
  readonly fields: readonly string[];
}

/** A dead letter to store. */
export interface DeadWork {
  readonly kind: 'dead';
  readonly doc: DeadDocument;
}

/** A delivery that names a stream entry: what is written comes from the stream. */
export interface Doorbell {
  readonly kind: 'doorbell';
}

/** What a queued item writes: an event, a dead letter, or, for a doorbell, what its entry holds. */
export type Work = EventWork | DeadWork | Doorbell;

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

/**
 * The work a stream entry gives: its event, or a dead letter when it is not one.
 * An event's BSON size is measured here, where the entry is read, rather than
 * at its write's grant, which the database waits through (command-size.ts
 * remembers it).
 */
export function workOf(streamId: string, fields: readonly string[]): Work {
  try {
    const doc = toDocument(parseEntryFields(fields), streamId, new Date());
    cachedBsonSize(doc);
    return { kind: 'event', doc, fields };
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

/**
 * What makes an event the event it is, as its producer gave it: type, subject,
 * data and attributes. Not where or when it was stored, not the client's key,
 * and not its time, which ingest sets itself when a producer gives none (a
 * retry of the same event then has another).
 */
function contentBytes(doc: Partial<EventDocument>): Buffer {
  return Buffer.from(
    BSON.serialize({
      type: doc.type,
      subject: doc.subject,
      data: doc.data,
      attributes: doc.attributes ?? null,
    }),
  );
}

/**
 * The same event twice (a producer's retry, a replay), or two events under one
 * (source, id). `stored` must be read with promoteValues false, so that its
 * numbers keep the BSON types they were stored with.
 */
export function sameContent(stored: Partial<EventDocument>, doc: EventDocument): boolean {
  return contentBytes(stored).equals(contentBytes(doc));
}
