/**
 * Several worker processes of one function sharing its port (node:cluster), as
 * Knative runs several containers: a worker that dies is replaced, and the
 * primary serves their metrics, aggregated. SIGTERM/SIGINT stop every worker
 * (each finishes what is in flight) and then the primary.
 */
import cluster from 'node:cluster';
import { serveWorkersMetrics } from './metrics.js';

export function runWorkers(count: number, metrics: { host: string; port: number }): void {
  const server = serveWorkersMetrics(metrics.host, metrics.port);
  let stopping = false;
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
