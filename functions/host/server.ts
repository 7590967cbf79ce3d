/**
 * Serves one function in this process on a bare node:http server: health and
 * readiness for every function (one place), the body read under the function's
 * cap, then the function's wrapper. Why not the Functions Framework's own
 * server: it costs about 10x a bare server per request (Express), buffers bodies
 * up to 1024 MB before the function runs, and answers malformed JSON with an HTML
 * page. The same functions still run under `functions-framework --target=…`.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { RawRequest, SpillwayFunction } from '../shared/function.js';
import { HttpError, pathOf, send, sendError } from '../shared/http.js';
import { withBody } from './body.js';
import { serveOwnMetrics } from './metrics.js';
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

export async function serve(
  fn: SpillwayFunction,
  options: { port?: number; metrics?: boolean } = {},
): Promise<RunningServer> {
  const { config } = fn;
  const wrapped = withBody(
    config.maxBodyBytes,
    fn.signature === 'http' ? httpWrapper(fn) : cloudEventWrapper(fn),
  );
  let inFlight = 0;
  let stopping = false;
  let idle: (() => void) | undefined;
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
      inFlight++;
      if (stopping) res.setHeader('connection', 'close');
      res.once('close', () => {
        inFlight--;
        if (inFlight === 0) idle?.();
      });
      if (!health(fn, req, res)) wrapped(req, res);
    },
  );
  // A new process takes connections only once its backing services answer (bounded).
  await fn.whenReady?.(10_000);
  // A long accept queue for connection spikes (the kernel caps it at net.core.somaxconn).
  server.listen({ port: options.port ?? config.port, host: config.host, backlog: 65_535 });
  await new Promise((resolve) => server.once('listening', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const metricsServer =
    options.metrics === false
      ? undefined
      : serveOwnMetrics(config.host, config.metricsPort, fn.registry);

  async function stop(): Promise<void> {
    stopping = true;
    server.close();
    server.closeIdleConnections();
    // The function finishes what it holds while in-flight requests are answered
    // (persist's deliveries wait on its commits); both within the shutdown timeout.
    const drained = fn.drain?.() ?? Promise.resolve();
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
        timer = setTimeout(resolve, config.shutdownTimeoutMs + 1000);
      }),
    ]);
    clearTimeout(timer);
    server.closeAllConnections();
    metricsServer?.close();
    await fn.shutdown();
  }
  fn.log.info({ port, host: config.host, pid: process.pid }, 'serving');
  return { server, port, stop };
}
