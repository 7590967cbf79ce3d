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
 *
 * With STATUS_FILE, it writes its status there as data whenever it changes
 * (ready, its pid, each child's pid and readiness, the URLs): tools and tests
 * read that, not the lines printed for people.
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { createRedis } from '../functions/shared/redis/client.js';
import { readPart } from '../functions/shared/settings.js';
import { writeStatus } from '../functions/shared/status.js';
import { serverWriteCommands } from './db-writes.js';
import { ensureServices } from './services-env.js';
import { type ChildSpec, Supervisor } from './supervisor.js';

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
  statusFile: string;
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
    statusFile: settings.statusFile,
  };
}

const say = (line: string) => process.stderr.write(`pipeline: ${line}\n`);
const LOCAL = '127.0.0.1';

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

/** The three children, in the order they start: persist, the relay, ingest. */
function childSpecs(options: PipelineOptions, services: Record<string, string>): ChildSpec[] {
  const common = {
    ...services,
    HOST: options.host,
    SHUTDOWN_TIMEOUT_MS: String(options.shutdownTimeoutMs),
    // The children's own status files would be the pipeline's: none.
    STATUS_FILE: '',
  };
  // A child that overruns its own shutdown timeout is killed a little later.
  const stopTimeoutMs = options.shutdownTimeoutMs + 5000;
  const typed = (url: URL) =>
    import.meta.url.endsWith('.ts') ? new URL(url.href.replace(/\.js$/, '.ts')) : url;
  const host = typed(new URL('../functions/host/main.js', import.meta.url));
  const relay = typed(new URL('../eventing/relay/main.js', import.meta.url));
  return [
    {
      name: 'persist',
      entry: host,
      env: {
        ...common,
        FUNCTION_TARGET: 'persist',
        PERSIST_WORKERS: String(options.persistWorkers),
        PORT: String(options.persistPort),
        METRICS_PORT: String(options.persistMetricsPort),
      },
      readyUrl: `http://${LOCAL}:${options.persistPort}/readyz`,
      stopTimeoutMs,
    },
    {
      name: 'relay',
      entry: relay,
      env: { ...common, PERSIST_URL: `http://${LOCAL}:${options.persistPort}/` },
      stopTimeoutMs,
    },
    {
      name: 'ingest',
      entry: host,
      env: {
        ...common,
        FUNCTION_TARGET: 'ingest',
        PORT: String(options.ingestPort),
        METRICS_PORT: String(options.ingestMetricsPort),
        INGEST_WORKERS: String(options.ingestWorkers),
      },
      readyUrl: `http://${LOCAL}:${options.ingestPort}/readyz`,
      stopTimeoutMs,
    },
  ];
}

/** Where each part answers, for people (the banner) and for STATUS_FILE. */
function urlsOf(options: PipelineOptions, services: Record<string, string>) {
  const shown = options.host === '0.0.0.0' ? LOCAL : options.host;
  return {
    events: `http://${shown}:${options.ingestPort}/events`,
    persist: `http://${shown}:${options.persistPort}/`,
    ingestMetrics: `http://${LOCAL}:${options.ingestMetricsPort}/metrics`,
    persistMetrics: `http://${LOCAL}:${options.persistMetricsPort}/metrics`,
    redis: services.REDIS_URL as string,
    mongodb: services.MONGODB_URL as string,
  };
}

function printBanner(options: PipelineOptions, urls: ReturnType<typeof urlsOf>): void {
  process.stdout.write(
    [
      '',
      `ingest   ${urls.events}   (${options.ingestWorkers} workers; metrics :${options.ingestMetricsPort}/metrics)`,
      `persist  ${urls.persist}         (${options.persistWorkers} workers, one write budget; metrics :${options.persistMetricsPort}/metrics)`,
      `redis    ${urls.redis}   stream ${options.streamKey}`,
      `mongodb  ${urls.mongodb}  database spillway`,
      '',
      `try: curl -i -X POST ${urls.events} -H 'content-type: application/json' -d '{"type":"demo","data":{"hello":"world"}}'`,
      '',
    ].join('\n'),
  );
}

/**
 * A status line once a second, only when the figures changed (an idle pipeline
 * prints nothing): accepted and persisted per second, the backlog, the
 * database's write commands per second, the dead letters.
 */
function statusLines(
  urls: ReturnType<typeof urlsOf>,
  redis: Redis,
  mongo: MongoClient,
  streamKey: string,
  dbMetricsUrl: string | undefined,
): NodeJS.Timeout {
  let last: { accepted: number; persisted: number; writes: number } | undefined;
  let lastLine = '';
  const tick = async () => {
    const [accepted, persisted, dead, writes, backlog] = await Promise.all([
      scrape(urls.ingestMetrics, /^spillway_ingest_requests_total\{status="202"\} (\d+)/gm),
      scrape(urls.persistMetrics, /^spillway_persist_events_total\{[^}]*\} (\d+)/gm),
      scrape(urls.persistMetrics, /^spillway_persist_dead_letters_total (\d+)/gm),
      serverWriteCommands(mongo, dbMetricsUrl).catch(() => Number.NaN),
      redis.xlen(streamKey).catch(() => Number.NaN),
    ]);
    if (last) {
      const rate = (now: number, before: number) =>
        Number.isNaN(now - before) ? '?' : String(now - before);
      const line = `accepted/s ${rate(accepted, last.accepted)}  backlog ${Number.isNaN(backlog) ? 'redis down' : backlog}  persisted/s ${rate(persisted, last.persisted)}  db writes/s ${rate(writes, last.writes)}  dead letters ${Number.isNaN(dead) ? '?' : dead}`;
      if (line !== lastLine)
        process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${line}\n`);
      lastLine = line;
    }
    last = { accepted, persisted, writes };
  };
  return setInterval(() => void tick(), 1000);
}

async function main(): Promise<void> {
  const options = loadPipelineOptions();
  const services = ensureServices();
  const urls = urlsOf(options, services);
  let exitCode = 0;
  let up = false;
  let stopping: Promise<void> | undefined;
  const report = () =>
    writeStatus(options.statusFile, {
      pid: process.pid,
      ready: up,
      children: supervisor.status(),
      urls,
    });
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
    onChange: report,
  });
  let statusTimer: NodeJS.Timeout | undefined;
  const redis = createRedis(services.REDIS_URL as string, { enableOfflineQueue: false });
  redis.on('error', () => undefined); // the status line shows Redis as down
  const mongo = new MongoClient(services.MONGODB_URL as string, { serverSelectionTimeoutMS: 1000 });

  function stop(): Promise<void> {
    stopping ??= (async () => {
      clearInterval(statusTimer);
      up = false;
      report();
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
  onSignals(supervisor, stop);
  try {
    for (const spec of childSpecs(options, services)) await supervisor.start(spec);
  } catch (error) {
    say(`could not start: ${(error as Error).message}`);
    exitCode = 1;
    await stop();
    return;
  }
  printBanner(options, urls);
  up = true;
  report();
  statusTimer = statusLines(urls, redis, mongo, options.streamKey, services.DB_METRICS_URL);
}

/** Ctrl-C or SIGTERM stops the pipeline; a second one kills every process at once. */
function onSignals(supervisor: Supervisor, stop: () => Promise<void>): void {
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
}

runIfEntryPoint(import.meta.url, 'pipeline', main);
