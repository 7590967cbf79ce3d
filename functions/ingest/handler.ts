/**
 * The ingest HTTP function: validate, one Redis round trip (ingest-7n.lua), 202
 * with the event's receipt (or, when the client prefers to wait, 201 once it
 * is committed); and the receipts' status monitor (monitor.ts). It uses only
 * node:http's request/response API plus `req.rawBody`, so it runs the same
 * under the Functions Framework (Express) and under Spillway's lean host (which
 * also serves /healthz and /readyz for it). It answers only its successes:
 * every refusal is an HttpError it throws, which the one wrapper of both
 * (functions/shared/answer.ts) answers, as it enforces MAX_BODY_BYTES.
 */
import type { ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { uuidv7 } from 'uuidv7';
import { attributesText } from '../shared/document.js';
import type { RawRequest } from '../shared/function.js';
import { ClientError, HttpError, pathOf } from '../shared/http.js';
import type { Logger } from '../shared/logger.js';
import { Scripts } from '../shared/redis/scripts.js';
import { READY_CHECK_MS, within } from '../shared/time.js';
import { backlogFull, drainTooLong } from './backlog.js';
import { ApiKeys, callerOf, type Key } from './caller.js';
import type { IngestConfig } from './config.js';
import { MemoryGauge } from './memory.js';
import { receiptMetrics, requestMetrics } from './metrics.js';
import { answerAccepted, monitor, type Parts, RECEIPT_PATH } from './monitor.js';
import { Receipts, receiptSecrets } from './receipts.js';
import { type EventDraft, parseEvent } from './request.js';
import { type AcceptOutcome, type Caller, EventStore } from './store.js';
import { Waiters } from './waiters.js';

/** Where events are posted; `/` is an alias of `/events`. */
const EVENT_PATHS = new Set(['/', '/events']);

export interface Ingest {
  /** Answers 2xx, or throws the HttpError that says why not (the host, or answer.ts, sends it). */
  handle(req: RawRequest, res: ServerResponse): Promise<void>;
  ready(): Promise<boolean>;
  store: EventStore;
  receipts: Receipts;
  /** Requests waiting for their commit (`Prefer: wait`); started here, stop() closes its connection. */
  waiters: Waiters;
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

/** The script's outcome once the stream exists (append() makes it when it does not). */
type Appended = Exclude<AcceptOutcome, { kind: 'nostream' }>;

/** What admission found: who posts which event, under which key. */
interface Admitted {
  key: Key | undefined;
  draft: EventDraft;
  idempotencyKey: string | undefined;
  body: Buffer;
}

export function createIngestHandler(
  config: IngestConfig,
  redis: Redis,
  registry: Registry,
  log: Logger,
): Ingest {
  const scripts = new Scripts(redis, { timeoutMs: config.redisTimeoutMs });
  const ttlMs = config.idempotencyTtlSec * 1000;
  const store = new EventStore(scripts, {
    streamKey: config.streamKey,
    idempotencyTtlMs: ttlMs,
    rateLimitPerSec: config.rateLimitPerSec,
    maxBacklog: config.maxBacklog,
    maxDrainSec: config.maxDrainSec,
    sequenceTtlMs: config.seqTtlSec * 1000,
    countersTtlMs: config.countersTtlSec * 1000,
  });
  const { streamKey, maxWaiters } = config;
  const secrets = receiptSecrets(config.receiptSecret);
  const receipts = new Receipts(redis, scripts, {
    streamKey,
    ttlMs,
    secrets,
    timeoutMs: config.redisTimeoutMs,
    log,
  });
  const waiters = new Waiters(redis, { streamKey, maxWaiters, log });
  waiters.start();
  const keys = new ApiKeys(config.ingestApiKeys, config.ingestReplayKeys);
  const memory = new MemoryGauge(redis, config.maxRedisMemoryPct);
  memory.start();
  const metrics = receiptMetrics(registry, () => waiters.size);
  const parts: Parts = { config, store, receipts, waiters, keys, memory, metrics, log };
  const observe = requestMetrics(registry);
  return {
    async handle(req, res) {
      observe(res);
      const receipt = route(req);
      if (receipt === undefined) await accept(parts, req, res);
      else await monitor(parts, req, res, receipt);
    },
    ready: () => answersPing(redis),
    store,
    receipts,
    waiters,
    memory,
  };
}

/**
 * Events are POSTed to /events (or /); a receipt's status is read with GET (or
 * HEAD) on /receipts/<receipt>, whose receipt is returned.
 */
function route(req: RawRequest): string | undefined {
  const path = pathOf(req.url);
  if (path.startsWith(RECEIPT_PATH)) {
    if (req.method === 'GET' || req.method === 'HEAD') return path.slice(RECEIPT_PATH.length);
    throw new ClientError(
      'method_not_allowed',
      `${req.method} is not allowed on ${path}; use GET`,
      { allow: 'GET, HEAD' },
    );
  }
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
  return undefined;
}

/** Answers one event 202 (or 201), or throws the HttpError that says why not. */
async function accept(parts: Parts, req: RawRequest, res: ServerResponse): Promise<void> {
  const { config } = parts;
  const admitted = admit(parts, req);
  const kept = replayed(admitted.draft.attributes, admitted.key?.replay === true);
  const now = Date.now();
  const entry = entryOf(admitted, kept, now);
  const caller = callerOf(req, admitted.key, admitted.body, config.trustedProxyHops);
  const outcome = await append(parts, entry, caller, now, {
    idempotencyKey: admitted.idempotencyKey,
    seq: kept.seq,
  });
  await answer(parts, req, res, outcome, entry.source, caller.scope);
}

/**
 * The script's outcome: run only after this connection's epoch check (a Redis
 * restored from an older AOF is recorded before anything is appended), and
 * once more after making a stream that did not exist (with its marker).
 */
async function append(
  parts: Parts,
  entry: ReturnType<typeof entryOf>,
  caller: Caller,
  now: number,
  request: { idempotencyKey: string | undefined; seq: number | undefined },
): Promise<Appended> {
  const { store, receipts, log } = parts;
  try {
    await receipts.ready();
    let outcome = await store.accept(entry, caller, now, request);
    if (outcome.kind === 'nostream') {
      await receipts.create();
      outcome = await store.accept(entry, caller, now, request);
    }
    if (outcome.kind === 'nostream')
      throw new Error('the stream was deleted again while it was made');
    return outcome;
  } catch (error) {
    log.warn({ err: error }, 'redis did not take the event');
    throw new HttpError(
      'unavailable',
      'the event store is unavailable; retry with the same Idempotency-Key',
      { 'retry-after': '1' },
    );
  }
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

/** The script's outcome as the answer: 202 or 201 (new, or a replay of the first), or why not. */
async function answer(
  parts: Parts,
  req: RawRequest,
  res: ServerResponse,
  outcome: Appended,
  source: string,
  scope: string,
): Promise<void> {
  const { config } = parts;
  switch (outcome.kind) {
    case 'ok':
      await answerAccepted(parts, req, res, { ...outcome, source }, scope, {});
      return;
    case 'dup':
      await answerAccepted(parts, req, res, outcome, scope, { 'idempotent-replay': 'true' });
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
      throw backlogFull(outcome.backlog, outcome.rate, config);
    case 'drain':
      throw drainTooLong(outcome.backlog, outcome.rate ?? 0, config);
    default: {
      const unhandled: never = outcome;
      throw new Error(`no answer for the outcome ${JSON.stringify(unhandled)}`);
    }
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
