/**
 * Spillway's lean host for its Functions Framework functions.
 *
 * `FUNCTION_TARGET=ingest|persist node dist/functions/host.js` imports the module
 * that registers the function (`http('ingest', …)` / `cloudEvent('persist', …)`),
 * takes the registered function from the Functions Framework's registry, and
 * serves it on a bare node:http server. Why not the framework's own server: it
 * costs about 10× a bare server per request (Express), buffers bodies up to
 * 1024 MB before the function runs, and answers malformed JSON with an HTML page.
 * This host reads at most the function's body cap, hands the raw body to the
 * function, and leaves every answer to it. The same functions still run under
 * `functions-framework --target=…`.
 *
 * INGEST_WORKERS > 1 forks that many worker processes sharing the port (node:cluster);
 * the primary then serves the workers' metrics, aggregated, on METRICS_PORT.
 */
import cluster from 'node:cluster';
import { realpathSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { pathToFileURL } from 'node:url';
import { getFunction } from '@google-cloud/functions-framework/testing';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { ConfigError, EnvReader } from './shared/env.js';

/** The command the local pipeline and the container image both run. */
export const START_COMMAND = ['node', 'dist/functions/host.js'] as const;

const TARGETS = {
  ingest: {
    module: './ingest/index.js',
    signature: 'http',
    defaultPort: 8080,
    defaultMetricsPort: 9090,
  },
  persist: {
    module: './persist/index.js',
    signature: 'cloudevent',
    defaultPort: 8081,
    defaultMetricsPort: 9091,
  },
} as const;
type Target = keyof typeof TARGETS;

/** What a function module exports besides registering its function. */
interface FunctionModule {
  config: { port: number; metricsPort: number; shutdownTimeoutMs: number };
  registry: Registry;
  maxBodyBytes: number;
  log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void };
  ready(): Promise<boolean>;
  /** Resolves once the function's backing services answer (bounded); listening starts then. */
  whenReady?(timeoutMs: number): Promise<void>;
  /** Finishes the work the function holds (bounded by its shutdown timeout). */
  drain?(): Promise<void>;
  shutdown(): Promise<void>;
}

type RawRequest = IncomingMessage & { rawBody?: Buffer };
type Handler = (req: RawRequest, res: ServerResponse) => Promise<void> | void;
type CloudEventHandler = (event: Record<string, unknown>) => Promise<void> | void;

const EMPTY = Buffer.alloc(0);

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function tooLarge(res: ServerResponse, maxBodyBytes: number) {
  // Close the connection: the rest of the body is never read.
  json(
    res,
    413,
    {
      error: 'payload_too_large',
      detail: `the body is larger than MAX_BODY_BYTES (${maxBodyBytes} bytes)`,
    },
    { connection: 'close' },
  );
}

/** Reads the body (at most maxBodyBytes) into req.rawBody, then runs next; a larger body gets 413. */
function withBody(maxBodyBytes: number, next: (req: RawRequest, res: ServerResponse) => void) {
  return (req: RawRequest, res: ServerResponse) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBodyBytes)
      return tooLarge(res, maxBodyBytes);
    if (
      declared === '0' ||
      (declared === undefined && req.headers['transfer-encoding'] === undefined)
    ) {
      req.rawBody = EMPTY;
      return next(req, res);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > maxBodyBytes) {
        over = true;
        tooLarge(res, maxBodyBytes);
        req.pause();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) return;
      req.rawBody = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      next(req, res);
    });
  };
}

/** A CloudEvent from an HTTP request in binary or structured mode, as a plain object. */
export function cloudEventFromRequest(req: RawRequest): Record<string, unknown> {
  const body = req.rawBody ?? EMPTY;
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (req.headers['ce-specversion'] === undefined) {
    if (type !== 'application/cloudevents+json')
      throw new Error(
        'not a CloudEvent: no ce-specversion header and not application/cloudevents+json',
      );
    const event = JSON.parse(body.toString('utf8')) as unknown;
    if (typeof event !== 'object' || event === null || Array.isArray(event))
      throw new Error('structured CloudEvent is not a JSON object');
    return event as Record<string, unknown>;
  }
  const event: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('ce-') && typeof value === 'string') event[name.slice(3)] = value;
  }
  if (type !== '') event.datacontenttype = req.headers['content-type'];
  if (body.length > 0) {
    event.data =
      type === 'application/json' || type.endsWith('+json') ? body.toString('utf8') : body;
  }
  return event;
}

function health(mod: FunctionModule, req: RawRequest, res: ServerResponse): boolean {
  if (req.method !== 'GET') return false;
  if (req.url === '/healthz') {
    json(res, 200, { status: 'ok' });
    return true;
  }
  if (req.url === '/readyz') {
    mod.ready().then(
      (ok) =>
        ok
          ? json(res, 200, { status: 'ok' })
          : json(res, 503, { error: 'not_ready', detail: 'a backing service does not answer' }),
      () => json(res, 503, { error: 'not_ready', detail: 'readiness check failed' }),
    );
    return true;
  }
  return false;
}

function listenerFor(target: Target, mod: FunctionModule) {
  const fn = getFunction(target);
  if (!fn)
    throw new Error(`module ${TARGETS[target].module} registered no function named ${target}`);
  const fail = (res: ServerResponse, error: unknown) => {
    mod.log.error({ err: error }, 'function failed');
    if (!res.headersSent)
      json(res, 500, { error: 'internal', detail: 'the function failed; see its log' });
    else res.destroy();
  };
  if (TARGETS[target].signature === 'http') {
    const handler = fn as unknown as Handler;
    return withBody(mod.maxBodyBytes, (req, res) => {
      try {
        const done = handler(req, res);
        if (done instanceof Promise) done.catch((error) => fail(res, error));
      } catch (error) {
        fail(res, error);
      }
    });
  }
  const handler = fn as unknown as CloudEventHandler;
  const deliver = withBody(mod.maxBodyBytes, (req, res) => {
    let event: Record<string, unknown>;
    try {
      event = cloudEventFromRequest(req);
    } catch (error) {
      json(res, 400, { error: 'invalid_cloudevent', detail: (error as Error).message });
      return;
    }
    Promise.resolve()
      .then(() => handler(event))
      .then(
        () => {
          res.writeHead(204);
          res.end();
        },
        (error: { status?: number; message?: string }) => {
          const status = typeof error?.status === 'number' ? error.status : 500;
          if (status >= 500) mod.log.error({ err: error }, 'delivery not persisted');
          json(res, status, {
            error: status >= 500 ? 'not_persisted' : 'rejected',
            detail: String(error?.message ?? error),
          });
        },
      );
  });
  return (req: RawRequest, res: ServerResponse) => {
    if (health(mod, req, res)) return;
    if (req.method !== 'POST')
      return json(
        res,
        405,
        { error: 'method_not_allowed', detail: 'deliver CloudEvents with POST' },
        { allow: 'POST' },
      );
    deliver(req, res);
  };
}

// An AggregatorRegistry made in a worker is what makes it answer the primary's metrics requests.
const workerAggregator = cluster.isWorker ? new AggregatorRegistry() : undefined;

export interface RunningHost {
  server: Server;
  port: number;
  /** Stops accepting, answers what is in flight, then stops the function's clients. */
  stop(): Promise<void>;
}

/** Serves one function in this process. */
export async function serve(
  target: Target,
  options: { port?: number; metrics?: boolean } = {},
): Promise<RunningHost> {
  const mod = (await import(TARGETS[target].module)) as FunctionModule;
  const listener = listenerFor(target, mod);
  let inFlight = 0;
  let stopping = false;
  let idle: (() => void) | undefined;
  const server = createServer(
    { keepAliveTimeout: 65_000, headersTimeout: 66_000, requestTimeout: 120_000 },
    (req, res) => {
      inFlight++;
      if (stopping) res.setHeader('connection', 'close');
      res.once('close', () => {
        inFlight--;
        if (inFlight === 0) idle?.();
      });
      listener(req, res);
    },
  );
  await mod.whenReady?.(10_000);
  // A long accept queue for connection spikes (the kernel caps it at net.core.somaxconn).
  server.listen({ port: options.port ?? mod.config.port, host: '0.0.0.0', backlog: 65_535 });
  await new Promise((resolve) => server.once('listening', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  let metricsServer: Server | undefined;
  if (options.metrics !== false) {
    if (workerAggregator) {
      AggregatorRegistry.setRegistries([mod.registry]);
    } else {
      metricsServer = serveMetrics(
        mod.config.metricsPort,
        () => mod.registry.metrics(),
        mod.registry.contentType,
      );
    }
  }

  async function stop(): Promise<void> {
    stopping = true;
    server.close();
    server.closeIdleConnections();
    // The function finishes what it holds while in-flight requests are answered
    // (persist's deliveries wait on its commits); both within the shutdown timeout.
    const drained = mod.drain?.() ?? Promise.resolve();
    const answered =
      inFlight === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            idle = resolve;
          });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([drained, answered]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, mod.config.shutdownTimeoutMs + 1000);
      }),
    ]);
    clearTimeout(timer);
    server.closeAllConnections();
    metricsServer?.close();
    await mod.shutdown();
  }
  mod.log.info({ target, port, pid: process.pid }, 'serving');
  return { server, port, stop };
}

function serveMetrics(port: number, metrics: () => Promise<string>, contentType: string): Server {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics().then(
      (text) => res.writeHead(200, { 'content-type': contentType }).end(text),
      (error: Error) => res.writeHead(500).end(error.message),
    );
  });
  server.listen(port, '0.0.0.0');
  return server;
}

async function main(): Promise<void> {
  const reader = new EnvReader();
  const target = reader.oneOf('FUNCTION_TARGET', 'ingest', Object.keys(TARGETS) as Target[]);
  const workers = target === 'ingest' ? reader.int('INGEST_WORKERS', 1, 1, 64) : 1;

  if (workers > 1 && cluster.isPrimary) {
    const metricsPort = reader.int('METRICS_PORT', TARGETS[target].defaultMetricsPort, 0, 65535);
    const aggregator = new AggregatorRegistry();
    const metrics = serveMetrics(
      metricsPort,
      () => aggregator.clusterMetrics(),
      aggregator.contentType,
    );
    let stopping = false;
    for (let i = 0; i < workers; i++) cluster.fork();
    cluster.on('exit', (worker, code) => {
      if (!stopping) {
        process.stderr.write(
          `worker ${worker.process.pid} exited with ${code}; starting another\n`,
        );
        cluster.fork();
      } else if (Object.keys(cluster.workers ?? {}).length === 0) {
        metrics.close();
        process.exit(0);
      }
    });
    const stopAll = () => {
      stopping = true;
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    };
    process.on('SIGTERM', stopAll);
    process.on('SIGINT', stopAll);
    return;
  }

  const host = await serve(target);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    host.stop().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`stop failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const entry = process.argv[1];
if (entry !== undefined && pathToFileURL(realpathSync(entry)).href === import.meta.url) {
  main().catch((error: unknown) => {
    const message =
      error instanceof ConfigError
        ? `configuration error: ${error.message}`
        : String((error as Error)?.stack ?? error);
    process.stderr.write(`${message}\n`);
    process.exit(1);
  });
}
