/**
 * The spike scenario: the whole pipeline as `npm start` runs it
 * (dist/scripts/pipeline.js: ingest × INGEST_WORKERS, the relay, persist, under
 * its supervisor; the services under their blkio limit) driven by the profile's
 * stages (k6/spike-profile.json: ramp to 10,000 VUs, hold, ramp down; the paced
 * VU model of bench/vu-runner.ts), then sampled every second until the stream
 * is empty again.
 *
 * Per second: offered and answered req/s, p50/p95/p99 of the answers in that
 * second, errors by status, the backlog (XLEN), persisted docs/s (persist's
 * spillway_persist_events_total), write commands/s counted at the database server
 * (scripts/db-writes.ts, in a process of its own, every 50 ms: also the busiest
 * sliding second), and the IOPS the database's blkio group did. A real Prometheus
 * scrapes both functions every second meanwhile; its query_range answers to the
 * dashboard's expressions are the report's dashboard panels. The drain of the largest backlog is timed from the per-second samples
 * (drainOf); what is left when the load ends is timed with a finer poll of XLEN.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { idempotencyKey, sequenceKey } from '../../functions/shared/redis/keys.js';
import { readPart } from '../../functions/shared/settings.js';
import { readStatus } from '../../functions/shared/status.js';
import { busiestSecond, sampleServerWrites, type WriteSample } from '../../scripts/db-writes.js';
import { hasExited, spawnEntry, stopProcess } from '../../scripts/processes.js';
import { compactAof } from '../../scripts/redis-aof.js';
import {
  deleteMatching,
  fmt,
  forkVuRunner,
  freePort,
  iopsLimit,
  ioServiced,
  runVuRunner,
  type ScenarioUi,
  scrapeText,
  servicesEnv,
  sleep,
  tuneMachine,
} from '../common.js';
import { DRAIN_NICE, processesOf, setNice } from '../priority.js';
import { loadProfile, type ProfileName } from '../profile.js';
import { sampleSum, sampleValue } from '../prom-text.js';
import {
  type DashboardAnswers,
  dashboardPanels,
  type Prometheus,
  queryDashboard,
  type RangeSeries,
  startPrometheus,
} from '../prometheus.js';
import { ceilingSpacingMs, SLOT_COUNTERS, type SlotFigures, slotBetween } from '../slot.js';
import type { RunnerConfig, RunnerResult, SecondFigures } from '../vu-runner.js';
import { rawInsertManyCeiling, SAMPLE_PAYLOAD } from './persist.js';

export interface SpikeOptions {
  /** The load's stages (the profile's, or tiny ones for a smoke run). */
  stages: { durationSec: number; target: number }[];
  /** Give up waiting for an empty stream after this long. */
  drainTimeoutSec: number;
  /** Seconds of the scenario's own raw insertMany ceiling, when none is given. */
  ceilingSec: number;
  /** VU connections opened per 100 ms at most. */
  connectPerTick: number;
  /** A mean think time instead of the profile's (smoke runs only). */
  thinkMs?: number;
  /** Which load profile (k6/<name>-profile.json); default the reference spike. */
  profile?: ProfileName;
  /** Persist replicas sharing the one budget (PERSIST_WORKERS); default npm start's. */
  persistWorkers?: number;
}

/** A profile's stages, as the VU runner takes them. */
export function profileStages(name: ProfileName = 'spike'): SpikeOptions['stages'] {
  return loadProfile(undefined, name).stages.map((stage) => ({
    durationSec: parseDurationSec(stage.duration),
    target: stage.target,
  }));
}

/** k6 durations: "30s", "4m", "1m30s". */
export function parseDurationSec(text: string): number {
  let total = 0;
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0) throw new Error(`bad duration ${text}`);
  for (const m of parts) {
    const unit = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    total += Number(m[1]) * unit;
  }
  return total;
}

export function estimateSpikeSec(opts: SpikeOptions, ceilingGiven: boolean): number {
  const load = opts.stages.reduce((sum, stage) => sum + stage.durationSec, 0);
  return load + 20 + (ceilingGiven ? 0 : opts.ceilingSec + 2);
}

/** One second of the spike, on one time axis (t: seconds from the first VU's start). */
export interface SpikeSecond {
  t: number;
  vus: number;
  offered: number;
  answered: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Answers by status, and failures without an answer (socket, timeout, connect). */
  statuses: Record<string, number>;
  errors: number;
  errorKinds: { non2xx: number; socket: number; timeout: number; connect: number };
  /** XLEN at the end of the second. */
  backlog: number | null;
  /** Documents persist committed in this second (spillway_persist_events_total). */
  persisted: number | null;
  /** Write commands the database server counted in this second. */
  writes: number | null;
  /** I/O operations of the database's blkio group in this second. */
  iops: number | null;
  /** persist's adaptive write rate (spillway_persist_write_rate_per_sec), when it exports one. */
  writeRate: number | null;
}

export interface SpikeResult {
  startedAt: string;
  finishedAt: string;
  options: SpikeOptions;
  smoke: boolean;
  /** The load profile (k6/<name>-profile.json). */
  profile: ProfileName;
  /** Persist replicas that shared the budget. */
  persistWorkers: number;
  thinkTimeMs: { mean: number; jitter: number };
  ingestWorkers: number;
  /** The nice value the drain's processes (relay, persist, the database) ran at (bench/priority.ts). */
  drainNice: number;
  /** Write commands per second the database may take, and where the figure came from. */
  budget: number;
  budgetFrom: string;
  maxBacklog: number;
  iopsLimit: number | undefined;
  ceiling: { docsPerSec: number; from: string };
  seconds: SpikeSecond[];
  load: RunnerResult;
  summary: {
    offered: number;
    answered: number;
    accepted: number;
    errors: number;
    errorsUnderMaxBacklog: number;
    errorsByKind: Record<string, number>;
    peakBacklog: number;
    peakBacklogAt: number;
    busiestSecond: number;
    busiestSecondAt: number;
    persistedTotal: number;
    storedDocuments: number;
    loadEndedAt: number;
    drainedAt: number | null;
    /** From the end of the load to an empty stream; undefined when nothing was left. */
    /** The largest backlog's drain (see drainOf); undefined when it was under a second of the ceiling. */
    drain?: Drain;
    /** What one budget slot was spent on during that drain (Prometheus's counters at its ends). */
    drainSlot?: SlotFigures;
    /** What was left when the load ended, and how long until the stream was empty (20 ms poll). */
    afterLoad: { backlog: number; seconds: number | null };
    latencyMs: RunnerResult['latencyMs'];
  };
  /** The dashboard's panels as Prometheus answered them (query_range over the run). */
  dashboard: DashboardAnswers;
  warnings: string[];
}

/** Write commands the server had counted at `atMs` (the last sample read by then). */
function writesAt(samples: readonly WriteSample[], atMs: number): number | null {
  let found: number | null = null;
  for (const sample of samples) {
    if (sample.toMs > atMs) break;
    found = sample.writes;
  }
  return found;
}

/**
 * The drain of the largest backlog: from the second it peaked to the first
 * second it was back to at most 1 % of the peak (while the load goes on, the
 * deliveries in flight keep a few entries in the stream). Its rate is what
 * persist committed per second meanwhile; the prediction is the peak ÷ (the
 * ceiling − the arrivals per second meanwhile), which is peak ÷ ceiling when
 * nothing arrives. Undefined when the peak was under one second of the ceiling
 * (nothing worth timing at one-second resolution).
 */
export interface Drain {
  backlog: number;
  peakAt: number;
  emptyAt: number | null;
  seconds: number;
  rate: number;
  arrivalRate: number;
  predictedSec: number;
  /** The peak ÷ the ceiling, arrivals ignored. */
  atCeilingSec: number;
}

export function drainOf(seconds: SpikeSecond[], ceiling: number): Drain | undefined {
  let peak = -1;
  for (let k = 0; k < seconds.length; k++)
    if (peak < 0 || (seconds[k]?.backlog ?? 0) > (seconds[peak]?.backlog ?? 0)) peak = k;
  const backlog = seconds[peak]?.backlog ?? 0;
  if (peak < 0 || backlog < ceiling) return undefined;
  let empty = -1;
  for (let k = peak + 1; k < seconds.length; k++)
    if ((seconds[k]?.backlog ?? Number.POSITIVE_INFINITY) <= backlog / 100) {
      empty = k;
      break;
    }
  const last = empty >= 0 ? empty : seconds.length - 1;
  const span = seconds.slice(peak + 1, last + 1);
  const length = Math.max(1, last - peak);
  const persisted = span.reduce((sum, s) => sum + (s.persisted ?? 0), 0);
  const arrivals = span.reduce((sum, s) => sum + (s.statuses['202'] ?? 0), 0);
  const arrivalRate = arrivals / length;
  return {
    backlog,
    peakAt: seconds[peak]?.t ?? peak,
    emptyAt: empty >= 0 ? (seconds[empty]?.t ?? empty) : null,
    seconds: empty >= 0 ? length : Number.POSITIVE_INFINITY,
    rate: persisted / length,
    arrivalRate,
    predictedSec:
      ceiling > arrivalRate ? backlog / (ceiling - arrivalRate) : Number.POSITIVE_INFINITY,
    atCeilingSec: backlog / ceiling,
  };
}

const children = new Set<ChildProcess>();
export function killSpikeChildren() {
  for (const child of children) if (!hasExited(child)) child.kill('SIGKILL');
}

/** What a spike run works with: its own stream, database and keys, its clients and settings. */
interface SpikeRun {
  env: Record<string, string>;
  cgroup: string | undefined;
  streamKey: string;
  dbName: string;
  runTag: string;
  redis: Redis;
  mongo: MongoClient;
  profile: ReturnType<typeof loadProfile>;
  /** The profile's name and the replica count, for file names. */
  label: string;
  persistWorkers: number;
  peak: number;
  warnings: string[];
  pipelineEnv: Record<string, string | undefined>;
}

/** One sample of the run, every second: XLEN, persist's metrics, the blkio counter. */
interface Tick {
  atMs: number;
  backlog: number | null;
  persisted: number;
  writeRate: number;
  budget: number;
  io: number;
}

const clock = () => performance.timeOrigin + performance.now();

async function prepare(opts: SpikeOptions, ui: ScenarioUi, startedAt: Date): Promise<SpikeRun> {
  const name = opts.profile ?? 'spike';
  const loaded = loadProfile(undefined, name);
  const profile = {
    ...loaded,
    thinkTimeMs: { ...loaded.thinkTimeMs, mean: opts.thinkMs ?? loaded.thinkTimeMs.mean },
  };
  const env = servicesEnv();
  const warnings: string[] = [];
  const peak = Math.max(...opts.stages.map((s) => s.target));
  warnings.push(...tuneMachine(peak));
  if (!env.DB_BLKIO_CGROUP)
    warnings.push(
      'the database is NOT under a blkio IOPS limit: figures are not the 100 IOPS case',
    );
  for (const warning of warnings) ui.log(`WARNING: ${warning}`);
  const runId = `${startedAt.getTime().toString(36)}`;
  const streamKey = `bench:${name}:${runId}`;
  const dbName = `bench_${name}_${runId}`;
  const pipelineEnv: Record<string, string | undefined> = {
    ...process.env,
    ...env,
    STREAM_KEY: streamKey,
    MONGODB_DB: dbName,
    ...(opts.persistWorkers === undefined ? {} : { PERSIST_WORKERS: String(opts.persistWorkers) }),
  };
  const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  const mongo = await new MongoClient(env.MONGODB_URL as string).connect();
  return {
    env,
    cgroup: env.DB_BLKIO_CGROUP,
    streamKey,
    dbName,
    runTag: `bench-${name}-${runId}`,
    redis,
    mongo,
    profile,
    label: opts.persistWorkers === undefined ? name : `${name}-${opts.persistWorkers}x`,
    persistWorkers: pipelineEnv.PERSIST_WORKERS ? Number(pipelineEnv.PERSIST_WORKERS) : 1,
    peak,
    warnings,
    pipelineEnv,
  };
}

/**
 * The ceiling of this run: the persist scenario's (its documents are the
 * spike's size), or a raw insertMany loop of its own, of documents the size of
 * the profile's events (their data padded as the VUs pad theirs).
 */
async function runCeiling(
  run: SpikeRun,
  opts: SpikeOptions,
  ui: ScenarioUi,
  given: number | undefined,
): Promise<SpikeResult['ceiling']> {
  const padding = run.profile.event.payloadBytes ?? 0;
  if (given !== undefined && padding === 0)
    return { docsPerSec: given, from: "the persist scenario's row (b), same run" };
  ui.phase(`raw insertMany ceiling, ${opts.ceilingSec} s`);
  const db = run.mongo.db(`${run.dbName}_ceiling`);
  const docsPerSec = await rawInsertManyCeiling(db, opts.ceilingSec, SAMPLE_PAYLOAD + padding);
  await db.dropDatabase();
  ui.log(`raw insertMany ceiling: ${Math.round(docsPerSec)} docs/s`);
  const size = padding === 0 ? '' : ` of events with ${padding} more characters of data`;
  return {
    docsPerSec,
    from: `a raw insertMany loop of ${opts.ceilingSec} s${size} before the load`,
  };
}

/** `npm start`'s pipeline on free ports, up once its STATUS_FILE says it is ready. */
async function startPipeline(
  run: SpikeRun,
  ui: ScenarioUi,
  where: { resultsDir: string; stamp: string },
) {
  const [port, metricsPort, persistPort, persistMetricsPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const logFile = join(where.resultsDir, `${run.label}-${where.stamp}-pipeline.log`);
  const statusFile = join(where.resultsDir, `${run.label}-${where.stamp}-pipeline.status.json`);
  const fd = openSync(logFile, 'a');
  ui.phase('starting the pipeline (npm start)');
  const pipeline = spawnEntry(
    fileURLToPath(new URL('../../scripts/pipeline.js', import.meta.url)),
    {
      env: {
        ...run.pipelineEnv,
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        PERSIST_PORT: String(persistPort),
        PERSIST_METRICS_PORT: String(persistMetricsPort),
        LOG_LEVEL: 'warn',
        IDEMPOTENCY_TTL_SEC: '3600',
        STATUS_FILE: statusFile,
      },
      stdio: ['ignore', fd, fd],
    },
  );
  closeSync(fd);
  children.add(pipeline.proc);
  const deadline = Date.now() + 120_000;
  while (readStatus(statusFile)?.ready !== true) {
    if (hasExited(pipeline.proc))
      throw new Error(`the pipeline exited before it was up: ${readFileSync(logFile, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`the pipeline was not up after 120 s (${logFile})`);
    await sleep(200);
  }
  ui.log(`pipeline up: ingest :${port}, persist :${persistPort}, log ${logFile}`);
  const parts = readStatus(statusFile)?.children ?? {};
  const drain = [parts.relay?.pid, parts.persist?.pid, ...processesOf(run.cgroup)];
  run.warnings.push(
    ...setNice(
      drain.filter((pid) => pid !== undefined),
      DRAIN_NICE,
    ),
  );
  return {
    proc: pipeline.proc,
    port,
    ingestMetrics: `http://127.0.0.1:${metricsPort}/metrics`,
    persistMetrics: `http://127.0.0.1:${persistMetricsPort}/metrics`,
  };
}

/** Samples the run every second from `start(t0)` until `stop()`, on the second from t0. */
function secondSampler(run: SpikeRun, persistMetrics: string) {
  const ticks: Tick[] = [];
  let t0 = 0;
  let sampling = true;
  let timer: NodeJS.Timeout | undefined;
  async function tick(): Promise<void> {
    const atMs = clock();
    const [backlog, text] = await Promise.all([
      run.redis.xlen(run.streamKey).catch(() => null),
      scrapeText(persistMetrics, 900),
    ]);
    ticks.push({
      atMs,
      backlog,
      persisted: sampleSum(text, 'spillway_persist_events_total'),
      writeRate: sampleValue(text, 'spillway_persist_write_rate_per_sec'),
      budget: sampleValue(text, 'spillway_persist_write_budget_per_sec'),
      io: ioServiced(run.cgroup),
    });
  }
  function schedule(k: number) {
    if (!sampling) return;
    const due = t0 + k * 1000 - clock();
    timer = setTimeout(() => void tick().finally(() => schedule(k + 1)), Math.max(0, due));
  }
  return {
    ticks,
    start(at: number) {
      t0 = at;
      void tick();
      schedule(1);
    },
    stop() {
      sampling = false;
      clearTimeout(timer);
    },
  };
}

/** The VU runner following the profile's stages against the pipeline's ingest. */
function stagesConfig(run: SpikeRun, opts: SpikeOptions, port: number): RunnerConfig {
  return {
    mode: 'stages',
    host: '127.0.0.1',
    port,
    connections: run.peak,
    connectPerTick: opts.connectPerTick,
    connectTickMs: 100,
    thinkMeanMs: run.profile.thinkTimeMs.mean,
    thinkJitter: run.profile.thinkTimeMs.jitter,
    warmupSec: 0,
    measureSec: 0,
    timeoutMs: 10_000,
    event: run.profile.event,
    keyPrefix: run.runTag,
    path: '/events',
    stages: opts.stages,
  };
}

/**
 * When the stream was empty (XLEN every 20 ms), or null and a warning when it
 * was not within the drain timeout.
 */
async function drained(run: SpikeRun, opts: SpikeOptions): Promise<number | null> {
  const deadline = Date.now() + opts.drainTimeoutSec * 1000;
  for (;;) {
    const length = await run.redis.xlen(run.streamKey);
    if (length === 0) return clock();
    if (Date.now() > deadline) {
      run.warnings.push(
        `the stream still held ${length} entries ${opts.drainTimeoutSec} s after the load`,
      );
      return null;
    }
    await sleep(20);
  }
}

/** The load through the VU runner, then the drain timed finely (XLEN every 20 ms). */
async function driveLoad(
  run: SpikeRun,
  opts: SpikeOptions,
  ui: ScenarioUi,
  port: number,
  sampler: ReturnType<typeof secondSampler>,
) {
  const runner = forkVuRunner();
  children.add(runner);
  const config = stagesConfig(run, opts, port);
  const loadSec = opts.stages.reduce((sum, stage) => sum + stage.durationSec, 0);
  const runnerSeconds: SecondFigures[] = [];
  let t0 = 0;
  try {
    const load = await runVuRunner(runner, config, (message) => {
      if (message.type === 'progress') ui.log(`  [spike] ${message.text}`);
      else if (message.type === 'window' && message.edge === 'start') {
        t0 = clock();
        sampler.start(t0);
        ui.phase(`spike: ${loadSec} s of load, ${run.peak} VUs at the peak`);
      } else if (message.type === 'second') {
        const s = message.figures;
        runnerSeconds.push(s);
        ui.phase(
          `spike: ${s.second + 1}/${loadSec} s, ${s.vus} VUs, ${s.answered} answers/s, backlog ${sampler.ticks.at(-1)?.backlog ?? '?'}`,
        );
      }
    });
    const loadEndMs = clock();
    const backlogAtLoadEnd = await run.redis.xlen(run.streamKey);
    ui.phase(`drain: ${backlogAtLoadEnd} entries left when the load ended`);
    const drainedAtMs = await drained(run, opts);
    return { load, runnerSeconds, t0, loadEndMs, drainedAtMs, backlogAtLoadEnd };
  } finally {
    await stopProcess(runner, { timeoutMs: 5000 });
  }
}

/** Deletes what the run wrote: its stream, idempotency records, sequences and database. */
async function cleanUp(run: SpikeRun): Promise<void> {
  const { redis, profile } = run;
  await redis.unlink(run.streamKey);
  await deleteMatching(redis, idempotencyKey('anon', `${run.runTag}-*`));
  for (let from = 1; from <= run.peak; from += 1000) {
    const keys = [];
    for (let i = from; i < Math.min(from + 1000, run.peak + 1); i++)
      keys.push(sequenceKey(profile.event.source, `${profile.event.subjectPrefix}${i}`));
    await redis.unlink(...keys);
  }
  await run.mongo.db(run.dbName).dropDatabase();
  run.warnings.push(...setNice(processesOf(run.cgroup), 0));
  redis.disconnect();
  await run.mongo.close();
}

/** The runner's seconds, the ticks and the server's write counts on one time axis. */
function timeAxis(
  driven: Awaited<ReturnType<typeof driveLoad>>,
  ticks: Tick[],
  serverWrites: WriteSample[],
): SpikeSecond[] {
  const { runnerSeconds, t0, drainedAtMs } = driven;
  const secondsTotal = Math.max(
    runnerSeconds.length,
    Math.ceil(((drainedAtMs ?? ticks.at(-1)?.atMs ?? t0) - t0) / 1000) + 1,
  );
  const seconds: SpikeSecond[] = [];
  const tickAt = (k: number) => ticks.find((tk) => tk.atMs >= t0 + k * 1000 - 200);
  for (let k = 0; k < secondsTotal; k++) {
    const r = runnerSeconds[k];
    const start = tickAt(k);
    const end = tickAt(k + 1);
    const diff = (f: (tk: Tick) => number) =>
      start && end && end !== start ? f(end) - f(start) : null;
    const kinds = r?.errors ?? { non2xx: 0, socket: 0, timeout: 0, connect: 0 };
    const w0 = writesAt(serverWrites, t0 + k * 1000);
    const w1 = writesAt(serverWrites, t0 + (k + 1) * 1000);
    const answered = r && r.answered > 0;
    seconds.push({
      t: k,
      vus: r?.vus ?? 0,
      offered: r?.offered ?? 0,
      answered: r?.answered ?? 0,
      p50: answered ? r.p50 : null,
      p95: answered ? r.p95 : null,
      p99: answered ? r.p99 : null,
      statuses: r?.statuses ?? {},
      errors: kinds.non2xx + kinds.socket + kinds.timeout + kinds.connect,
      errorKinds: kinds,
      backlog: end?.backlog ?? null,
      persisted: diff((tk) => tk.persisted),
      writes: w0 !== null && w1 !== null ? w1 - w0 : null,
      iops: diff((tk) => tk.io),
      writeRate: end && Number.isFinite(end.writeRate) ? end.writeRate : null,
    });
  }
  return seconds;
}

/** The run's totals, peaks and drain. */
function summarize(
  driven: Awaited<ReturnType<typeof driveLoad>>,
  seconds: SpikeSecond[],
  serverWrites: WriteSample[],
  figures: { maxBacklog: number; ceiling: number; persistedTotal: number; stored: number },
): SpikeResult['summary'] {
  const { load, t0, loadEndMs, drainedAtMs } = driven;
  const busiest = busiestSecond(serverWrites);
  let peak: SpikeSecond | undefined;
  for (const s of seconds) if ((s.backlog ?? 0) > (peak?.backlog ?? 0)) peak = s;
  const errorsByKind: Record<string, number> = {};
  for (const s of seconds) {
    for (const [status, n] of Object.entries(s.statuses))
      if (!status.startsWith('2')) errorsByKind[status] = (errorsByKind[status] ?? 0) + n;
    for (const kind of ['socket', 'timeout', 'connect'] as const)
      if (s.errorKinds[kind] > 0)
        errorsByKind[kind] = (errorsByKind[kind] ?? 0) + s.errorKinds[kind];
  }
  const drainSec = drainedAtMs === null ? Number.NaN : (drainedAtMs - loadEndMs) / 1000;
  const drain = drainOf(seconds, figures.ceiling);
  return {
    offered: load.sent,
    answered: Object.values(load.statuses).reduce((x, y) => x + y, 0),
    accepted: load.statuses['202'] ?? 0,
    errors: load.errors.total,
    errorsUnderMaxBacklog: seconds
      .filter((s) => (s.backlog ?? 0) < figures.maxBacklog)
      .reduce((sum, s) => sum + s.errors, 0),
    errorsByKind,
    peakBacklog: peak?.backlog ?? 0,
    peakBacklogAt: peak?.t ?? 0,
    busiestSecond: busiest.writes,
    busiestSecondAt: (busiest.atMs - t0) / 1000,
    persistedTotal: figures.persistedTotal,
    storedDocuments: figures.stored,
    loadEndedAt: (loadEndMs - t0) / 1000,
    drainedAt: drainedAtMs === null ? null : (drainedAtMs - t0) / 1000,
    ...(drain ? { drain } : {}),
    afterLoad: {
      backlog: driven.backlogAtLoadEnd,
      seconds: Number.isFinite(drainSec) ? drainSec : null,
    },
    latencyMs: load.latencyMs,
  };
}

/**
 * The load and the drain against the running pipeline, watched meanwhile: every
 * second (the sampler), the server's write commands (every 50 ms) and
 * Prometheus (the dashboard's answers over the run). The pipeline is stopped
 * at the end, whatever happened.
 */
async function measure(
  run: SpikeRun,
  opts: SpikeOptions,
  ui: ScenarioUi,
  where: { resultsDir: string; stamp: string },
  pipeline: Awaited<ReturnType<typeof startPipeline>>,
) {
  let prometheus: Prometheus | undefined;
  const writes = sampleServerWrites({
    mongodbUrl: run.env.MONGODB_URL as string,
    metricsUrl: run.env.DB_METRICS_URL,
    intervalMs: 50,
  });
  const sampler = secondSampler(run, pipeline.persistMetrics);
  let driven: Awaited<ReturnType<typeof driveLoad>>;
  let dashboard: DashboardAnswers;
  let counters: SlotCounters;
  let serverWrites: WriteSample[] = [];
  try {
    ui.phase('starting Prometheus (scraping ingest and persist every second)');
    prometheus = await startPrometheus(
      { ingest: [pipeline.ingestMetrics], persist: [pipeline.persistMetrics] },
      { logFile: join(where.resultsDir, `${run.label}-${where.stamp}-prometheus.log`) },
    );
    children.add(prometheus.proc);
    driven = await driveLoad(run, opts, ui, pipeline.port, sampler);
    // One more whole second of samples after the drain.
    await sleep(1100);
    const endMs = clock();
    await prometheus.scrapedSince(endMs);
    ui.phase('querying Prometheus for the dashboard');
    dashboard = await queryDashboard(prometheus, dashboardPanels(), {
      startMs: driven.t0,
      endMs,
      rateInterval: '5s',
    });
    counters = await slotCounters(prometheus, driven.t0, endMs);
  } finally {
    sampler.stop();
    serverWrites = await writes.stop();
    await prometheus?.stop();
    ui.phase('stopping the pipeline');
    await stopProcess(pipeline.proc, { timeoutMs: 60_000, signal: 'SIGINT' });
  }
  return { driven, dashboard, counters, serverWrites, sampler };
}

/** Each of SLOT_COUNTERS over the run, summed over persist's replicas, a point a second. */
type SlotCounters = Map<string, RangeSeries['points']>;

async function slotCounters(
  prometheus: Prometheus,
  startMs: number,
  endMs: number,
): Promise<SlotCounters> {
  const out: SlotCounters = new Map();
  for (const name of SLOT_COUNTERS) {
    const [series] = await prometheus.queryRange(`sum(${name})`, startMs, endMs, 1);
    out.set(name, series?.points ?? []);
  }
  return out;
}

/** The counters' last values at or before `atMs`. */
function countersAt(counters: SlotCounters, atMs: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, points] of counters) {
    const last = points.filter((p) => p.t <= atMs).at(-1);
    if (last) out.set(name, last.v);
  }
  return out;
}

/** What one budget slot was spent on from the largest backlog's peak to its end. */
function drainSlot(
  counters: SlotCounters,
  t0: number,
  drain: Drain | undefined,
  env: Record<string, string | undefined>,
): SlotFigures | undefined {
  if (!drain || drain.emptyAt === null) return undefined;
  const [from, to] = [drain.peakAt, drain.emptyAt].map((t) => countersAt(counters, t0 + t * 1000));
  if (!from || !to) return undefined;
  const docs = drain.rate * drain.seconds;
  return slotBetween(from, to, drain.seconds, docs, ceilingSpacingMs(env));
}

export async function runSpikeScenario(
  opts: SpikeOptions,
  ui: ScenarioUi,
  where: { resultsDir: string; stamp: string; smoke: boolean; ceiling?: number },
): Promise<SpikeResult> {
  const startedAt = new Date();
  const run = await prepare(opts, ui, startedAt);
  const ingestSettings = readPart('ingest', run.pipelineEnv);
  const persistSettings = readPart('persist', run.pipelineEnv);
  const ceiling = await runCeiling(run, opts, ui, where.ceiling);
  const compacted = await compactAof(run.redis);
  if (compacted !== undefined)
    ui.log(`Redis's AOF rewritten before the load (${fmt(compacted, 1)} s)`);
  const pipeline = await startPipeline(run, ui, where);
  const { driven, dashboard, counters, serverWrites, sampler } = await measure(
    run,
    opts,
    ui,
    where,
    pipeline,
  );
  const stored = await run.mongo.db(run.dbName).collection('events').estimatedDocumentCount();
  await cleanUp(run);

  const seconds = timeAxis(driven, sampler.ticks, serverWrites);
  const budgetMetric = sampler.ticks.at(-1)?.budget ?? Number.NaN;
  const summary = summarize(driven, seconds, serverWrites, {
    maxBacklog: ingestSettings.maxBacklog || Number.POSITIVE_INFINITY,
    ceiling: ceiling.docsPerSec,
    persistedTotal: sampler.ticks.at(-1)?.persisted ?? Number.NaN,
    stored,
  });
  const slot = drainSlot(counters, driven.t0, summary.drain, run.pipelineEnv);
  return {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: opts,
    smoke: where.smoke,
    profile: opts.profile ?? 'spike',
    persistWorkers: run.persistWorkers,
    thinkTimeMs: run.profile.thinkTimeMs,
    ingestWorkers: Number(process.env.INGEST_WORKERS ?? 3) || 3,
    drainNice: DRAIN_NICE,
    budget: Number.isFinite(budgetMetric) ? budgetMetric : persistSettings.dbWriteOpsPerSec,
    budgetFrom: Number.isFinite(budgetMetric)
      ? "persist's spillway_persist_write_budget_per_sec"
      : "persist's DB_WRITE_OPS_PER_SEC",
    maxBacklog: ingestSettings.maxBacklog,
    iopsLimit: iopsLimit(run.cgroup),
    ceiling,
    seconds,
    load: driven.load,
    summary: slot ? { ...summary, drainSlot: slot } : summary,
    dashboard,
    warnings: run.warnings,
  };
}
