/**
 * Turns an HTTP request into the event ingest appends, or into the client error
 * that says what was wrong. Three shapes are accepted: a plain JSON event
 * `{type, source?, subject?, data}`, and a CloudEvent in binary or structured mode.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { HTTP } from 'cloudevents';
import { ClientError, isJsonMediaType, mediaType } from '../shared/http.js';

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

function text(field: string, value: unknown, required: boolean): string | undefined {
  if (value === undefined || value === null) {
    if (required) throw new ClientError('invalid_field', `"${field}" is required`);
    return undefined;
  }
  if (typeof value !== 'string') {
    throw new ClientError('invalid_field', `"${field}" must be a string`);
  }
  const max = LIMITS[field as keyof typeof LIMITS];
  if (required && value === '')
    throw new ClientError('invalid_field', `"${field}" must not be empty`);
  if (value.length > max) {
    throw new ClientError('invalid_field', `"${field}" is longer than ${max} characters`);
  }
  return value;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ClientError(
      'malformed_json',
      `the body is not valid JSON: ${(error as Error).message}`,
    );
  }
}

function plainEvent(body: Buffer, defaultSource: string): EventDraft {
  const value = parseJson(body);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ClientError(
      'invalid_body',
      'the body must be a JSON object {type, source?, subject?, data}',
    );
  }
  const event = value as Record<string, unknown>;
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
    type: text('type', event.type, true) as string,
    source: text('source', event.source, false) ?? defaultSource,
    subject: text('subject', event.subject, false) ?? '',
    data: JSON.stringify(event.data),
  };
}

function cloudEvent(headers: IncomingHttpHeaders, body: Buffer): EventDraft {
  let event: ReturnType<typeof HTTP.toEvent>;
  try {
    event = HTTP.toEvent({
      headers: headers as Record<string, string>,
      body: body.toString('utf8'),
    });
  } catch (error) {
    const message = (error as Error).message;
    const code =
      message.includes('JSON') || error instanceof SyntaxError
        ? 'malformed_json'
        : 'invalid_cloudevent';
    throw new ClientError(code, `not a valid CloudEvent: ${message}`);
  }
  if (Array.isArray(event)) {
    throw new ClientError(
      'unsupported_media_type',
      'CloudEvents batch mode is not accepted; send one event per request',
    );
  }
  const data = event.data ?? (event.data_base64 === undefined ? undefined : null);
  if (data === undefined)
    throw new ClientError('invalid_field', '"data" is required (any JSON value)');
  if (event.data_base64 !== undefined || Buffer.isBuffer(data) || data instanceof Uint8Array) {
    throw new ClientError(
      'unsupported_media_type',
      'CloudEvent data must be JSON (datacontenttype application/json)',
    );
  }
  const draft: EventDraft = {
    id: text('id', event.id, true) as string,
    type: text('type', event.type, true) as string,
    source: text('source', event.source, true) as string,
    subject: text('subject', event.subject, false) ?? '',
    data: JSON.stringify(data),
  };
  if (event.time) draft.time = event.time;
  return draft;
}

/** Validates and parses the request body; throws ClientError for anything wrong. */
export function parseEvent(
  headers: IncomingHttpHeaders,
  body: Buffer,
  defaultSource: string,
): EventDraft {
  const type = mediaType(headers);
  if (type === 'application/cloudevents+json') return cloudEvent(headers, body);
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
  if (headers['ce-specversion'] !== undefined) return cloudEvent(headers, body);
  return plainEvent(body, defaultSource);
}
