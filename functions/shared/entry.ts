/**
 * Two of the three contracts (docs/architecture.md): the stream entry ingest XADDs, and the CloudEvent
 * RedisStreamSource makes of it. This module is the only place that knows the
 * field names and their order.
 *
 * Stream entry: flat field/value strings `id type source subject time seq data
 * [attributes] [key]`.
 * CloudEvent (as eventing-redis's adapter emits it): type
 * `dev.knative.sources.redisstream`, id = the stream entry id (`1732770000000-0`),
 * datacontenttype `application/json`, data = the entry's fields as ONE flat JSON
 * array of strings `["id","…","type","…",…]`.
 */
import { SOURCE_EVENT_TYPE } from './names.js';

export interface StreamEntry {
  /** Time-ordered event id (UUIDv7, or the id a CloudEvent producer gave). */
  id: string;
  type: string;
  source: string;
  /** May be empty. */
  subject: string;
  /** RFC 3339, as posted (or ingest's time of acceptance). */
  time: string;
  /** Sequence number of the (source, subject) pair, from Redis. */
  seq: number;
  /** JSON text. */
  data: string;
  /**
   * The CloudEvent's other attributes, when it had any (datacontenttype,
   * dataschema, every extension): JSON text of one object, names sorted.
   */
  attributes?: string;
  /** The client's Idempotency-Key, when it sent one. */
  key?: string;
}

/** The field/value list XADD takes (ingest's Lua script receives the same order). */
export function entryFields(entry: StreamEntry): string[] {
  const fields = [
    'id',
    entry.id,
    'type',
    entry.type,
    'source',
    entry.source,
    'subject',
    entry.subject,
    'time',
    entry.time,
    'seq',
    String(entry.seq),
    'data',
    entry.data,
  ];
  if (entry.attributes !== undefined) fields.push('attributes', entry.attributes);
  if (entry.key !== undefined) fields.push('key', entry.key);
  return fields;
}

export class EntryError extends Error {
  override name = 'EntryError';
}

const REQUIRED = ['id', 'type', 'source', 'subject', 'time', 'seq', 'data'] as const;
const STREAM_ID = /^\d+-\d+$/;

/** Parses a flat field/value list (from XRANGE, or a CloudEvent's data) into an entry. */
export function parseEntryFields(fields: readonly unknown[]): StreamEntry {
  if (fields.length % 2 !== 0) throw new EntryError('odd number of field/value strings');
  const map = new Map<string, string>();
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    if (typeof name !== 'string' || typeof value !== 'string') {
      throw new EntryError(`field ${i / 2} is not a pair of strings`);
    }
    map.set(name, value);
  }
  for (const name of REQUIRED) {
    if (!map.has(name)) throw new EntryError(`field "${name}" is missing`);
  }
  const seq = Number(map.get('seq'));
  if (!Number.isSafeInteger(seq) || seq < 1)
    throw new EntryError('field "seq" is not a positive integer');
  const id = map.get('id') as string;
  if (id === '') throw new EntryError('field "id" is empty');
  const entry: StreamEntry = {
    id,
    type: map.get('type') as string,
    source: map.get('source') as string,
    subject: map.get('subject') as string,
    time: map.get('time') as string,
    seq,
    data: map.get('data') as string,
  };
  const attributes = map.get('attributes');
  if (attributes !== undefined) entry.attributes = attributes;
  const key = map.get('key');
  if (key !== undefined) entry.key = key;
  return entry;
}

export function isStreamId(value: unknown): value is string {
  return typeof value === 'string' && STREAM_ID.test(value);
}

/** The attributes of a CloudEvent as far as persist needs them. */
export interface SourceEvent {
  specversion?: unknown;
  id?: unknown;
  type?: unknown;
  source?: unknown;
  datacontenttype?: unknown;
  data?: unknown;
}

/** What the source emits for one stream entry (the relay sends exactly this). */
export function sourceEventFor(
  streamId: string,
  fields: readonly string[],
  redisAddress: string,
  stream: string,
) {
  return {
    specversion: '1.0',
    id: streamId,
    type: SOURCE_EVENT_TYPE,
    source: `${redisAddress}/${stream}`,
    datacontenttype: 'application/json',
    data: fields,
  };
}

/**
 * The stream entry a CloudEvent from RedisStreamSource names (its id). Persist
 * takes the event as a doorbell: what it writes comes from the stream entry with
 * that id, never from the event's data, so a forged event cannot write what
 * ingest did not accept. Throws EntryError for anything that is not such an event.
 */
export function sourceEventStreamId(event: SourceEvent): string {
  if (event.type !== SOURCE_EVENT_TYPE)
    throw new EntryError(`type is ${JSON.stringify(event.type)}, expected ${SOURCE_EVENT_TYPE}`);
  if (!isStreamId(event.id))
    throw new EntryError(`id ${JSON.stringify(event.id)} is not a stream entry id`);
  return event.id;
}
