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
import { rfc3339Millis, TimestampError } from './timestamp.js';

export interface EventId {
  source: string;
  id: string;
}

export interface EventDocument {
  _id: EventId;
  type: string;
  subject: string;
  seq: number;
  /** The instant, for queries (milliseconds, UTC). */
  time: Date;
  /** `time` exactly as posted: its digits and its offset. */
  timeText: string;
  data: unknown;
  /** The CloudEvent's other attributes (datacontenttype, dataschema, extensions), when it had any. */
  attributes?: CloudEventAttributes;
  streamId: string;
  persistedAt: Date;
  key?: string;
}

/** A CloudEvent attribute's value in the JSON format: a string, an integer or a boolean. */
export type AttributeValue = string | number | boolean;
export type CloudEventAttributes = Record<string, AttributeValue>;

/** The attributes' JSON text as the stream entry carries it (names sorted), or undefined when there are none. */
export function attributesText(attributes: CloudEventAttributes): string | undefined {
  const names = Object.keys(attributes).sort();
  if (names.length === 0) return undefined;
  return JSON.stringify(Object.fromEntries(names.map((name) => [name, attributes[name]])));
}

function parseAttributes(text: string): CloudEventAttributes {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new DocumentError('attributes is not JSON text');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new DocumentError('attributes is not a JSON object');
  for (const [name, v] of Object.entries(value))
    if (!/^[a-z0-9]+$/.test(name) || !['string', 'number', 'boolean'].includes(typeof v))
      throw new DocumentError(`attribute ${JSON.stringify(name)} is not a CloudEvent attribute`);
  return value as CloudEventAttributes;
}

export class DocumentError extends Error {
  override name = 'DocumentError';
}

/** The `_id` of an event: source first, then id (a MongoDB embedded document compares in order). */
export const eventId = (source: string, id: string): EventId => ({ source, id });

export function toDocument(entry: StreamEntry, streamId: string, persistedAt: Date): EventDocument {
  let time: Date;
  try {
    time = new Date(rfc3339Millis(entry.time));
  } catch (error) {
    if (!(error instanceof TimestampError)) throw error;
    throw new DocumentError(`time ${JSON.stringify(entry.time)} ${error.message}`);
  }
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
    timeText: entry.time,
    data,
    streamId,
    persistedAt,
  };
  if (entry.attributes !== undefined) doc.attributes = parseAttributes(entry.attributes);
  if (entry.key !== undefined) doc.key = entry.key;
  return doc;
}

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

/**
 * A document of `events_conflicts`: an event whose (source, id) was stored
 * before from another stream entry with other content. The first stored stays
 * (CloudEvents: the same source and id is the same event); this one is kept
 * for an operator, as text, with what it collided with.
 */
export interface ConflictDocument {
  /** The stream id of the entry that was not stored. */
  _id: string;
  event: EventId;
  /** The stream id the stored event came from. */
  storedStreamId: string;
  /** The entry's field list, as JSON text. */
  raw: string;
  detectedAt: Date;
}
