/**
 * Prometheus metrics on their own port (METRICS_PORT), never on the public
 * route. With several worker processes, the primary serves the workers'
 * metrics, aggregated (prom-client's AggregatorRegistry over node:cluster).
 */
import cluster from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, type Registry } from 'prom-client';

// An AggregatorRegistry made in a worker is what makes it answer the primary's metrics requests.
const workerAggregator = cluster.isWorker ? new AggregatorRegistry() : undefined;

function serve(
  host: string,
  port: number,
  metrics: () => Promise<string>,
  contentType: string,
): Server {
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
  server.listen(port, host);
  return server;
}

/**
 * A process's own metrics: served on the port in a single process; in a worker,
 * handed to the primary's aggregator instead (undefined is returned).
 */
export function serveOwnMetrics(
  host: string,
  port: number,
  registry: Registry,
): Server | undefined {
  if (workerAggregator) {
    AggregatorRegistry.setRegistries([registry]);
    return undefined;
  }
  return serve(host, port, () => registry.metrics(), registry.contentType);
}

/** The primary of several workers: their metrics, aggregated. */
export function serveWorkersMetrics(host: string, port: number): Server {
  const aggregator = new AggregatorRegistry();
  return serve(host, port, () => aggregator.clusterMetrics(), aggregator.contentType);
}
