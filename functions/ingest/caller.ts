/**
 * What ingest knows of who sent a request: the client's address (behind a known
 * number of trusted proxies), and the request's fingerprint for idempotency.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { mediaType, pathOf } from '../shared/http.js';

/**
 * The client's address: the peer's when no proxy is trusted; with `hops`
 * trusted proxies in front, the `hops`-th address from the right of
 * X-Forwarded-For (each trusted proxy appended the address it saw; what is
 * further left the client may have written itself). A header with fewer
 * addresses than that did not come through every trusted proxy: then the peer's.
 */
export function clientAddress(req: IncomingMessage, hops: number): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (hops === 0) return peer;
  const header = req.headers['x-forwarded-for'];
  const list = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((address) => address.trim())
    .filter((address) => address !== '');
  return list.length >= hops ? (list[list.length - hops] as string) : peer;
}

/**
 * What makes two requests the same request (the IETF Idempotency-Key draft): the
 * method, the path, the media type, the CloudEvents attributes sent as headers,
 * and the body, hashed (SHA-256, 128 bits kept).
 */
export function requestFingerprint(req: IncomingMessage, body: Buffer): string {
  const hash = createHash('sha256');
  hash.update(`${req.method ?? ''}\n${pathOf(req.url)}\n${mediaType(req.headers)}\n`);
  const attributes = Object.keys(req.headers)
    .filter((name) => name.startsWith('ce-'))
    .sort();
  for (const name of attributes) hash.update(`${name}:${String(req.headers[name])}\n`);
  hash.update(body);
  return hash.digest('base64url').slice(0, 22);
}
