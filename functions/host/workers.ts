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
 */
import cluster from 'node:cluster';
import { serveWorkersMetrics } from './metrics.js';

export function runWorkers(count: number, metrics: { host: string; port: number }): void {
  const server = serveWorkersMetrics(metrics.host, metrics.port);
  let stopping = false;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  for (let i = 0; i < count; i++) cluster.fork();
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
