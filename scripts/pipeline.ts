/**
 * `npm start`: the whole pipeline on one machine. Ensures Redis and the database
 * (scripts/services.sh), starts persist, the local relay and ingest (INGEST_WORKERS
 * processes, 3 by default, like min-scale 3), prints the URLs and one status line
 * a second. Ctrl-C stops ingest first (no new events), then the relay, then
 * persist (which commits everything it holds). Whatever is still in the stream
 * is persisted by the sweeper or catch-up at the next start.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { EnvReader } from '../functions/shared/env.js';
import { STREAM_KEY } from '../functions/shared/names.js';
import { serverWriteCommands } from './db-writes.js';
import { ensureServices } from './services-env.js';

const reader = new EnvReader();
const ingestPort = reader.int('INGEST_PORT', 8080, 1, 65535);
const persistPort = reader.int('PERSIST_PORT', 8081, 1, 65535);
const workers = reader.int('INGEST_WORKERS', 3, 1, 64);
const stream = reader.string('STREAM_KEY', STREAM_KEY);

const serviceEnv = ensureServices();
const baseEnv = { ...process.env, ...serviceEnv };
const children: Array<{ name: string; proc: ChildProcess }> = [];

function start(name: string, args: string[], env: Record<string, string>): ChildProcess {
  const proc = spawn(process.execPath, args, {
    env: { ...baseEnv, ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  proc.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`${name} exited (${code ?? signal}); stopping the pipeline\n`);
      void stop(1);
    }
  });
  children.push({ name, proc });
  return proc;
}

async function waitReady(url: string, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2000) })).status === 200) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${name} not ready at ${url} after 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let stopping = false;
async function stop(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(statusTimer);
  process.stderr.write(
    '\nstopping: ingest, then the relay, then persist (it commits what it holds)\n',
  );
  for (const name of ['ingest', 'relay', 'persist']) {
    const child = children.find((c) => c.name === name);
    if (!child || child.proc.exitCode !== null) continue;
    const exited = new Promise((resolve) => child.proc.once('exit', resolve));
    child.proc.kill('SIGTERM');
    await exited;
  }
  redis?.disconnect();
  await mongo?.close();
  process.exit(code);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

const host = ['dist/functions/host.js'];
start('persist', host, {
  FUNCTION_TARGET: 'persist',
  PORT: String(persistPort),
  METRICS_PORT: '9091',
});
await waitReady(`http://127.0.0.1:${persistPort}/readyz`, 'persist');
start('relay', ['dist/eventing/relay/main.js'], {
  PERSIST_URL: `http://127.0.0.1:${persistPort}/`,
});
start('ingest', host, {
  FUNCTION_TARGET: 'ingest',
  PORT: String(ingestPort),
  METRICS_PORT: '9090',
  INGEST_WORKERS: String(workers),
});
await waitReady(`http://127.0.0.1:${ingestPort}/readyz`, 'ingest');

const redis: Redis = new Redis(serviceEnv.REDIS_URL as string, {
  lazyConnect: false,
  maxRetriesPerRequest: 1,
});
const mongo: MongoClient = await new MongoClient(serviceEnv.MONGODB_URL as string).connect();

process.stdout.write(
  [
    '',
    `ingest   http://127.0.0.1:${ingestPort}/events   (${workers} workers; metrics :9090/metrics)`,
    `persist  http://127.0.0.1:${persistPort}/         (metrics :9091/metrics)`,
    `redis    ${serviceEnv.REDIS_URL}   stream ${stream}`,
    `mongodb  ${serviceEnv.MONGODB_URL}  database spillway`,
    '',
    `try: curl -i -X POST http://127.0.0.1:${ingestPort}/events -H 'content-type: application/json' -d '{"type":"demo","data":{"hello":"world"}}'`,
    '',
  ].join('\n'),
);

async function metric(url: string, pattern: RegExp): Promise<number> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(1000) })).text();
    let total = 0;
    for (const m of text.matchAll(pattern)) total += Number(m[1]);
    return total;
  } catch {
    return Number.NaN;
  }
}

let last: { accepted: number; persisted: number; writes: number } | undefined;
async function status(): Promise<void> {
  const [accepted, persisted, dead, writes, backlog] = await Promise.all([
    metric(
      'http://127.0.0.1:9090/metrics',
      /^spillway_ingest_requests_total\{status="202"\} (\d+)/gm,
    ),
    metric('http://127.0.0.1:9091/metrics', /^spillway_persist_events_total\{[^}]*\} (\d+)/gm),
    metric('http://127.0.0.1:9091/metrics', /^spillway_persist_dead_letters_total (\d+)/gm),
    serverWriteCommands(mongo, serviceEnv.DB_METRICS_URL).catch(() => Number.NaN),
    redis.xlen(stream).catch(() => Number.NaN),
  ]);
  if (last) {
    process.stdout.write(
      `${new Date().toISOString().slice(11, 19)}  accepted/s ${accepted - last.accepted}  backlog ${backlog}  persisted/s ${persisted - last.persisted}  db writes/s ${writes - last.writes}  dead letters ${dead}\n`,
    );
  }
  last = { accepted, persisted, writes };
}
const statusTimer = setInterval(() => void status(), 1000);
