/**
 * Turns an HTTP request into the event ingest appends, or into the client error
 * that says what was wrong. Three shapes are accepted: a plain JSON event
 * `{type, source?, subject?, data}`, and a CloudEvent in binary or structured mode.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isLosslessNumber, type LosslessNumber } from 'lossless-json';
import { checkData, DataError, jsonText, parseJson } from '../shared/data.js';
import type { AttributeValue, CloudEventAttributes } from '../shared/document.js';
import { ClientError, isJsonMediaType, mediaType, mediaTypeOf } from '../shared/http.js';
import { rfc3339Millis, TimestampError } from '../shared/timestamp.js';

export interface EventDraft {
  /** Kept from a CloudEvent; plain events get a fresh UUIDv7. */
  id?: string;
  type: string;
  source: string;
  subject: string;
  /** Kept from a CloudEvent; else the time of acceptance. */
  time?: string;
  /** JSON text. */
  data: string;
  /** A CloudEvent's other attributes: datacontenttype, dataschema, extensions. */
  attributes?: CloudEventAttributes;
}

/** The attributes ingest reads itself; every other one is kept as it came. */
const CONTEXT = new Set(['specversion', 'id', 'source', 'type', 'subject', 'time', 'data']);
/** CloudEvents: attribute names are lower-case ASCII letters and digits (20 or fewer advised). */
const ATTRIBUTE_NAME = /^[a-z0-9]{1,64}$/;
const MAX_ATTRIBUTES = 32;
const MAX_ATTRIBUTE_CHARS = 4096;
const INT32 = 2 ** 31;

const LIMITS = { id: 256, type: 256, source: 1024, subject: 1024 } as const;
const PLAIN_FIELDS = new Set(['type', 'source', 'subject', 'data']);

type Field = keyof typeof LIMITS;

/** A string attribute that may be absent; present, it must be a string within its limit. */
function optionalText(field: Field, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new ClientError('invalid_field', `"${field}" must be a string`);
  }
  if (!value.isWellFormed())
    throw new ClientError('invalid_field', `"${field}" is not valid Unicode (a lone surrogate)`);
  if (value.length > LIMITS[field]) {
    throw new ClientError('invalid_field', `"${field}" is longer than ${LIMITS[field]} characters`);
  }
  return value;
}

/** A string attribute that must be there and not empty. */
function requiredText(field: Field, value: unknown): string {
  const text = optionalText(field, value);
  if (text === undefined) throw new ClientError('invalid_field', `"${field}" is required`);
  if (text === '') throw new ClientError('invalid_field', `"${field}" must not be empty`);
  return text;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The body as JSON, every number kept as written (functions/shared/data.ts). */
function bodyJson(body: Buffer): unknown {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new ClientError('malformed_json', 'the body is not valid JSON: it is not valid UTF-8');
  }
  try {
    return parseJson(text);
  } catch (error) {
    throw new ClientError(
      'malformed_json',
      `the body is not valid JSON: ${(error as Error).message}`,
    );
  }
}

/** The event's data as the text the stream entry carries; refused when it cannot be stored exactly. */
function dataOf(value: unknown): string {
  try {
    checkData(value, 'data');
  } catch (error) {
    if (error instanceof DataError) throw new ClientError('invalid_data', error.message);
    throw error;
  }
  return jsonText(value);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function plainEvent(body: Buffer, defaultSource: string): EventDraft {
  const event = bodyJson(body);
  if (!isObject(event))
    throw new ClientError(
      'invalid_body',
      'the body must be a JSON object {type, source?, subject?, data}',
    );
  for (const name of Object.keys(event)) {
    if (!PLAIN_FIELDS.has(name)) {
      throw new ClientError(
        'invalid_field',
        `"${name}" is not a field of an event (type, source, subject, data)`,
      );
    }
  }
  if (!('data' in event))
    throw new ClientError('invalid_field', '"data" is required (any JSON value)');
  return {
    type: requiredText('type', event.type),
    source: optionalText('source', event.source) ?? defaultSource,
    subject: optionalText('subject', event.subject) ?? '',
    data: dataOf(event.data),
  };
}

/** A CloudEvent's context attributes and data, checked (spec version 1.0, JSON data). */
function cloudEventDraft(attributes: Record<string, unknown>, data: () => unknown): EventDraft {
  if (attributes.specversion !== '1.0')
    throw new ClientError(
      'invalid_cloudevent',
      `not a valid CloudEvent: specversion ${JSON.stringify(attributes.specversion ?? null)} is not 1.0`,
    );
  for (const name of ['id', 'source', 'type'])
    if (attributes[name] === undefined || attributes[name] === null)
      throw new ClientError('invalid_cloudevent', `not a valid CloudEvent: "${name}" is required`);
  const contentType = attributes.datacontenttype;
  if (
    contentType !== undefined &&
    !(typeof contentType === 'string' && isJsonMediaType(mediaTypeOf(contentType)))
  )
    throw new ClientError(
      'unsupported_media_type',
      'CloudEvent data must be JSON (datacontenttype application/json)',
    );
  const draft: EventDraft = {
    id: requiredText('id', attributes.id),
    type: requiredText('type', attributes.type),
    source: requiredText('source', attributes.source),
    subject: optionalText('subject', attributes.subject) ?? '',
    data: dataOf(data()),
  };
  const time = attributes.time;
  if (time !== undefined && time !== null) {
    if (typeof time !== 'string')
      throw new ClientError('invalid_field', '"time" must be an RFC 3339 date-time string');
    try {
      rfc3339Millis(time);
    } catch (error) {
      if (!(error instanceof TimestampError)) throw error;
      throw new ClientError('invalid_field', `"time" ${JSON.stringify(time)} ${error.message}`);
    }
    draft.time = time;
  }
  const others = otherAttributes(attributes);
  if (others !== undefined) draft.attributes = others;
  return draft;
}

/** One attribute's value as the JSON format allows it: a string, an integer (32 bits) or a boolean. */
function attributeValue(name: string, value: unknown): AttributeValue {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number' || isLosslessNumber(value)) {
    const n = typeof value === 'number' ? value : Number((value as LosslessNumber).value);
    if (!Number.isInteger(n) || n < -INT32 || n >= INT32)
      throw new ClientError(
        'invalid_cloudevent',
        `attribute "${name}" is a number that is not a 32-bit integer`,
      );
    return n;
  }
  if (typeof value !== 'string')
    throw new ClientError(
      'invalid_cloudevent',
      `attribute "${name}" must be a string, an integer or a boolean`,
    );
  if (!value.isWellFormed())
    throw new ClientError('invalid_cloudevent', `attribute "${name}" is not valid Unicode`);
  if (value.length > MAX_ATTRIBUTE_CHARS)
    throw new ClientError(
      'invalid_cloudevent',
      `attribute "${name}" is longer than ${MAX_ATTRIBUTE_CHARS} characters`,
    );
  return value;
}

/** Every attribute besides the context ingest reads (datacontenttype, dataschema, extensions), checked. */
function otherAttributes(attributes: Record<string, unknown>): CloudEventAttributes | undefined {
  const kept: CloudEventAttributes = {};
  let count = 0;
  for (const [name, value] of Object.entries(attributes)) {
    // a null attribute is an absent one (CloudEvents JSON format)
    if (CONTEXT.has(name) || value === undefined || value === null) continue;
    if (!ATTRIBUTE_NAME.test(name))
      throw new ClientError(
        'invalid_cloudevent',
        `attribute name ${JSON.stringify(name)} is not lower-case letters and digits (at most 64)`,
      );
    if (++count > MAX_ATTRIBUTES)
      throw new ClientError('invalid_cloudevent', `more than ${MAX_ATTRIBUTES} attributes`);
    kept[name] = attributeValue(name, value);
  }
  return count === 0 ? undefined : kept;
}

/**
 * Structured mode: the whole event is the JSON body. Parsed here rather than by
 * the CloudEvents SDK, which parses with JSON.parse and would round numbers.
 */
function structuredEvent(body: Buffer): EventDraft {
  const event = bodyJson(body);
  if (!isObject(event))
    throw new ClientError(
      'invalid_cloudevent',
      'not a valid CloudEvent: the body is not a JSON object',
    );
  if (event.data_base64 !== undefined)
    throw new ClientError(
      'unsupported_media_type',
      'CloudEvent data must be JSON (datacontenttype application/json)',
    );
  if (!('data' in event))
    throw new ClientError('invalid_field', '"data" is required (any JSON value)');
  return cloudEventDraft(event, () => event.data);
}

/** Binary mode: the attributes are `ce-*` headers, the body is the data. */
function binaryEvent(headers: IncomingHttpHeaders, body: Buffer): EventDraft {
  const attributes: Record<string, unknown> = { datacontenttype: headers['content-type'] };
  for (const [name, value] of Object.entries(headers))
    if (name.startsWith('ce-'))
      attributes[name.slice(3)] = Array.isArray(value) ? value.join(',') : value;
  if (body.length === 0)
    throw new ClientError('invalid_field', '"data" is required (any JSON value)');
  return cloudEventDraft(attributes, () => bodyJson(body));
}

/** Validates and parses the request body; throws ClientError for anything wrong. */
export function parseEvent(
  headers: IncomingHttpHeaders,
  body: Buffer,
  defaultSource: string,
): EventDraft {
  const type = mediaType(headers);
  if (type === 'application/cloudevents+json') return structuredEvent(body);
  if (type === 'application/cloudevents-batch+json') {
    throw new ClientError(
      'unsupported_media_type',
      'CloudEvents batch mode is not accepted; send one event per request',
    );
  }
  if (!isJsonMediaType(type)) {
    throw new ClientError(
      'unsupported_media_type',
      `Content-Type ${type === '' ? '(none)' : JSON.stringify(type)} is not accepted; send application/json or a CloudEvent`,
    );
  }
  if (headers['ce-specversion'] !== undefined) return binaryEvent(headers, body);
  return plainEvent(body, defaultSource);
}
