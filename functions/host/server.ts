/**
 * Serves one function in this process on a bare node:http server: health and
 * readiness for every function (one place), the body read under the function's
 * cap, then the function's wrapper. Why not the Functions Framework's own
 * server: it costs about 10x a bare server per request (Express), buffers bodies
 * up to 1024 MB before the function runs, and answers malformed JSON with an HTML
 * page. The same functions still run under `functions-framework --target=…`.
 */
import cluster from 'node:cluster';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { RawRequest, SpillwayFunction } from '../shared/function.js';
import { HttpError, pathOf, send, sendError } from '../shared/http.js';
import { withBody } from './body.js';
import { serveOwnMetrics } from './metrics.js';
import { acceptThroughMore } from './workers.js';
import { cloudEventWrapper, httpWrapper } from './wrappers.js';

export interface RunningServer {
  server: Server;
  port: number;
  /** Stops accepting, lets the function finish what it holds, answers what is in flight, closes. */
  stop(): Promise<void>;
}

/** GET/HEAD /healthz (the process runs) and /readyz (its backing services answer). */
function health(fn: SpillwayFunction, req: RawRequest, res: ServerResponse): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const path = pathOf(req.url);
  if (path === '/healthz') {
    send(res, 200, { status: 'ok' });
    return true;
  }
  if (path === '/readyz') {
    fn.ready().then(
      (ok) =>
        ok
          ? send(res, 200, { status: 'ok' })
          : sendError(res, new HttpError('not_ready', 'a backing service does not answer')),
      () => sendError(res, new HttpError('not_ready', 'the readiness check failed')),
    );
    return true;
  }
  return false;
}

/** Counts the requests in flight, and tells when the last one is answered. */
class InFlight {
  private count = 0;
  private idle: (() => void) | undefined;
  stopping = false;

  track(res: ServerResponse): void {
    this.count++;
    if (this.stopping) res.setHeader('connection', 'close');
    res.once('close', () => {
      this.count--;
      if (this.count === 0) this.idle?.();
    });
  }

  /** Resolves once nothing is in flight. */
  answered(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idle = resolve;
    });
  }
}

export async function serve(
  fn: SpillwayFunction,
  options: { port?: number; metrics?: boolean } = {},
): Promise<RunningServer> {
  const { config } = fn;
  const wrapped = withBody(
    config.maxBodyBytes,
    fn.signature === 'http' ? httpWrapper(fn) : cloudEventWrapper(fn),
  );
  const inFlight = new InFlight();
  // A client that trickles its headers or body holds a socket, never a worker (the
  // event loop goes on), and only until HEADERS_TIMEOUT_MS / REQUEST_TIMEOUT_MS:
  // the server checks every second and closes it then.
  const server = createServer(
    {
      keepAliveTimeout: 65_000,
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: 1000,
    },
    (req, res) => {
      inFlight.track(res);
      if (!health(fn, req, res)) wrapped(req, res);
    },
  );
  // A new process takes connections only once its backing services answer (bounded).
  await fn.whenReady?.(10_000);
  // A long accept queue for connection spikes (the kernel caps it at net.core.somaxconn).
  server.listen({ port: options.port ?? config.port, host: config.host, backlog: 65_535 });
  await new Promise((resolve) => server.once('listening', resolve));
  const stopAccepting = cluster.isWorker ? acceptThroughMore(server) : () => {};
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const metricsServer =
    options.metrics === false
      ? undefined
      : serveOwnMetrics(config.host, config.metricsPort, fn.registry);
  fn.log.info({ port, host: config.host, pid: process.pid }, 'serving');
  const stop = async () => {
    inFlight.stopping = true;
    stopAccepting();
    await stopServing(fn, server, inFlight);
    metricsServer?.close();
    await fn.shutdown();
  };
  return { server, port, stop };
}

/**
 * Stops accepting; the function finishes what it holds while in-flight requests
 * are answered (persist's deliveries wait on its commits), both within the
 * shutdown timeout; then every connection is closed.
 */
async function stopServing(fn: SpillwayFunction, server: Server, inFlight: InFlight) {
  server.close();
  server.closeIdleConnections();
  const drained = fn.drain?.() ?? Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([drained, inFlight.answered()]),
    new Promise((resolve) => {
      timer = setTimeout(resolve, fn.config.shutdownTimeoutMs + 1000);
    }),
  ]);
  clearTimeout(timer);
  server.closeAllConnections();
}
