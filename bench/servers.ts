/**
 * One benchmark server per process: `node dist/bench/servers.js <kind> <port>`.
 *
 *   bare       a bare node:http server answering 202: the machine's ceiling
 *   ff-noop    a Functions Framework no-op HTTP function on the framework's own
 *              server (getTestServer: the http.Server its CLI also builds)
 *   ff-ingest  the registered `ingest` function on the framework's own server
 *
 * (The lean host is not here: the bench runs dist/functions/host/main.js itself.)
 * Every server listens on 127.0.0.1 with a listen backlog of 65535 and the lean
 * host's keep-alive timeout (65 s), so paced VUs, which think up to 26 s, keep
 * their connections on every server alike.
 */
import { createServer, type Server } from 'node:http';

const BACKLOG = 65_535;
const NOOP_BODY = JSON.stringify({ id: 'noop', seq: 0 });

async function build(kind: string): Promise<Server> {
  switch (kind) {
    case 'bare': {
      const headers = {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(NOOP_BODY),
      };
      return createServer((req, res) => {
        req.resume();
        res.writeHead(202, headers);
        res.end(NOOP_BODY);
      });
    }
    case 'ff-noop': {
      const { http } = await import('@google-cloud/functions-framework');
      const { getTestServer } = await import('@google-cloud/functions-framework/testing');
      http('noop', (_req, res) => {
        res.status(202).send(NOOP_BODY);
      });
      return getTestServer('noop');
    }
    case 'ff-ingest': {
      const { ingest } = await import('../functions/ingest/index.js');
      const { getTestServer } = await import('@google-cloud/functions-framework/testing');
      // The framework's server has no readiness route: listen once Redis is ready.
      await ingest.whenReady?.(10_000);
      return getTestServer('ingest');
    }
    default:
      throw new Error(`unknown server kind ${JSON.stringify(kind)} (bare, ff-noop, ff-ingest)`);
  }
}

async function main(): Promise<void> {
  const [kind = '', portText = ''] = process.argv.slice(2);
  const port = Number(portText);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`bad port ${JSON.stringify(portText)}`);
  const server = await build(kind);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 120_000;
  // As the framework's CLI does (main.js): no socket inactivity timeout.
  server.setTimeout(0);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', BACKLOG, resolve);
  });
  process.stdout.write(`${kind} listening on 127.0.0.1:${port} (pid ${process.pid})\n`);
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
