/**
 * The HTTP edge, in one place: how an answer is sent, how a media type is
 * read, and the one catalogue of error codes every answer uses. Handlers throw
 * an HttpError (ClientError for 4xx); one place turns it into
 * `{"error": code, "detail": …}` with the code's status.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';

/** Every error code Spillway answers with, and its HTTP status. */
export const ERROR_STATUS = {
  malformed_json: 400,
  invalid_body: 400,
  invalid_field: 400,
  invalid_cloudevent: 400,
  invalid_header: 400,
  invalid_data: 400,
  unauthorized: 401,
  source_disabled: 403,
  source_forbidden: 403,
  replay_forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_reused: 422,
  rate_limited: 429,
  internal: 500,
  backlog_full: 503,
  unavailable: 503,
  not_ready: 503,
  not_persisted: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** An answer other than success: its code decides the status. */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    detail: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(detail);
    this.status = ERROR_STATUS[code];
  }
}

/** The client sent something wrong (a 4xx): nothing was changed. */
export class ClientError extends HttpError {
  override name = 'ClientError';
}

/** A body over the function's MAX_BODY_BYTES (the connection is closed: the rest is never read). */
export function bodyTooLarge(maxBodyBytes: number): ClientError {
  return new ClientError(
    'payload_too_large',
    `the body is larger than MAX_BODY_BYTES (${maxBodyBytes} bytes)`,
    { connection: 'close' },
  );
}

/** A JSON answer with its Content-Length. */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** `{"error": code, "detail": message}` with the code's status and the error's headers. */
export function sendError(res: ServerResponse, error: HttpError): void {
  send(res, error.status, { error: error.code, detail: error.message }, error.headers);
}

/** The media type of a Content-Type header, lower case, without parameters ('' when none). */
export function mediaType(headers: IncomingHttpHeaders): string {
  return mediaTypeOf(headers['content-type']);
}

/** The media type of a Content-Type value, lower case, without parameters ('' when none). */
export function mediaTypeOf(raw: string | undefined): string {
  if (!raw) return '';
  const semi = raw.indexOf(';');
  return (semi === -1 ? raw : raw.slice(0, semi)).trim().toLowerCase();
}

/** application/json, or application/<anything>+json (RFC 6839). */
export function isJsonMediaType(type: string): boolean {
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

/** The path of a request URL, without its query. */
export function pathOf(url: string | undefined): string {
  const value = url ?? '/';
  const q = value.indexOf('?');
  return q === -1 ? value : value.slice(0, q);
}
