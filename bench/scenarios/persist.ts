/**
 * The persist scenario: persist against the IOPS-limited database, in one run.
 *
 *   (a)  one insertOne per event (and a′: one request = 5 reads + 5 writes
 *        straight to MongoDB): the failing baselines
 *   (b)  a raw loop of maximal insertMany batches: the ceiling
 *   (c)  the push path: the relay delivers one event per HTTP request to persist
 *   lag  565 events/s offered through ingest, push path: stream add → commit
 *   (d)  catch-up: persist drains a pre-filled backlog with no consumer group
 *   (e)  the push path with several persist replicas sharing one write budget
 *   adaptive  the push path while the database's IOPS limit drops and recovers;
 *        persist's rate and write p99 per second from a real Prometheus
 *
 * For each: docs/s, write commands/s at the server (sliding one-second maximum),
 * and the IOPS the database actually consumed (blkio io_serviced of its group).
 */
import type { ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { Redis } from 'ioredis';
import { type Db, MongoClient } from 'mongodb';
import { type EventDocument, toDocument } from '../../functions/shared/document.js';
import { entryFields, parseEntryFields } from '../../functions/shared/entry.js';
import {
  maxWritesPerSecond,
  sampleServerWrites,
  type WriteSample,
} from '../../scripts/db-writes.js';
import { spawnEntry, stopProcess, waitHttpReady } from '../../scripts/processes.js';
import { setBlkioIops } from '../../scripts/services-env.js';
import { appendEntries } from '../../scripts/stream-fill.js';
import {
  fmt,
  freePort,
  iopsLimit,
  ioServiced,
  type ScenarioUi,
  scrapeText,
  servicesEnv,
  sleep,
} from '../common.js';
import { paddingText } from '../profile.js';
import { sampleValue } from '../prom-text.js';
import { type Prometheus, type RangeSeries, startPrometheus } from '../prometheus.js';
import { type SlotFigures, slotFigures } from '../slot.js';

export interface PersistOptions {
  /** Seconds of (a), (a′) and (b). */
  seconds: number;
  /** Events of the push path (c). */
  push: number;
  /** Entries of the catch-up backlog (d). */
  backlog: number;
  /** Seconds of the lag run. */
  lagSeconds: number;
  /** Persist replicas sharing one budget in row (e) (PERSIST_WORKERS; below 2 skips it). */
  replicas: number;
  /** The adaptive run's phases: the database's IOPS and how long (none skips it). */
  adaptive: { iops: number; seconds: number }[];
  /** Events per second fed to the stream during the adaptive run. */
  adaptiveRate: number;
}

export const ADAPTIVE_PHASES = [
  { iops: 100, seconds: 15 },
  { iops: 20, seconds: 20 },
  { iops: 100, seconds: 20 },
];

export const FULL_PERSIST: PersistOptions = {
  seconds: 15,
  push: 40_000,
  backlog: 1_000_000,
  lagSeconds: 30,
  replicas: 3,
  adaptive: ADAPTIVE_PHASES,
  adaptiveRate: 1000,
};

export const isFullPersist = (opts: PersistOptions) =>
  opts.seconds >= FULL_PERSIST.seconds &&
  opts.push >= FULL_PERSIST.push &&
  opts.backlog >= FULL_PERSIST.backlog &&
  opts.lagSeconds >= FULL_PERSIST.lagSeconds;

/** Seconds the scenario should take, for its progress bar. */
export function estimatePersistSec(opts: PersistOptions): number {
  return (
    3 * opts.seconds +
    (opts.push / 1200) * (opts.replicas > 1 ? 2 : 1) +
    opts.lagSeconds +
    opts.backlog / 25_000 +
    opts.backlog / 1700 +
    opts.adaptive.reduce((sum, phase) => sum + phase.seconds + 5, 0) +
    25
  );
}

export const LAG_RATE = 565;

/** Characters of padding in a benchmark event's data by default: about the size of the spike's. */
export const SAMPLE_PAYLOAD = 64;

/** The stream entry the benchmarks fill the stream with: the i-th of a run. */
export const sampleEntry = (
  i: number,
  prefix: string,
  time = new Date().toISOString(),
  payloadBytes = SAMPLE_PAYLOAD,
) => ({
  id: `${prefix}-${i}`,
  type: 'bench.event',
  source: '/bench',
  subject: `s-${i % 1000}`,
  time,
  seq: i + 1,
  data: JSON.stringify({ i, payload: paddingText(payloadBytes) }),
});

/**
 * The document persist writes for sampleEntry(i): made by the contracts'
 * own conversion (entry fields to document), so that a ceiling measured with
 * it writes what persist writes, field for field.
 */
export const sampleDoc = (i: number, prefix: string, payloadBytes = SAMPLE_PAYLOAD) =>
  toDocument(
    parseEntryFields(entryFields(sampleEntry(i, prefix, undefined, payloadBytes))),
    `${Date.now()}-${i}`,
    new Date(),
  );

/** The documents of one maximal batch (10,000) of the ceiling, made before any is timed. */
export function ceilingBatch(payloadBytes = SAMPLE_PAYLOAD): EventDocument[] {
  return Array.from({ length: 10_000 }, (_, i) => sampleDoc(i, 'b', payloadBytes));
}

/**
 * The ceiling: maximal insertMany batches back to back, each a copy of `made`
 * under new ids; returns the documents. What is timed is the database taking
 * them (and the driver serializing them, as persist's writes are timed), not
 * the making of them, which persist does while the previous write is in
 * flight (measured with the making in the loop: 700 docs/s of 4 KiB events
 * and 2,390 of small ones, against 1,370 and 2,690 without).
 */
export async function insertManyLoop(
  db: Db,
  seconds: number,
  made: readonly EventDocument[] = ceilingBatch(),
): Promise<number> {
  const b = db.collection<EventDocument>('b_insert_many');
  const stamp = Date.now().toString(36);
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const batch = made.map((doc) => ({ ...doc, _id: { ...doc._id, id: `b-${stamp}-${n++}` } }));
    await b.insertMany(batch, { ordered: false, writeConcern: { w: 1, j: true } });
  }
  return n;
}

/** The raw insertMany ceiling in docs/s, measured for `seconds`, of events with data padded so. */
export async function rawInsertManyCeiling(
  db: Db,
  seconds: number,
  payloadBytes = SAMPLE_PAYLOAD,
): Promise<number> {
  const made = ceilingBatch(payloadBytes);
  const t0 = performance.now();
  const docs = await insertManyLoop(db, seconds, made);
  return docs / ((performance.now() - t0) / 1000);
}

export interface PersistRow {
  name: string;
  docs: number;
  seconds: number;
  docsPerSec: number;
  writesPerSec: number;
  maxWritesInOneSecond: number;
  iops: number;
  note?: string;
  /** What one slot of the budget was spent on (rows that run persist). */
  slot?: SlotFigures;
}

export interface PersistResult {
  startedAt: string;
  finishedAt: string;
  full: boolean;
  options: PersistOptions;
  /** The database's blkio write IOPS limit during the run (undefined: none). */
  iopsLimit: number | undefined;
  rows: PersistRow[];
  lag?: { p50: number; p99: number; max: number; offered: number; events: number };
  /** The raw insertMany ceiling, docs/s (row b). */
  ceiling: number;
  ratios: { dOverA: number; dOverB: number };
  /** persist's write commands in any one second, over (c), lag and (d). */
  maxPersistWritesInOneSecond: number;
  /** Several persist replicas sharing one write budget. */
  replicas?: {
    label: string;
    docs: number;
    docsPerSec: number;
    maxWritesInOneSecond: number;
    budget: number;
  };
  /** The adaptive run: the database's IOPS lowered mid-run and raised back. */
  adaptive?: {
    phases: { iops: number; seconds: number }[];
    budget: number;
    seconds: {
      t: number;
      iopsLimit: number;
      rate: number | null;
      latencyP99Ms: number | null;
      writes: number | null;
    }[];
  };
  warnings: string[];
}

/** What the scenario's rows share: the services, the run's id and database, the rows so far. */
interface PersistRun {
  opts: PersistOptions;
  ui: ScenarioUi;
  env: Record<string, string>;
  cgroup: string | undefined;
  redis: Redis;
  mongo: MongoClient;
  runId: string;
  db: Db;
  rows: PersistRow[];
  warnings: string[];
}

const stopChild = (child: ChildProcess) => stopProcess(child, { timeoutMs: 60_000 });
const waitReady = (url: string) => waitHttpReady(url, { timeoutMs: 60_000 });

function spawnNode(run: PersistRun, script: string, extra: Record<string, string>): ChildProcess {
  return spawnEntry(script, { env: { ...run.env, LOG_LEVEL: 'warn', ...extra } }).proc;
}

function serverWrites(run: PersistRun) {
  return sampleServerWrites({
    mongodbUrl: run.env.MONGODB_URL as string,
    metricsUrl: run.env.DB_METRICS_URL,
    intervalMs: 50,
  });
}

/** Runs fn while sampling the server's write commands and the device's I/O; adds its row. */
async function measure(
  run: PersistRun,
  name: string,
  fn: () => Promise<number>,
  note?: string,
): Promise<PersistRow> {
  run.ui.phase(`running ${name}`);
  const sampler = serverWrites(run);
  const io0 = ioServiced(run.cgroup);
  const t0 = performance.now();
  const docs = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const io1 = ioServiced(run.cgroup);
  const samples = await sampler.stop();
  const writes = (samples.at(-1)?.writes ?? 0) - (samples[0]?.writes ?? 0);
  const row: PersistRow = {
    name,
    docs,
    seconds,
    docsPerSec: docs / seconds,
    writesPerSec: writes / seconds,
    maxWritesInOneSecond: maxWritesPerSecond(samples),
    iops: (io1 - io0) / seconds,
    ...(note ? { note } : {}),
  };
  run.rows.push(row);
  run.ui.log(`  ${JSON.stringify(row)}`);
  return row;
}

/** Adds to a row what one budget slot was spent on: persist's metrics now against `before`. */
async function withSlot(
  run: PersistRun,
  row: PersistRow,
  metricsUrl: string,
  before: string,
  env: Record<string, string> = {},
): Promise<void> {
  const after = await scrapeText(metricsUrl, 2000);
  const slot = slotFigures(before, after, row.seconds, row.docs, env);
  if (!slot) return;
  row.slot = slot;
  run.ui.log(`  slot: ${JSON.stringify(slot)}`);
}

/** Appends entries `from` … `from + n - 1` of a run (5,000 per pipeline). */
async function fillFrom(run: PersistRun, stream: string, from: number, n: number, prefix: string) {
  const time = new Date().toISOString();
  await appendEntries(run.redis, stream, from, n, (i) => sampleEntry(i, prefix, time), 5000);
}

async function drained(run: PersistRun, stream: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await run.redis.xlen(stream)) > 0) {
    if (Date.now() > deadline)
      throw new Error(
        `${stream} not drained in ${timeoutMs} ms (${await run.redis.xlen(stream)} left)`,
      );
    await sleep(100);
  }
}

/** Deletes a row's stream and database. */
async function dropRun(run: PersistRun, stream: string, dbName: string): Promise<void> {
  await run.redis.del(stream);
  await run.mongo.db(dbName).dropDatabase();
}

/** (a) insertOne per event, (a′) 5 reads + 5 writes per request, (b) the insertMany ceiling. */
async function baselines(run: PersistRun): Promise<void> {
  const { db } = run;
  const seconds = run.opts.seconds;
  const a = db.collection<EventDocument>('a_insert_one');
  await measure(run, '(a) insertOne per event', async () => {
    let n = 0;
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end)
      await a.insertOne(sampleDoc(n++, 'a'), { writeConcern: { w: 1, j: true } });
    return n;
  });
  // (a′) the synchronous design: each request does 5 reads + 5 writes in MongoDB.
  const sync = db.collection<{ _id: string; n?: number }>('a_sync_request');
  const syncRequests = async () => {
    let n = 0;
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const key = `k-${n % 100}`;
      for (let r = 0; r < 5; r++) await sync.findOne({ _id: `${key}-${r}` });
      for (let w = 0; w < 5; w++) {
        await sync.updateOne(
          { _id: `${key}-${w}` as never },
          { $inc: { n: 1 } },
          { upsert: true, writeConcern: { w: 1, j: true } },
        );
      }
      n++;
    }
    return n;
  };
  await measure(run, '(a′) request = 5 reads + 5 writes', syncRequests, 'requests, not documents');
  const made = ceilingBatch();
  await measure(run, '(b) insertMany ×10000 loop', () => insertManyLoop(db, seconds, made));
}

/**
 * persist on its own stream and database with only the push intake at work
 * (catch-up and the sweeper held off), ready; `startRelay` starts the relay
 * that delivers to it, 500 deliveries in flight.
 */
async function pushOnlyPersist(
  run: PersistRun,
  stream: string,
  dbName: string,
  extra: Record<string, string> = {},
): Promise<{ persist: ChildProcess; metricsUrl: string; startRelay: () => ChildProcess }> {
  const common = {
    STREAM_KEY: stream,
    MONGODB_DB: dbName,
    CATCHUP_BACKLOG: '100000000',
    STALE_AFTER_MS: '600000',
  };
  const port = await freePort();
  const metricsPort = await freePort();
  const persist = spawnNode(run, 'dist/functions/host/main.js', {
    ...common,
    ...extra,
    FUNCTION_TARGET: 'persist',
    PORT: String(port),
    METRICS_PORT: String(metricsPort),
  });
  try {
    await waitReady(`http://127.0.0.1:${port}/readyz`);
  } catch (error) {
    await stopChild(persist);
    throw error;
  }
  const startRelay = () =>
    spawnNode(run, 'dist/eventing/relay/main.js', {
      ...common,
      PERSIST_URL: `http://127.0.0.1:${port}/`,
      RELAY_CONSUMERS: '500',
    });
  return { persist, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, startRelay };
}

/** Waits (up to 10 s) for the relay to make its group, which creates the stream. */
async function relayStarted(run: PersistRun, stream: string): Promise<void> {
  for (let i = 0; i < 100 && (await run.redis.exists(stream)) === 0; i++) await sleep(100);
}

/**
 * The push path: relay → persist, one event per HTTP request; `extra` is
 * persist's own environment (e.g. PERSIST_WORKERS). `beforeFill` may skip the
 * row (false). Returns its row.
 */
async function pushPath(
  run: PersistRun,
  row: { name: string; tag: string; events: number; note: string },
  extra: Record<string, string>,
  beforeFill?: (metricsUrl: string) => Promise<boolean>,
): Promise<PersistRow | undefined> {
  const stream = `bench:push:${run.runId}:${row.tag}`;
  const dbName = `bench_${run.runId}_${row.tag}`;
  const { persist, metricsUrl, startRelay } = await pushOnlyPersist(run, stream, dbName, extra);
  try {
    if (beforeFill && !(await beforeFill(metricsUrl))) return undefined;
    const relay = startRelay();
    try {
      await relayStarted(run, stream);
      // Entries added after the relay made its group at `$`; the relay delivers them as they come.
      const deliver = async () => {
        await fillFrom(run, stream, 0, row.events, row.tag);
        await drained(run, stream, 600_000);
        return row.events;
      };
      const before = await scrapeText(metricsUrl, 2000);
      const measured = await measure(run, row.name, deliver, row.note);
      await withSlot(run, measured, metricsUrl, before, extra);
      return measured;
    } finally {
      await stopChild(relay);
    }
  } finally {
    await stopChild(persist);
    await dropRun(run, stream, dbName);
  }
}

/** A POST of `body` to ingest that resolves when answered (or failed). */
function poster(port: number, body: string): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      const req = request(
        `http://127.0.0.1:${port}/events`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('error', () => resolve());
      req.end(body);
    });
}

/** persist, the relay and ingest on one stream, for the lag run; resolves with ingest's port. */
async function lagPipeline(run: PersistRun, stream: string, dbName: string) {
  const common = { STREAM_KEY: stream, MONGODB_DB: dbName };
  const port = await freePort();
  const persist = spawnNode(run, 'dist/functions/host/main.js', {
    ...common,
    FUNCTION_TARGET: 'persist',
    PORT: String(port),
    METRICS_PORT: String(await freePort()),
  });
  await waitReady(`http://127.0.0.1:${port}/readyz`);
  const relay = spawnNode(run, 'dist/eventing/relay/main.js', {
    ...common,
    PERSIST_URL: `http://127.0.0.1:${port}/`,
    RELAY_CONSUMERS: '500',
  });
  const ingestPort = await freePort();
  const ingest = spawnNode(run, 'dist/functions/host/main.js', {
    ...common,
    FUNCTION_TARGET: 'ingest',
    PORT: String(ingestPort),
    METRICS_PORT: String(await freePort()),
  });
  await waitReady(`http://127.0.0.1:${ingestPort}/readyz`);
  return { ingestPort, processes: [ingest, relay, persist] };
}

/** lag: LAG_RATE events/s through ingest, push path; ack→persisted lag of every document. */
async function lagRun(run: PersistRun): Promise<PersistResult['lag']> {
  const stream = `bench:lag:${run.runId}`;
  const dbName = `bench_${run.runId}_lag`;
  const { ingestPort, processes } = await lagPipeline(run, stream, dbName);
  const post = poster(
    ingestPort,
    JSON.stringify({
      type: 'bench.lag',
      source: '/bench',
      subject: 'lag',
      data: { payload: 'x'.repeat(64) },
    }),
  );
  let offered = 0;
  await measure(run, `lag: ${LAG_RATE} events/s through ingest`, async () => {
    const t0 = performance.now();
    const pending: Promise<void>[] = [];
    while (performance.now() - t0 < run.opts.lagSeconds * 1000) {
      const due = Math.floor(((performance.now() - t0) / 1000) * LAG_RATE);
      while (offered < due) {
        pending.push(post());
        offered++;
      }
      await sleep(2);
    }
    await Promise.all(pending);
    await drained(run, stream, 120_000);
    return offered;
  });
  const docs = await run.mongo
    .db(dbName)
    .collection('events')
    .find({}, { projection: { streamId: 1, persistedAt: 1 } })
    .toArray();
  const lags = docs
    .map((d) => (d.persistedAt as Date).getTime() - Number(String(d.streamId).split('-')[0]))
    .sort((x, y) => x - y);
  const q = (p: number) =>
    lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] ?? Number.NaN;
  const lag = {
    p50: q(0.5),
    p99: q(0.99),
    max: lags.at(-1) ?? Number.NaN,
    offered,
    events: lags.length,
  };
  run.ui.log(
    `  ack→persisted lag over ${lags.length} events: p50 ${lag.p50} ms, p99 ${lag.p99} ms, max ${lag.max} ms`,
  );
  for (const child of processes) await stopChild(child);
  await dropRun(run, stream, dbName);
  return lag;
}

/** (d) catch-up: a pre-filled backlog, no consumer group (the source stopped). */
async function catchUp(run: PersistRun): Promise<void> {
  const backlog = run.opts.backlog;
  const stream = `bench:catchup:${run.runId}`;
  const dbName = `bench_${run.runId}_d`;
  run.ui.phase(`(d) catch-up: filling ${backlog} entries`);
  await fillFrom(run, stream, 0, backlog, 'd');
  const metricsPort = await freePort();
  const persist = spawnNode(run, 'dist/functions/host/main.js', {
    STREAM_KEY: stream,
    MONGODB_DB: dbName,
    FUNCTION_TARGET: 'persist',
    PORT: String(await freePort()),
    METRICS_PORT: String(metricsPort),
  });
  const drain = async () => {
    await drained(run, stream, 3_600_000);
    return backlog;
  };
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const measured = await measure(run, '(d) catch-up of a backlog', drain, `${backlog} entries`);
  await withSlot(run, measured, metricsUrl, '');
  const count = await run.mongo.db(dbName).collection('events').estimatedDocumentCount();
  if (count !== backlog)
    run.warnings.push(`(d) catch-up: ${count} documents for ${backlog} entries`);
  await stopChild(persist);
  await dropRun(run, stream, dbName);
}

/** (e) several persist replicas on one host process (PERSIST_WORKERS), one shared budget. */
async function replicasRun(run: PersistRun): Promise<PersistResult['replicas']> {
  const { replicas, push } = run.opts;
  let budget = Number.NaN;
  const row = await pushPath(
    run,
    {
      name: `(e) push path, ${replicas} persist replicas, one budget`,
      tag: 'e',
      events: push,
      note: `${push} events, PERSIST_WORKERS=${replicas}`,
    },
    { PERSIST_WORKERS: String(replicas) },
    async (metricsUrl) => {
      budget = sampleValue(
        await scrapeText(metricsUrl, 1000),
        'spillway_persist_write_budget_per_sec',
      );
      if (Number.isFinite(budget)) return true;
      run.warnings.push(
        '(e) skipped: persist exports no spillway_persist_write_budget_per_sec (no shared write budget)',
      );
      return false;
    },
  );
  if (!row) return undefined;
  const { name: label, docs, docsPerSec, maxWritesInOneSecond } = row;
  return { label, docs, docsPerSec, maxWritesInOneSecond, budget };
}

/**
 * Feeds the stream at the adaptive rate through the phases (each setting the
 * database's IOPS limit), in 100 ms steps; every second a tick of the IOPS limit.
 * Returns the ticks and the events fed.
 */
async function feedPhases(run: PersistRun, group: string, stream: string, t0: number) {
  const { adaptive, adaptiveRate } = run.opts;
  const ticks: { atMs: number; iops: number }[] = [];
  let fed = 0;
  let next = 1;
  let phaseEnd = 0;
  for (const phase of adaptive) {
    setBlkioIops(group, phase.iops);
    run.ui.phase(`adaptive run: database at ${phase.iops} IOPS for ${phase.seconds} s`);
    phaseEnd += phase.seconds;
    while (clock() - t0 < phaseEnd * 1000) {
      const due = Math.floor(((clock() - t0) / 1000) * adaptiveRate);
      if (due > fed) {
        await fillFrom(run, stream, fed, due - fed, 'adaptive');
        fed = due;
      }
      if (clock() - t0 >= next * 1000) {
        ticks.push({ atMs: clock(), iops: iopsLimit(group) ?? Number.NaN });
        next++;
      }
      await sleep(100);
    }
  }
  return { ticks, fed };
}

const clock = () => performance.timeOrigin + performance.now();

/** persist's rate and its write latency p99 (the last second's writes), as Prometheus answers. */
export const ADAPTIVE_QUERIES = {
  rate: 'max(spillway_persist_write_rate_per_sec)',
  p99: 'histogram_quantile(0.99, sum by (le) (irate(spillway_persist_write_latency_seconds_bucket[3s])))',
};

/** The adaptive run's seconds: Prometheus's answers at each tick's second, the server's writes. */
async function adaptiveSeconds(
  prometheus: Prometheus,
  t0: number,
  ticks: { atMs: number; iops: number }[],
  writes: WriteSample[],
): Promise<NonNullable<PersistResult['adaptive']>['seconds']> {
  const end = t0 + ticks.length * 1000;
  const [rate, p99] = await Promise.all([
    prometheus.queryRange(ADAPTIVE_QUERIES.rate, t0 + 1000, end, 1),
    prometheus.queryRange(ADAPTIVE_QUERIES.p99, t0 + 1000, end, 1),
  ]);
  const valueAt = (series: RangeSeries[], k: number) =>
    series[0]?.points.find((p) => Math.round((p.t - t0) / 1000) === k)?.v ?? null;
  return ticks.map((tick, i) => {
    const w0 = writesAt(writes, tick.atMs - 1000);
    const w1 = writesAt(writes, tick.atMs);
    const latency = valueAt(p99, i + 1);
    return {
      t: i + 1,
      iopsLimit: tick.iops,
      rate: valueAt(rate, i + 1),
      latencyP99Ms: latency === null ? null : latency * 1000,
      writes: w0 !== null && w1 !== null ? w1 - w0 : null,
    };
  });
}

/**
 * The adaptive run: the push path fed at a steady rate while the database's IOPS
 * limit is lowered and raised back (put back at the end whatever happens); a
 * real Prometheus scrapes persist every second meanwhile.
 */
async function adaptiveRun(run: PersistRun, group: string): Promise<PersistResult['adaptive']> {
  const stream = `bench:adaptive:${run.runId}`;
  const dbName = `bench_${run.runId}_adaptive`;
  const { persist, metricsUrl, startRelay } = await pushOnlyPersist(run, stream, dbName);
  const original = iopsLimit(group) ?? 100;
  const restore = () => setBlkioIops(group, original);
  process.once('exit', restore);
  const sampler = serverWrites(run);
  let relay: ChildProcess | undefined;
  let prometheus: Prometheus | undefined;
  try {
    prometheus = await startPrometheus({ persist: [metricsUrl] });
    relay = startRelay();
    await relayStarted(run, stream);
    const t0 = clock();
    const { ticks, fed } = await feedPhases(run, group, stream, t0);
    restore();
    run.ui.phase(`adaptive run: draining ${fed} events fed at ${run.opts.adaptiveRate}/s`);
    await drained(run, stream, 300_000);
    const writes = await sampler.stop();
    await prometheus.scrapedSince(ticks.at(-1)?.atMs ?? t0);
    const budget = sampleValue(
      await scrapeText(metricsUrl, 1000),
      'spillway_persist_write_budget_per_sec',
    );
    return {
      phases: run.opts.adaptive,
      budget: Number.isFinite(budget) ? budget : 100,
      seconds: await adaptiveSeconds(prometheus, t0, ticks, writes),
    };
  } finally {
    restore();
    process.removeListener('exit', restore);
    await sampler.stop();
    await prometheus?.stop();
    if (relay) await stopChild(relay);
    await stopChild(persist);
    await dropRun(run, stream, dbName);
  }
}

/** Write commands the server had counted at `ms` (the last sample read by then). */
function writesAt(samples: readonly WriteSample[], ms: number): number | null {
  let found: number | null = null;
  for (const w of samples) {
    if (w.toMs > ms) break;
    found = w.writes;
  }
  return found;
}

/** The rows, in order: (a), (a′), (b), (c), lag, (d), (e), then the adaptive run. */
async function persistRows(run: PersistRun) {
  const { opts } = run;
  await baselines(run);
  await pushPath(
    run,
    {
      name: '(c) push path (relay → persist)',
      tag: 'c',
      events: opts.push,
      note: `${opts.push} events, 500 deliveries in flight, catch-up off`,
    },
    {},
  );
  const lag = await lagRun(run);
  await catchUp(run);
  const replicas = opts.replicas > 1 ? await replicasRun(run) : undefined;
  let adaptive: PersistResult['adaptive'];
  if (opts.adaptive.length > 0 && !run.cgroup)
    run.warnings.push('the adaptive run needs the database in a blkio group: skipped');
  if (opts.adaptive.length > 0 && run.cgroup) adaptive = await adaptiveRun(run, run.cgroup);
  return { lag, replicas, adaptive };
}

export async function runPersistScenario(
  opts: PersistOptions,
  ui: ScenarioUi,
): Promise<PersistResult> {
  const startedAt = new Date();
  const warnings: string[] = [];
  const env = servicesEnv();
  if (!env.DB_BLKIO_CGROUP) {
    warnings.push(
      'the database is NOT under a blkio IOPS limit: figures are not the 100 IOPS case',
    );
    ui.log(`WARNING: ${warnings.at(-1)}`);
  }
  const redis = new Redis(env.REDIS_URL as string);
  redis.on('error', () => undefined); // a failed command fails the run
  const mongo = await new MongoClient(env.MONGODB_URL as string).connect();
  const runId = Date.now().toString(36);
  const db = mongo.db(`bench_${runId}`);
  const run: PersistRun = {
    ...{ opts, ui, env, cgroup: env.DB_BLKIO_CGROUP, redis, mongo, runId, db },
    ...{ rows: [], warnings },
  };
  try {
    const { lag, replicas, adaptive } = await persistRows(run);
    const by = (prefix: string) => run.rows.find((r) => r.name.startsWith(prefix)) as PersistRow;
    const [ra, rb, rc, rd] = [by('(a)'), by('(b)'), by('(c)'), by('(d)')];
    return {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      full: isFullPersist(opts),
      options: opts,
      iopsLimit: iopsLimit(run.cgroup),
      rows: run.rows,
      ...(lag ? { lag } : {}),
      ...(replicas ? { replicas } : {}),
      ...(adaptive ? { adaptive } : {}),
      ceiling: rb.docsPerSec,
      ratios: { dOverA: rd.docsPerSec / ra.docsPerSec, dOverB: rd.docsPerSec / rb.docsPerSec },
      maxPersistWritesInOneSecond: Math.max(
        rc.maxWritesInOneSecond,
        rd.maxWritesInOneSecond,
        by('lag').maxWritesInOneSecond,
      ),
      warnings,
    };
  } finally {
    await db.dropDatabase().catch(() => undefined);
    redis.disconnect();
    await mongo.close();
  }
}

/** The scenario's table and ratios, as Markdown-ish text. */
export function persistText(result: PersistResult): string {
  const lines = [
    `Database write IOPS limit: ${result.iopsLimit ?? 'none'} (blkio).`,
    '',
    '| run | docs | s | docs/s | write cmds/s | max write cmds in 1 s | IOPS (blkio) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of result.rows)
    lines.push(
      `| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.docs} | ${r.seconds.toFixed(1)} | ${r.docsPerSec.toFixed(0)} | ${r.writesPerSec.toFixed(1)} | ${r.maxWritesInOneSecond} | ${fmt(r.iops, 0)} |`,
    );
  const by = (prefix: string) => result.rows.find((r) => r.name.startsWith(prefix));
  const lag = result.lag;
  lines.push(
    '',
    `(d)/(a) = ${fmt(result.ratios.dOverA, 1)}   catch-up / insertOne per event (target ≥ 100)`,
    `(d)/(b) = ${fmt(result.ratios.dOverB, 2)}   catch-up / raw insertMany ceiling (target ≥ 0.8)`,
    `(c)/(b) = ${fmt((by('(c)')?.docsPerSec ?? Number.NaN) / result.ceiling, 2)}   push path / raw insertMany ceiling`,
    `(d) = ${fmt(by('(d)')?.docsPerSec, 0)} docs/s   (target ≥ 10,000)`,
    `(c) = ${fmt(by('(c)')?.docsPerSec, 0)} events/s   (target ≥ 1,700)`,
    `lag p50 ${lag?.p50} ms, p99 ${lag?.p99} ms, max ${lag?.max} ms at ${LAG_RATE} events/s   (target p99 ≤ 500 ms)`,
    `persist's write commands in any one second: max ${result.maxPersistWritesInOneSecond}   (budget 100)`,
  );
  if (result.warnings.length > 0) lines.push('', ...result.warnings.map((w) => `WARNING: ${w}`));
  if (!result.full) lines.push('', 'NOTE: shortened run: not a full benchmark.');
  return lines.join('\n');
}
