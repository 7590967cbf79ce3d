/**
 * `npm start`: the whole pipeline on one machine. Ensures Redis and the database
 * (scripts/services.sh; they are detached and keep running until `npm run
 * services:stop`), then runs persist, the local relay and ingest (INGEST_WORKERS
 * processes, 3 by default, like min-scale 3) under a supervisor that restarts
 * whatever dies, prints the URLs and a status line whenever the figures change.
 *
 * Ctrl-C (SIGINT) or SIGTERM stops ingest first (no new events), then the relay
 * and persist together (persist commits what it holds within its
 * SHUTDOWN_TIMEOUT_MS and leaves the rest in the stream); each is killed if it
 * overruns. A second
 * Ctrl-C kills everything at once. Whatever is still in the stream is persisted
 * by the sweeper or catch-up at the next start.
 */
import { MongoClient } from 'mongodb';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { createRedis } from '../functions/shared/redis/client.js';
import { readPart } from '../functions/shared/settings.js';
import { serverWriteCommands } from './db-writes.js';
import { ensureServices } from './services-env.js';
import { Supervisor } from './supervisor.js';

interface PipelineOptions {
  host: string;
  ingestPort: number;
  persistPort: number;
  ingestMetricsPort: number;
  persistMetricsPort: number;
  ingestWorkers: number;
  persistWorkers: number;
  streamKey: string;
  /** Each child's SHUTDOWN_TIMEOUT_MS: how long it may take to finish what it holds. */
  shutdownTimeoutMs: number;
}

function loadPipelineOptions(env = process.env): PipelineOptions {
  const settings = readPart('pipeline', env, { INGEST_WORKERS: 3 });
  return {
    host: settings.host,
    ingestPort: settings.port,
    persistPort: settings.persistPort || settings.port + 1,
    ingestMetricsPort: settings.metricsPort,
    persistMetricsPort: settings.persistMetricsPort || settings.metricsPort + 1,
    ingestWorkers: settings.ingestWorkers,
    persistWorkers: settings.persistWorkers,
    streamKey: settings.streamKey,
    shutdownTimeoutMs: settings.shutdownTimeoutMs,
  };
}

const say = (line: string) => process.stderr.write(`pipeline: ${line}\n`);

/** Sums the values of every series matching `pattern` on a Prometheus endpoint (NaN when down). */
async function scrape(url: string, pattern: RegExp): Promise<number> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(1000) })).text();
    let total = 0;
    for (const m of text.matchAll(pattern)) total += Number(m[1]);
    return total;
  } catch {
    return Number.NaN;
  }
}

async function main(): Promise<void> {
  const options = loadPipelineOptions();
  const services = ensureServices();
  const local = '127.0.0.1';
  const common = {
    ...services,
    HOST: options.host,
    SHUTDOWN_TIMEOUT_MS: String(options.shutdownTimeoutMs),
  };
  // A child that overruns its own shutdown timeout is killed a little later.
  const stopTimeoutMs = options.shutdownTimeoutMs + 5000;
  let exitCode = 0;
  let stopping: Promise<void> | undefined;

  const supervisor = new Supervisor({
    maxRestarts: 5,
    restartWindowMs: 60_000,
    firstDelayMs: 250,
    maxDelayMs: 8000,
    readyTimeoutMs: 60_000,
    log: say,
    onGiveUp: (_name, reason) => {
      say(`stopping the pipeline: ${reason}`);
      exitCode = 1;
      void stop();
    },
  });
  const host = new URL('../functions/host/main.js', import.meta.url);
  const relay = new URL('../eventing/relay/main.js', import.meta.url);
  const typed = (url: URL) =>
    import.meta.url.endsWith('.ts') ? new URL(url.href.replace(/\.js$/, '.ts')) : url;

  let statusTimer: NodeJS.Timeout | undefined;
  const redis = createRedis(services.REDIS_URL as string, { enableOfflineQueue: false });
  redis.on('error', () => undefined); // the status line shows Redis as down
  const mongo = new MongoClient(services.MONGODB_URL as string, {
    serverSelectionTimeoutMS: 1000,
  });

  function stop(): Promise<void> {
    stopping ??= (async () => {
      clearInterval(statusTimer);
      say('stopping: ingest, then the relay and persist (it commits what it holds)');
      // Ingest first (no new events); then the relay and persist together: persist
      // commits what it holds while the relay's last deliveries end.
      await supervisor.stopAll([['ingest'], ['relay', 'persist']]);
      redis.disconnect();
      await mongo.close(true).catch(() => undefined);
      say('stopped');
      process.exit(exitCode);
    })();
    return stopping;
  }
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) {
      say('second signal: killing every process now');
      supervisor.killAll();
      process.exit(130);
    }
    void stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await supervisor.start({
      name: 'persist',
      entry: typed(host),
      env: {
        ...common,
        FUNCTION_TARGET: 'persist',
        PERSIST_WORKERS: String(options.persistWorkers),
        PORT: String(options.persistPort),
        METRICS_PORT: String(options.persistMetricsPort),
      },
      readyUrl: `http://${local}:${options.persistPort}/readyz`,
      stopTimeoutMs,
    });
    await supervisor.start({
      name: 'relay',
      entry: typed(relay),
      env: { ...common, PERSIST_URL: `http://${local}:${options.persistPort}/` },
      stopTimeoutMs,
    });
    await supervisor.start({
      name: 'ingest',
      entry: typed(host),
      env: {
        ...common,
        FUNCTION_TARGET: 'ingest',
        PORT: String(options.ingestPort),
        METRICS_PORT: String(options.ingestMetricsPort),
        INGEST_WORKERS: String(options.ingestWorkers),
      },
      readyUrl: `http://${local}:${options.ingestPort}/readyz`,
      stopTimeoutMs,
    });
  } catch (error) {
    say(`could not start: ${(error as Error).message}`);
    exitCode = 1;
    await stop();
    return;
  }

  const shown = options.host === '0.0.0.0' ? local : options.host;
  process.stdout.write(
    [
      '',
      `ingest   http://${shown}:${options.ingestPort}/events   (${options.ingestWorkers} workers; metrics :${options.ingestMetricsPort}/metrics)`,
      `persist  http://${shown}:${options.persistPort}/         (${options.persistWorkers} workers, one write budget; metrics :${options.persistMetricsPort}/metrics)`,
      `redis    ${services.REDIS_URL}   stream ${options.streamKey}`,
      `mongodb  ${services.MONGODB_URL}  database spillway`,
      '',
      `try: curl -i -X POST http://${shown}:${options.ingestPort}/events -H 'content-type: application/json' -d '{"type":"demo","data":{"hello":"world"}}'`,
      '',
    ].join('\n'),
  );

  const ingestMetrics = `http://${local}:${options.ingestMetricsPort}/metrics`;
  const persistMetrics = `http://${local}:${options.persistMetricsPort}/metrics`;
  let last: { accepted: number; persisted: number; writes: number } | undefined;
  let lastLine = '';
  async function status(): Promise<void> {
    const [accepted, persisted, dead, writes, backlog] = await Promise.all([
      scrape(ingestMetrics, /^spillway_ingest_requests_total\{status="202"\} (\d+)/gm),
      scrape(persistMetrics, /^spillway_persist_events_total\{[^}]*\} (\d+)/gm),
      scrape(persistMetrics, /^spillway_persist_dead_letters_total (\d+)/gm),
      serverWriteCommands(mongo, services.DB_METRICS_URL).catch(() => Number.NaN),
      redis.xlen(options.streamKey).catch(() => Number.NaN),
    ]);
    if (last) {
      const rate = (now: number, before: number) =>
        Number.isNaN(now - before) ? '?' : String(now - before);
      const line = `accepted/s ${rate(accepted, last.accepted)}  backlog ${Number.isNaN(backlog) ? 'redis down' : backlog}  persisted/s ${rate(persisted, last.persisted)}  db writes/s ${rate(writes, last.writes)}  dead letters ${Number.isNaN(dead) ? '?' : dead}`;
      // Only when something changed: an idle pipeline prints nothing.
      if (line !== lastLine)
        process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${line}\n`);
      lastLine = line;
    }
    last = { accepted, persisted, writes };
  }
  statusTimer = setInterval(() => void status(), 1000);
}

runIfEntryPoint(import.meta.url, 'pipeline', main);
