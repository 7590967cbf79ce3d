/**
 * The MongoDB document of one event, collection `events` (docs/architecture.md,
 * "The three contracts"). Its identity is the CloudEvents identity, source and
 * id together: `_id: {source, id}`, which makes every write idempotent and keeps
 * two producers' events with the same id apart. Look an event up with
 * `find({_id: {source, id}})` (the order of the two fields matters), and a
 * source's events with a range on `_id`. `data` is stored as functions/shared/
 * data.ts maps it; `storedDataText` gives it back as posted.
 */
import { toStored } from './data.js';
import type { StreamEntry } from './entry.js';

export interface EventId {
  source: string;
  id: string;
}

export interface EventDocument {
  _id: EventId;
  type: string;
  subject: string;
  seq: number;
  time: Date;
  data: unknown;
  streamId: string;
  persistedAt: Date;
  key?: string;
}

export class DocumentError extends Error {
  override name = 'DocumentError';
}

/** The `_id` of an event: source first, then id (a MongoDB embedded document compares in order). */
export const eventId = (source: string, id: string): EventId => ({ source, id });

export function toDocument(entry: StreamEntry, streamId: string, persistedAt: Date): EventDocument {
  const time = new Date(entry.time);
  if (Number.isNaN(time.getTime()))
    throw new DocumentError(`time ${JSON.stringify(entry.time)} is not RFC 3339`);
  let data: unknown;
  try {
    data = toStored(entry.data);
  } catch {
    throw new DocumentError('data is not JSON text');
  }
  const doc: EventDocument = {
    _id: eventId(entry.source, entry.id),
    type: entry.type,
    subject: entry.subject,
    seq: entry.seq,
    time,
    data,
    streamId,
    persistedAt,
  };
  if (entry.key !== undefined) doc.key = entry.key;
  return doc;
}
