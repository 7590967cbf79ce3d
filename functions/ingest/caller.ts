/**
 * What ingest knows of who sent a request: the client's address (behind a known
 * number of trusted proxies), and the request's fingerprint for idempotency.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ClientError, mediaType, pathOf } from '../shared/http.js';
import type { Caller } from './store.js';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** A request's API key, once it is known to be one of INGEST_API_KEYS or INGEST_REPLAY_KEYS. */
export interface Key {
  /** The key's digest. */
  token: Buffer;
  /** The sources it may post (their prefixes); undefined: any. */
  prefixes: string[] | undefined;
  /** One of the replay's keys (INGEST_REPLAY_KEYS). */
  replay: boolean;
}

/**
 * The API keys ingest takes. INGEST_API_KEYS entries: `key`, or
 * `key=source-prefix` to bind a key to the sources it may post (one key may be
 * listed with several prefixes); the replay's keys authenticate too, for any
 * source. Keys are kept and compared as SHA-256 digests, in constant time.
 */
export class ApiKeys {
  private readonly known: Array<{
    digest: Buffer;
    prefixes: string[] | undefined;
    replay: boolean;
  }>;

  constructor(apiKeys: readonly string[], replayKeys: readonly string[]) {
    const keys = new Map<
      string,
      { digest: Buffer; prefixes: string[] | undefined; replay: boolean }
    >();
    for (const entry of apiKeys) {
      const at = entry.indexOf('=');
      const token = at < 0 ? entry : entry.slice(0, at);
      const known = keys.get(token) ?? { digest: digest(token), prefixes: [], replay: false };
      if (at < 0) known.prefixes = undefined;
      else known.prefixes?.push(entry.slice(at + 1));
      keys.set(token, known);
    }
    this.known = [
      ...keys.values(),
      ...replayKeys.map((token) => ({ digest: digest(token), prefixes: undefined, replay: true })),
    ];
  }

  /**
   * The request's key (undefined when no keys are configured: anyone may post);
   * a missing or unknown key is refused (401).
   */
  authorize(req: IncomingMessage): Key | undefined {
    if (this.known.length === 0) return undefined;
    const header = req.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? digest(header.slice(7).trim()) : undefined;
    let found: Key | undefined;
    for (const known of this.known)
      if (presented && timingSafeEqual(presented, known.digest) && !found)
        found = { token: presented, prefixes: known.prefixes, replay: known.replay };
    if (found) return found;
    throw new ClientError('unauthorized', 'send a valid API key as "Authorization: Bearer <key>"', {
      'www-authenticate': 'Bearer',
    });
  }
}

/**
 * Who sent it. With an API key: the key (its digest), for both the rate limit and
 * the idempotency scope. Without: the client's address for the rate limit (the
 * peer, or with TRUSTED_PROXY_HOPS = N the Nth address from the right of
 * X-Forwarded-For, which only the trusted proxies wrote), and one shared
 * idempotency scope, "anon".
 */
export function callerOf(
  req: IncomingMessage,
  key: Key | undefined,
  body: Buffer,
  trustedProxyHops: number,
): Caller {
  // Only a request with an Idempotency-Key needs its fingerprint.
  const fingerprint =
    req.headers['idempotency-key'] === undefined ? '' : requestFingerprint(req, body);
  const scope = scopeOf(key);
  if (key) return { client: scope, scope, fingerprint };
  return {
    client: `ip:${clientAddress(req, trustedProxyHops)}`,
    scope,
    fingerprint,
  };
}

/**
 * A client's scope, for its Idempotency-Keys and its receipts: its API key (a
 * digest of it), or "anon", which every client without one shares.
 */
export function scopeOf(key: Key | undefined): string {
  return key ? `key:${key.token.subarray(0, 8).toString('hex')}` : 'anon';
}

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
