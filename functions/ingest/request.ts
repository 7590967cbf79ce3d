/**
 * Turns an HTTP request into the event ingest appends, or into the client error
 * that says what was wrong. Three shapes are accepted: a plain JSON event
 * `{type, source?, subject?, data}`, and a CloudEvent in binary or structured mode.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { checkData, DataError, jsonText, parseJson } from '../shared/data.js';
import { ClientError, isJsonMediaType, mediaType, mediaTypeOf } from '../shared/http.js';

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
}

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
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

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
  if (time !== undefined) {
    if (typeof time !== 'string' || !RFC3339.test(time) || Number.isNaN(Date.parse(time)))
      throw new ClientError('invalid_field', '"time" must be an RFC 3339 timestamp');
    draft.time = time;
  }
  return draft;
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
