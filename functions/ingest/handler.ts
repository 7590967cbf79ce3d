/**
 * The ingest HTTP function: validate, one Redis round trip (ingest-6.lua), 202.
 * It uses only node:http's request/response API plus `req.rawBody`, so it runs the
 * same under the Functions Framework (Express) and under Spillway's lean host.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import { Counter, Histogram, type Registry } from 'prom-client';
import { uuidv7 } from 'uuidv7';
import type { Logger } from '../shared/logger.js';
import type { IngestConfig } from './config.js';
import { ClientError, parseEvent } from './request.js';
import { EventStore } from './store.js';

export type IngestRequest = IncomingMessage & { rawBody?: Buffer; body?: unknown };

const JSON_HEADERS = { 'content-type': 'application/json' };
const EVENT_PATHS = new Set(['/', '/events']);

export interface Ingest {
  handle(req: IngestRequest, res: ServerResponse): Promise<void>;
  ready(): Promise<boolean>;
  store: EventStore;
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(
  res: ServerResponse,
  status: number,
  error: string,
  detail: string,
  headers: Record<string, string> = {},
) {
  send(res, status, { error, detail }, headers);
}

function pathOf(url: string | undefined): string {
  const q = (url ?? '/').indexOf('?');
  return q === -1 ? (url ?? '/') : (url ?? '/').slice(0, q);
}

const digest = (value: string) => createHash('sha256').update(value).digest();

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
  });
  const keyDigests = config.apiKeys.map(digest);

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

  /** The bearer token's digest when it is one of INGEST_API_KEYS; compared in constant time. */
  function authorize(req: IncomingMessage): Buffer | undefined {
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Bearer ')) return undefined;
    const presented = digest(header.slice(7).trim());
    let match = false;
    for (const known of keyDigests) match = timingSafeEqual(presented, known) || match;
    return match ? presented : undefined;
  }

  function clientOf(req: IncomingMessage, token: Buffer | undefined): string {
    if (token) return `key:${token.subarray(0, 8).toString('hex')}`;
    const forwarded = req.headers['x-forwarded-for'];
    const first = typeof forwarded === 'string' ? forwarded.split(',')[0]?.trim() : undefined;
    return `ip:${first || req.socket.remoteAddress || 'unknown'}`;
  }

  async function accept(req: IngestRequest, res: ServerResponse): Promise<number> {
    let token: Buffer | undefined;
    if (keyDigests.length > 0) {
      token = authorize(req);
      if (!token) {
        sendError(
          res,
          401,
          'unauthorized',
          'send a valid API key as "Authorization: Bearer <key>"',
          {
            'www-authenticate': 'Bearer',
          },
        );
        return 401;
      }
    }
    const body = req.rawBody ?? Buffer.alloc(0);
    if (body.length > config.maxBodyBytes) {
      sendError(
        res,
        413,
        'payload_too_large',
        `the body is larger than MAX_BODY_BYTES (${config.maxBodyBytes} bytes)`,
      );
      return 413;
    }
    const key = req.headers['idempotency-key'];
    if (typeof key === 'string' && (key === '' || key.length > 256)) {
      sendError(res, 400, 'invalid_header', 'Idempotency-Key must be 1 to 256 characters');
      return 400;
    }
    const draft = parseEvent(req.headers, body, config.defaultSource);
    const now = Date.now();
    const entry = {
      id: draft.id ?? uuidv7(),
      type: draft.type,
      source: draft.source,
      subject: draft.subject,
      time: draft.time ?? new Date(now).toISOString(),
      data: draft.data,
      ...(typeof key === 'string' ? { key } : {}),
    };
    let outcome: Awaited<ReturnType<EventStore['accept']>>;
    try {
      outcome = await store.accept(entry, clientOf(req, token), now);
    } catch (error) {
      log.warn({ err: error }, 'redis did not take the event');
      sendError(
        res,
        503,
        'unavailable',
        'the event store is unavailable; retry with the same Idempotency-Key',
        {
          'retry-after': '1',
        },
      );
      return 503;
    }
    switch (outcome.kind) {
      case 'ok':
      case 'dup':
        send(
          res,
          202,
          { id: outcome.id, seq: outcome.seq },
          outcome.kind === 'dup' ? { 'idempotent-replay': 'true' } : {},
        );
        return 202;
      case 'disabled':
        sendError(
          res,
          403,
          'source_disabled',
          `source ${JSON.stringify(entry.source)} is disabled by its settings`,
        );
        return 403;
      case 'rate':
        sendError(
          res,
          429,
          'rate_limited',
          `over ${outcome.limit} requests per second for this client`,
          { 'retry-after': '1' },
        );
        return 429;
      case 'full':
        sendError(
          res,
          503,
          'backlog_full',
          `${outcome.backlog} events are waiting to be persisted (MAX_BACKLOG ${config.maxBacklog}); retry later`,
          {
            'retry-after': String(config.backlogRetryAfterSec),
          },
        );
        return 503;
    }
  }

  async function ready(): Promise<boolean> {
    try {
      return (await redis.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async function handle(req: IngestRequest, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const path = pathOf(req.url);
    let status: number;
    try {
      if (EVENT_PATHS.has(path)) {
        if (req.method === 'POST') {
          status = await accept(req, res);
        } else {
          sendError(
            res,
            405,
            'method_not_allowed',
            `${req.method} is not allowed on ${path}; use POST`,
            { allow: 'POST' },
          );
          status = 405;
        }
      } else if (path === '/healthz' || path === '/readyz') {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          sendError(
            res,
            405,
            'method_not_allowed',
            `${req.method} is not allowed on ${path}; use GET`,
            { allow: 'GET' },
          );
          status = 405;
        } else if (path === '/healthz' || (await ready())) {
          send(res, 200, { status: 'ok' });
          status = 200;
        } else {
          sendError(res, 503, 'not_ready', 'Redis does not answer');
          status = 503;
        }
      } else {
        sendError(res, 404, 'not_found', `no route ${path}; post events to /events`);
        status = 404;
      }
    } catch (error) {
      if (error instanceof ClientError) {
        sendError(res, error.status, error.code, error.message);
        status = error.status;
      } else {
        log.error({ err: error }, 'ingest failed');
        if (!res.headersSent) sendError(res, 500, 'internal', 'ingest failed; see its log');
        status = 500;
      }
    }
    requests.inc({ status });
    latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  return { handle, ready, store };
}
