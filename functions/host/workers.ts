/**
 * Several worker processes of one function sharing its port (node:cluster), as
 * Knative runs several containers: a worker that dies is replaced, and the
 * primary serves their metrics, aggregated. SIGTERM/SIGINT stop every worker
 * (each finishes what is in flight) and then the primary.
 *
 * Each worker accepts its own connections from the shared socket
 * (SCHED_NONE), the way several containers behind one port would. The
 * primary's round-robin hand-off cannot keep up with a flood of new
 * connections while the workers are busy: it hands a worker one connection
 * per IPC round trip through that worker's event loop, and its own socket
 * listens with the default backlog of 511 whatever the server asked for
 * (node's lib/internal/cluster/round_robin_handle.js). Measured with the
 * flood's 10,000 VUs ramping in 10 s against three busy workers: connections
 * waited in the hand-off for up to 10 s before their first request was read,
 * and thousands of requests timed out, in waves as their VUs reconnected.
 * Sharing the socket, a worker takes the next connection at each turn of its
 * event loop (libuv accepts one a turn since v1.45, libuv/libuv#3696), and an
 * idle worker takes them first.
 *
 * One a turn is still too few when a turn serves hundreds of requests: a busy
 * worker's new connections waited in the kernel's queue while its open ones were
 * served (10,000 VUs ramping in 10 s: answers took up to 10 s). So each worker
 * listens on the socket through ACCEPTORS descriptors, each its own watcher in
 * the event loop, and takes up to that many new connections a turn: the worker
 * sends its descriptor to the primary, which sends it back ACCEPTORS − 1 times
 * (each passage over the IPC channel makes a new descriptor of the same socket)
 * without ever listening on it itself. Measured with two workers spending
 * 150 µs a request on 1,000 busy connections, 3,000 new connections opened over
 * 9 s: with one descriptor none was answered within 15 s; with 8 the slowest
 * took 3.6 s, with 32 under 1.7 s.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { serveWorkersMetrics } from './metrics.js';

/** Descriptors of the shared socket each worker accepts through. */
export const ACCEPTORS = 32;

interface AcceptorsMessage {
  spillway: 'acceptors';
  count: number;
}

function isAcceptorsMessage(message: unknown): message is AcceptorsMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { spillway?: unknown }).spillway === 'acceptors'
  );
}

/** The primary's side: sends the socket a worker sent back to it `count` times. */
function lendAcceptors(worker: Worker, message: unknown, handle: unknown): void {
  if (!isAcceptorsMessage(message) || !handle) return;
  const socket = handle as { close(): void };
  let left = message.count;
  const next = (error?: Error | null) => {
    if (error || left-- <= 0 || !worker.isConnected()) {
      socket.close();
      return;
    }
    worker.send(message, socket as never, next);
  };
  next();
}

/**
 * A worker's side: asks the primary for more descriptors of `server`'s socket
 * and hands every connection accepted through them to `server`. Returns what
 * stops them accepting.
 */
export function acceptThroughMore(server: Server): () => void {
  const extra: NetServer[] = [];
  let closed = false;
  process.on('message', (message: unknown, handle: unknown) => {
    if (!isAcceptorsMessage(message) || !handle) return;
    if (closed) {
      (handle as { close(): void }).close();
      return;
    }
    // As node:http's own server accepts: half-open allowed, no Nagle delay.
    const acceptor = createNetServer({ allowHalfOpen: true, noDelay: true }, (connection) =>
      server.emit('connection', connection),
    );
    acceptor.listen(handle);
    extra.push(acceptor);
  });
  // The listening socket itself, not a net.Server: the primary must not listen on it.
  const socket = (server as unknown as { _handle: unknown })._handle;
  process.send?.(
    { spillway: 'acceptors', count: ACCEPTORS - 1 } satisfies AcceptorsMessage,
    socket as never,
  );
  return () => {
    closed = true;
    for (const acceptor of extra) acceptor.close();
  };
}

export function runWorkers(count: number, metrics: { host: string; port: number }): void {
  const server = serveWorkersMetrics(metrics.host, metrics.port);
  let stopping = false;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  for (let i = 0; i < count; i++) cluster.fork();
  cluster.on('message', lendAcceptors);
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      process.stderr.write(
        `worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); starting another\n`,
      );
      cluster.fork();
    } else if (Object.keys(cluster.workers ?? {}).length === 0) {
      server.close();
      process.exit(0);
    }
  });
  const stopAll = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stopAll);
  process.on('SIGINT', stopAll);
}
