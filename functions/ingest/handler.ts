/**
 * The ingest HTTP function: validate, one Redis round trip (ingest-6.lua), 202.
 * It uses only node:http's request/response API plus `req.rawBody`, so it runs the
 * same under the Functions Framework (Express) and under Spillway's lean host
 * (which also serves /healthz and /readyz for it). It answers only its 202s:
 * every refusal is an HttpError it throws, which the one wrapper of both
 * (functions/shared/answer.ts) answers, as it enforces MAX_BODY_BYTES.
 */
import type { ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import { Counter, Histogram, type Registry } from 'prom-client';
import { uuidv7 } from 'uuidv7';
import { attributesText } from '../shared/document.js';
import type { RawRequest } from '../shared/function.js';
import { ClientError, ERROR_STATUS, HttpError, pathOf, send } from '../shared/http.js';
import type { Logger } from '../shared/logger.js';
import { READY_CHECK_MS, within } from '../shared/time.js';
import { ApiKeys, callerOf, type Key } from './caller.js';
import type { IngestConfig } from './config.js';
import { MemoryGauge } from './memory.js';
import { type EventDraft, parseEvent } from './request.js';
import { type AcceptOutcome, EventStore } from './store.js';

/** Where events are posted; `/` is an alias of `/events`. */
const EVENT_PATHS = new Set(['/', '/events']);

export interface Ingest {
  /** Answers 202, or throws the HttpError that says why not (the host, or answer.ts, sends it). */
  handle(req: RawRequest, res: ServerResponse): Promise<void>;
  ready(): Promise<boolean>;
  store: EventStore;
  /** Redis's memory as admission sees it (started here; stop() ends its polling). */
  memory: MemoryGauge;
}

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

/** What admission found: who posts which event, under which key. */
interface Admitted {
  key: Key | undefined;
  draft: EventDraft;
  idempotencyKey: string | undefined;
  body: Buffer;
}

interface Parts {
  config: IngestConfig;
  store: EventStore;
  keys: ApiKeys;
  memory: MemoryGauge;
  log: Logger;
}

export function createIngestHandler(
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
  const keys = new ApiKeys(config.ingestApiKeys, config.ingestReplayKeys);
  const memory = new MemoryGauge(redis, config.maxRedisMemoryPct);
  memory.start();
  const parts: Parts = { config, store, keys, memory, log };
  const observe = requestMetrics(registry);
  return {
    async handle(req, res) {
      observe(res);
      route(req);
      await accept(parts, req, res);
    },
    ready: () => answersPing(redis),
    store,
    memory,
  };
}

/** Every status ingest answers with: 202, and each of the error catalogue's. */
const ANSWERED = [202, ...new Set(Object.values(ERROR_STATUS))];

/**
 * Counts every answer by status (each known status from 0, so a panel says 0,
 * not "No data"), and times it, once it is sent (whoever sends it).
 */
function requestMetrics(registry: Registry): (res: ServerResponse) => void {
  const requests = new Counter({
    name: 'spillway_ingest_requests_total',
    help: 'Ingest requests by HTTP status',
    labelNames: ['status'],
    registers: [registry],
  });
  for (const status of ANSWERED) requests.inc({ status }, 0);
  const latency = new Histogram({
    name: 'spillway_ingest_request_seconds',
    help: 'Time from the request reaching the function to its answer',
    buckets: [0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  return (res) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      requests.inc({ status: res.statusCode });
      latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    });
  };
}

/** Events are POSTed to /events (or /). */
function route(req: RawRequest): void {
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
}

/** Answers one event 202, or throws the HttpError that says why not. */
async function accept(parts: Parts, req: RawRequest, res: ServerResponse): Promise<void> {
  const { config, store, log } = parts;
  const admitted = admit(parts, req);
  const kept = replayed(admitted.draft.attributes, admitted.key?.replay === true);
  const now = Date.now();
  const entry = entryOf(admitted, kept, now);
  let outcome: AcceptOutcome;
  try {
    const caller = callerOf(req, admitted.key, admitted.body, config.trustedProxyHops);
    outcome = await store.accept(entry, caller, now, {
      idempotencyKey: admitted.idempotencyKey,
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
  answer(res, outcome, entry.source, config);
}

/** The request's key, its event, and whether there is room: what is checked before Redis. */
function admit(parts: Parts, req: RawRequest): Admitted {
  const { config, keys, memory } = parts;
  const key = keys.authorize(req);
  const body = req.rawBody ?? Buffer.alloc(0);
  const idempotencyKey = req.headers['idempotency-key'];
  if (typeof idempotencyKey === 'string' && (idempotencyKey === '' || idempotencyKey.length > 256))
    throw new ClientError('invalid_header', 'Idempotency-Key must be 1 to 256 characters');
  const draft = parseEvent(req.headers, body, config.defaultSource);
  // A key bound to sources posts only those: no tenant takes another's (source, id).
  const prefixes = key?.prefixes;
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
  return {
    key,
    draft,
    idempotencyKey: typeof idempotencyKey === 'string' ? idempotencyKey : undefined,
    body,
  };
}

/** The stream entry for an admitted event (its seq is the script's). */
function entryOf(admitted: Admitted, kept: ReturnType<typeof replayed>, now: number) {
  const { draft, idempotencyKey } = admitted;
  const attributes = draft.attributes ? attributesText(draft.attributes) : undefined;
  // a replayed entry keeps its own key (or none), not the replay's Idempotency-Key
  const key = kept.replayed ? kept.key : idempotencyKey;
  return {
    id: draft.id ?? uuidv7(),
    type: draft.type,
    source: draft.source,
    subject: draft.subject,
    time: draft.time ?? new Date(now).toISOString(),
    data: draft.data,
    ...(attributes !== undefined ? { attributes } : {}),
    ...(key !== undefined ? { key } : {}),
  };
}

/** The script's outcome as the answer: 202 (new, or a replay of the first), or why not. */
function answer(
  res: ServerResponse,
  outcome: AcceptOutcome,
  source: string,
  config: IngestConfig,
): void {
  switch (outcome.kind) {
    case 'ok':
      send(res, 202, { id: outcome.id, source, seq: outcome.seq });
      return;
    case 'dup':
      send(
        res,
        202,
        { id: outcome.id, source: outcome.source, seq: outcome.seq },
        { 'idempotent-replay': 'true' },
      );
      return;
    case 'reused':
      throw new ClientError(
        'idempotency_key_reused',
        'this Idempotency-Key was used for a different request; use a new key for a new event',
      );
    case 'disabled':
      throw new ClientError(
        'source_disabled',
        `source ${JSON.stringify(source)} is disabled by its settings`,
      );
    case 'rate':
      throw new ClientError(
        'rate_limited',
        `over ${outcome.limit} requests per second for this client`,
        {
          'retry-after': '1',
        },
      );
    case 'full':
      throw new HttpError(
        'backlog_full',
        `${outcome.backlog} events are waiting to be persisted (MAX_BACKLOG ${config.maxBacklog}); retry later`,
        { 'retry-after': String(config.backlogRetryAfterSec) },
      );
  }
}

/** Redis answers PONG within READY_CHECK_MS. */
async function answersPing(redis: Redis): Promise<boolean> {
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
