/**
 * The ingest HTTP function: validate, one Redis round trip (ingest-6.lua), 202.
 * It uses only node:http's request/response API plus `req.rawBody`, so it runs the
 * same under the Functions Framework (Express) and under Spillway's lean host
 * (which also serves /healthz and /readyz for it).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import { Counter, Histogram, type Registry } from 'prom-client';
import { uuidv7 } from 'uuidv7';
import { attributesText } from '../shared/document.js';
import { ClientError, HttpError, pathOf, send, sendError } from '../shared/http.js';
import type { Logger } from '../shared/logger.js';
import { READY_CHECK_MS, within } from '../shared/time.js';
import { clientAddress, requestFingerprint } from './caller.js';
import type { IngestConfig } from './config.js';
import { MemoryGauge } from './memory.js';
import { parseEvent } from './request.js';
import { type AcceptOutcome, type Caller, EventStore } from './store.js';

export type IngestRequest = IncomingMessage & { rawBody?: Buffer; body?: unknown };

/** Where events are posted; `/` is an alias of `/events`. */
const EVENT_PATHS = new Set(['/', '/events']);

export interface Ingest {
  handle(req: IngestRequest, res: ServerResponse): Promise<void>;
  ready(): Promise<boolean>;
  store: EventStore;
  /** Redis's memory as admission sees it (started here; stop() ends its polling). */
  memory: MemoryGauge;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** The attributes a dead-letter replay (cluster/replay-dead-letters.sh) carries an entry's seq and key in. */
const REPLAY_SEQ = 'spillwayseq';
const REPLAY_KEY = 'spillwaykey';

/**
 * A replayed dead letter keeps the seq and key of the entry it was: taken out
 * of its attributes (and refused from anyone but the replay, 403).
 */
function replayed(
  attributes: Record<string, unknown> | undefined,
  replay: boolean,
): { replayed: boolean; seq?: number; key?: string } {
  if (!attributes || (!(REPLAY_SEQ in attributes) && !(REPLAY_KEY in attributes)))
    return { replayed: false };
  if (!replay)
    throw new ClientError(
      'replay_forbidden',
      `${REPLAY_SEQ} and ${REPLAY_KEY} are for the dead-letter replay, with a key of INGEST_REPLAY_KEYS`,
    );
  const kept: { replayed: boolean; seq?: number; key?: string } = { replayed: true };
  const seq = attributes[REPLAY_SEQ];
  if (seq !== undefined) {
    const n = typeof seq === 'string' ? Number(seq) : seq;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
      throw new ClientError('invalid_cloudevent', `${REPLAY_SEQ} must be a positive integer`);
    kept.seq = n;
  }
  const key = attributes[REPLAY_KEY];
  if (key !== undefined) {
    if (typeof key !== 'string' || key === '' || key.length > 256)
      throw new ClientError('invalid_cloudevent', `${REPLAY_KEY} must be 1 to 256 characters`);
    kept.key = key;
  }
  delete attributes[REPLAY_SEQ];
  delete attributes[REPLAY_KEY];
  return kept;
}

export function createIngest(
  config: IngestConfig,
  redis: Redis,
  registry: Registry,
  log: Logger,
): Ingest {
  const store = new EventStore(redis, {
    streamKey: config.streamKey,
    idempotencyTtlMs: config.idempotencyTtlSec * 1000,
    rateLimitPerSec: config.rateLimitPerSec,
    maxBacklog: config.maxBacklog,
    sequenceTtlMs: config.seqTtlSec * 1000,
    countersTtlMs: config.countersTtlSec * 1000,
  });
  // INGEST_API_KEYS entries: `key`, or `key=source-prefix` to bind a key to the
  // sources it may post (one key may be listed with several prefixes).
  const keys = new Map<string, { digest: Buffer; prefixes: string[] | undefined }>();
  for (const entry of config.ingestApiKeys) {
    const at = entry.indexOf('=');
    const token = at < 0 ? entry : entry.slice(0, at);
    const known = keys.get(token) ?? { digest: digest(token), prefixes: [] };
    if (at < 0) known.prefixes = undefined;
    else known.prefixes?.push(entry.slice(at + 1));
    keys.set(token, known);
  }
  const keyDigests: Array<{ digest: Buffer; prefixes: string[] | undefined; replay?: true }> = [
    ...keys.values(),
    // the replay's keys authenticate too, for any source
    ...config.ingestReplayKeys.map((token) => ({
      digest: digest(token),
      prefixes: undefined,
      replay: true as const,
    })),
  ];
  const memory = new MemoryGauge(redis, config.maxRedisMemoryPct);
  memory.start();

  const requests = new Counter({
    name: 'spillway_ingest_requests_total',
    help: 'Ingest requests by HTTP status',
    labelNames: ['status'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'spillway_ingest_request_seconds',
    help: 'Time from the request reaching the function to its answer',
    buckets: [0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });

  /**
   * The bearer token's digest and the sources it may post (undefined: any) when
   * it is one of INGEST_API_KEYS; compared in constant time.
   */
  function authorize(
    req: IncomingMessage,
  ): { token: Buffer; prefixes: string[] | undefined; replay: boolean } | undefined {
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Bearer ')) return undefined;
    const presented = digest(header.slice(7).trim());
    let found: { token: Buffer; prefixes: string[] | undefined; replay: boolean } | undefined;
    for (const known of keyDigests)
      if (timingSafeEqual(presented, known.digest) && !found)
        found = { token: presented, prefixes: known.prefixes, replay: known.replay === true };
    return found;
  }

  /**
   * Who sent it. With an API key: the key (its digest), for both the rate limit and
   * the idempotency scope. Without: the client's address for the rate limit (the
   * peer, or with TRUSTED_PROXY_HOPS = N the Nth address from the right of
   * X-Forwarded-For, which only the trusted proxies wrote), and one shared
   * idempotency scope, "anon".
   */
  function callerOf(req: IngestRequest, token: Buffer | undefined, body: Buffer): Caller {
    // Only a request with an Idempotency-Key needs its fingerprint.
    const fingerprint =
      req.headers['idempotency-key'] === undefined ? '' : requestFingerprint(req, body);
    if (token) {
      const key = `key:${token.subarray(0, 8).toString('hex')}`;
      return { client: key, scope: key, fingerprint };
    }
    return {
      client: `ip:${clientAddress(req, config.trustedProxyHops)}`,
      scope: 'anon',
      fingerprint,
    };
  }

  /** Answers one event, or throws the HttpError that says why not. */
  async function accept(req: IngestRequest, res: ServerResponse): Promise<number> {
    let token: Buffer | undefined;
    let prefixes: string[] | undefined;
    let replay = false;
    if (keyDigests.length > 0) {
      const key = authorize(req);
      token = key?.token;
      prefixes = key?.prefixes;
      replay = key?.replay === true;
      if (!token)
        throw new ClientError(
          'unauthorized',
          'send a valid API key as "Authorization: Bearer <key>"',
          { 'www-authenticate': 'Bearer' },
        );
    }
    const body = req.rawBody ?? Buffer.alloc(0);
    if (body.length > config.maxBodyBytes)
      throw new ClientError(
        'payload_too_large',
        `the body is larger than MAX_BODY_BYTES (${config.maxBodyBytes} bytes)`,
      );
    const key = req.headers['idempotency-key'];
    if (typeof key === 'string' && (key === '' || key.length > 256))
      throw new ClientError('invalid_header', 'Idempotency-Key must be 1 to 256 characters');
    const draft = parseEvent(req.headers, body, config.defaultSource);
    // A key bound to sources posts only those: no tenant takes another's (source, id).
    if (prefixes && !prefixes.some((prefix) => draft.source.startsWith(prefix)))
      throw new ClientError(
        'source_forbidden',
        `this API key may post only sources starting with ${prefixes.map((p) => JSON.stringify(p)).join(' or ')}, not ${JSON.stringify(draft.source)}`,
      );
    if (memory.full) {
      const { used, max } = memory.reading;
      throw new HttpError(
        'backlog_full',
        `Redis holds ${Math.round(used / 1048576)} MiB of its ${Math.round(max / 1048576)} MiB (MAX_REDIS_MEMORY_PCT ${config.maxRedisMemoryPct}): the backlog must drain first; retry later`,
        { 'retry-after': String(config.backlogRetryAfterSec) },
      );
    }
    const kept = replayed(draft.attributes, replay);
    const now = Date.now();
    const entry = {
      id: draft.id ?? uuidv7(),
      type: draft.type,
      source: draft.source,
      subject: draft.subject,
      time: draft.time ?? new Date(now).toISOString(),
      data: draft.data,
      ...(draft.attributes && attributesText(draft.attributes) !== undefined
        ? { attributes: attributesText(draft.attributes) }
        : {}),
      // a replayed entry keeps its own key (or none), not the replay's Idempotency-Key
      ...(kept.replayed
        ? kept.key !== undefined
          ? { key: kept.key }
          : {}
        : typeof key === 'string'
          ? { key }
          : {}),
    };
    let outcome: AcceptOutcome;
    try {
      outcome = await store.accept(entry, callerOf(req, token, body), now, {
        idempotencyKey: typeof key === 'string' ? key : undefined,
        seq: kept.seq,
      });
    } catch (error) {
      log.warn({ err: error }, 'redis did not take the event');
      throw new HttpError(
        'unavailable',
        'the event store is unavailable; retry with the same Idempotency-Key',
        { 'retry-after': '1' },
      );
    }
    switch (outcome.kind) {
      case 'ok':
        send(res, 202, { id: outcome.id, source: entry.source, seq: outcome.seq });
        return 202;
      case 'dup':
        send(
          res,
          202,
          { id: outcome.id, source: outcome.source, seq: outcome.seq },
          { 'idempotent-replay': 'true' },
        );
        return 202;
      case 'reused':
        throw new ClientError(
          'idempotency_key_reused',
          'this Idempotency-Key was used for a different request; use a new key for a new event',
        );
      case 'disabled':
        throw new ClientError(
          'source_disabled',
          `source ${JSON.stringify(entry.source)} is disabled by its settings`,
        );
      case 'rate':
        throw new ClientError(
          'rate_limited',
          `over ${outcome.limit} requests per second for this client`,
          { 'retry-after': '1' },
        );
      case 'full':
        throw new HttpError(
          'backlog_full',
          `${outcome.backlog} events are waiting to be persisted (MAX_BACKLOG ${config.maxBacklog}); retry later`,
          { 'retry-after': String(config.backlogRetryAfterSec) },
        );
    }
  }

  async function ready(): Promise<boolean> {
    try {
      let pong = '';
      const answered = await within(
        redis.ping().then((reply) => {
          pong = reply;
        }),
        READY_CHECK_MS,
      );
      return answered && pong === 'PONG';
    } catch {
      return false;
    }
  }

  async function route(req: IngestRequest, res: ServerResponse): Promise<number> {
    const path = pathOf(req.url);
    if (!EVENT_PATHS.has(path))
      throw new ClientError('not_found', `no route ${path}; post events to /events`);
    if (req.method !== 'POST')
      throw new ClientError(
        'method_not_allowed',
        `${req.method} is not allowed on ${path}; use POST`,
        {
          allow: 'POST',
        },
      );
    return accept(req, res);
  }

  async function handle(req: IngestRequest, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    let status: number;
    try {
      status = await route(req, res);
    } catch (error) {
      if (error instanceof HttpError) {
        sendError(res, error);
        status = error.status;
      } else {
        log.error({ err: error }, 'ingest failed');
        if (!res.headersSent)
          sendError(res, new HttpError('internal', 'ingest failed; see its log'));
        status = 500;
      }
    }
    requests.inc({ status });
    latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  return { handle, ready, store, memory };
}
