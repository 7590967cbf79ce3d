/**
 * The MongoDB document of one event, collection `events` (docs/architecture.md,
 * "The three contracts").
 * `_id` is the event id, which makes every write idempotent.
 */
import type { StreamEntry } from './entry.js';

export interface EventDocument {
  _id: string;
  type: string;
  source: string;
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

export function toDocument(entry: StreamEntry, streamId: string, persistedAt: Date): EventDocument {
  const time = new Date(entry.time);
  if (Number.isNaN(time.getTime()))
    throw new DocumentError(`time ${JSON.stringify(entry.time)} is not RFC 3339`);
  let data: unknown;
  try {
    data = JSON.parse(entry.data);
  } catch {
    throw new DocumentError('data is not JSON text');
  }
  const doc: EventDocument = {
    _id: entry.id,
    type: entry.type,
    source: entry.source,
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
