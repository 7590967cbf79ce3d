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
 * sliding second), and the IOPS the database's blkio group did. Both functions'
 * /metrics are kept every second too, to draw the operators' dashboard from the
 * run. The drain of the largest backlog is timed from the per-second samples
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
import { busiestSecond, sampleServerWrites, type WriteSample } from '../../scripts/db-writes.js';
import { hasExited, spawnEntry, stopProcess } from '../../scripts/processes.js';
import {
  deleteMatching,
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
import { MetricsRecorder } from '../metrics-recorder.js';
import { loadProfile } from '../profile.js';
import type { SeriesStore } from '../promql.js';
import type { RunnerConfig, RunnerResult, SecondFigures } from '../vu-runner.js';
import { rawInsertManyCeiling } from './persist.js';

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
}

/** The profile's stages, as the VU runner takes them. */
export function profileStages(): SpikeOptions['stages'] {
  return loadProfile().stages.map((stage) => ({
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
  thinkTimeMs: { mean: number; jitter: number };
  ingestWorkers: number;
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
    /** What was left when the load ended, and how long until the stream was empty (20 ms poll). */
    afterLoad: { backlog: number; seconds: number | null };
    latencyMs: RunnerResult['latencyMs'];
  };
  /** Both functions' metrics, scraped every second: the dashboard's input. */
  metrics: SeriesStore;
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

export async function runSpikeScenario(
  opts: SpikeOptions,
  ui: ScenarioUi,
  where: { resultsDir: string; stamp: string; smoke: boolean; ceiling?: number },
): Promise<SpikeResult> {
  const startedAt = new Date();
  const loaded = loadProfile();
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
  const cgroup = env.DB_BLKIO_CGROUP;
  const runId = `${startedAt.getTime().toString(36)}`;
  const streamKey = `bench:spike:${runId}`;
  const dbName = `bench_spike_${runId}`;
  const pipelineEnv = { ...process.env, ...env, STREAM_KEY: streamKey, MONGODB_DB: dbName };
  const ingestSettings = readPart('ingest', pipelineEnv);
  const persistSettings = readPart('persist', pipelineEnv);
  const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  const mongo = await new MongoClient(env.MONGODB_URL as string).connect();

  // The ceiling of this run, when the persist scenario did not measure it.
  let ceiling: SpikeResult['ceiling'];
  if (where.ceiling !== undefined) {
    ceiling = { docsPerSec: where.ceiling, from: "the persist scenario's row (b), same run" };
  } else {
    ui.phase(`raw insertMany ceiling, ${opts.ceilingSec} s`);
    const docsPerSec = await rawInsertManyCeiling(mongo.db(`${dbName}_ceiling`), opts.ceilingSec);
    await mongo.db(`${dbName}_ceiling`).dropDatabase();
    ceiling = {
      docsPerSec,
      from: `a raw insertMany loop of ${opts.ceilingSec} s before the spike`,
    };
    ui.log(`raw insertMany ceiling: ${Math.round(docsPerSec)} docs/s`);
  }

  const [port, metricsPort, persistPort, persistMetricsPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const logFile = join(where.resultsDir, `spike-${where.stamp}-pipeline.log`);
  const fd = openSync(logFile, 'a');
  ui.phase('starting the pipeline (npm start)');
  const pipeline = spawnEntry(
    fileURLToPath(new URL('../../scripts/pipeline.js', import.meta.url)),
    {
      env: {
        ...pipelineEnv,
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        PERSIST_PORT: String(persistPort),
        PERSIST_METRICS_PORT: String(persistMetricsPort),
        LOG_LEVEL: 'warn',
        IDEMPOTENCY_TTL_SEC: '3600',
      },
      stdio: ['ignore', fd, fd],
    },
  );
  closeSync(fd);
  children.add(pipeline.proc);
  const ingestWorkers = Number(process.env.INGEST_WORKERS ?? 3) || 3;
  {
    const deadline = Date.now() + 120_000;
    while (!readFileSync(logFile, 'utf8').includes('/events   (')) {
      if (hasExited(pipeline.proc))
        throw new Error(`the pipeline exited before it was up: ${readFileSync(logFile, 'utf8')}`);
      if (Date.now() > deadline)
        throw new Error(`the pipeline was not up after 120 s (${logFile})`);
      await sleep(200);
    }
  }
  ui.log(`pipeline up: ingest :${port}, persist :${persistPort}, log ${logFile}`);

  const ingestMetrics = `http://127.0.0.1:${metricsPort}/metrics`;
  const persistMetrics = `http://127.0.0.1:${persistMetricsPort}/metrics`;
  const recorder = new MetricsRecorder();
  const writes = sampleServerWrites({
    mongodbUrl: env.MONGODB_URL as string,
    metricsUrl: env.DB_METRICS_URL,
    intervalMs: 50,
  });
  const runTag = `bench-spike-${runId}`;
  const runnerSeconds: SecondFigures[] = [];
  interface Tick {
    atMs: number;
    backlog: number | null;
    persisted: number;
    io: number;
  }
  const ticks: Tick[] = [];
  let t0 = 0;
  let sampling = true;
  let tickTimer: NodeJS.Timeout | undefined;

  async function tick(): Promise<void> {
    const atMs = performance.timeOrigin + performance.now();
    const [backlog, ingestText, persistText] = await Promise.all([
      redis.xlen(streamKey).catch(() => null),
      scrapeText(ingestMetrics, 900),
      scrapeText(persistMetrics, 900),
    ]);
    recorder.add(atMs, [ingestText, persistText]);
    ticks.push({
      atMs,
      backlog,
      persisted: recorder.latest('spillway_persist_events_total'),
      io: ioServiced(cgroup),
    });
  }
  function schedule(k: number) {
    if (!sampling) return;
    const due = t0 + k * 1000 - (performance.timeOrigin + performance.now());
    tickTimer = setTimeout(
      () => {
        void tick().finally(() => schedule(k + 1));
      },
      Math.max(0, due),
    );
  }

  const runner = forkVuRunner();
  children.add(runner);
  const config: RunnerConfig = {
    mode: 'stages',
    host: '127.0.0.1',
    port,
    connections: peak,
    connectPerTick: opts.connectPerTick,
    connectTickMs: 100,
    thinkMeanMs: profile.thinkTimeMs.mean,
    thinkJitter: profile.thinkTimeMs.jitter,
    warmupSec: 0,
    measureSec: 0,
    timeoutMs: 10_000,
    event: profile.event,
    keyPrefix: runTag,
    path: '/events',
    stages: opts.stages,
  };
  const loadSec = opts.stages.reduce((sum, stage) => sum + stage.durationSec, 0);
  let load: RunnerResult;
  let loadEndMs = 0;
  let drainedAtMs: number | null = null;
  let backlogAtLoadEnd = 0;
  let serverWrites: WriteSample[] = [];
  try {
    load = await runVuRunner(runner, config, (message) => {
      switch (message.type) {
        case 'progress':
          ui.log(`  [spike] ${message.text}`);
          break;
        case 'window':
          if (message.edge === 'start') {
            t0 = performance.timeOrigin + performance.now();
            void tick();
            schedule(1);
            ui.phase(`spike: ${loadSec} s of load, ${peak} VUs at the peak`);
          }
          break;
        case 'second': {
          const s = message.figures;
          runnerSeconds.push(s);
          ui.phase(
            `spike: ${s.second + 1}/${loadSec} s, ${s.vus} VUs, ${s.answered} answers/s, backlog ${ticks.at(-1)?.backlog ?? '?'}`,
          );
          break;
        }
      }
    });
    loadEndMs = performance.timeOrigin + performance.now();
    backlogAtLoadEnd = await redis.xlen(streamKey);
    ui.phase(`drain: ${backlogAtLoadEnd} entries left when the load ended`);
    // The drain, timed finely: XLEN every 20 ms until the stream is empty.
    const deadline = Date.now() + opts.drainTimeoutSec * 1000;
    for (;;) {
      const length = await redis.xlen(streamKey);
      if (length === 0) {
        drainedAtMs = performance.timeOrigin + performance.now();
        break;
      }
      if (Date.now() > deadline) {
        warnings.push(
          `the stream still held ${length} entries ${opts.drainTimeoutSec} s after the load`,
        );
        break;
      }
      await sleep(20);
    }
    // One more whole second of samples after the drain.
    await sleep(1100);
  } finally {
    sampling = false;
    clearTimeout(tickTimer);
    await stopProcess(runner, { timeoutMs: 5000 });
    serverWrites = await writes.stop();
    ui.phase('stopping the pipeline');
    await stopProcess(pipeline.proc, { timeoutMs: 60_000, signal: 'SIGINT' });
  }

  const storedDocuments = await mongo.db(dbName).collection('events').estimatedDocumentCount();

  // Clean up what the run wrote.
  await redis.unlink(streamKey);
  await deleteMatching(redis, idempotencyKey('anon', `${runTag}-*`));
  for (let from = 1; from <= peak; from += 1000) {
    const keys = [];
    for (let i = from; i < Math.min(from + 1000, peak + 1); i++)
      keys.push(sequenceKey(profile.event.source, `${profile.event.subjectPrefix}${i}`));
    await redis.unlink(...keys);
  }
  await mongo.db(dbName).dropDatabase();
  redis.disconnect();
  await mongo.close();

  // --- one time axis ----------------------------------------------------------
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
    const statuses = r?.statuses ?? {};
    const kinds = r?.errors ?? { non2xx: 0, socket: 0, timeout: 0, connect: 0 };
    const w0 = writesAt(serverWrites, t0 + k * 1000);
    const w1 = writesAt(serverWrites, t0 + (k + 1) * 1000);
    const rateSeries = recorder.store.series.find(
      (s) => s.name === 'spillway_persist_write_rate_per_sec',
    );
    const endIndex = end ? ticks.indexOf(end) : -1;
    seconds.push({
      t: k,
      vus: r?.vus ?? 0,
      offered: r?.offered ?? 0,
      answered: r?.answered ?? 0,
      p50: r && r.answered > 0 ? r.p50 : null,
      p95: r && r.answered > 0 ? r.p95 : null,
      p99: r && r.answered > 0 ? r.p99 : null,
      statuses,
      errors: kinds.non2xx + kinds.socket + kinds.timeout + kinds.connect,
      errorKinds: kinds,
      backlog: end?.backlog ?? null,
      persisted: diff((tk) => tk.persisted),
      writes: w0 !== null && w1 !== null ? w1 - w0 : null,
      iops: diff((tk) => tk.io),
      writeRate: rateSeries && endIndex >= 0 ? (rateSeries.values[endIndex] ?? null) : null,
    });
  }
  const busiest = busiestSecond(serverWrites);
  let peakBacklog = 0;
  let peakBacklogAt = 0;
  for (const s of seconds)
    if ((s.backlog ?? 0) > peakBacklog) {
      peakBacklog = s.backlog ?? 0;
      peakBacklogAt = s.t;
    }
  const errorsByKind: Record<string, number> = {};
  for (const s of seconds) {
    for (const [status, n] of Object.entries(s.statuses))
      if (!status.startsWith('2')) errorsByKind[status] = (errorsByKind[status] ?? 0) + n;
    for (const kind of ['socket', 'timeout', 'connect'] as const)
      if (s.errorKinds[kind] > 0)
        errorsByKind[kind] = (errorsByKind[kind] ?? 0) + s.errorKinds[kind];
  }
  const maxBacklog = ingestSettings.maxBacklog || Number.POSITIVE_INFINITY;
  const budgetMetric = recorder.latest('spillway_persist_write_budget_per_sec');
  const budget = Number.isFinite(budgetMetric) ? budgetMetric : persistSettings.dbWriteOpsPerSec;
  const drainSec = drainedAtMs === null ? Number.NaN : (drainedAtMs - loadEndMs) / 1000;
  const drain = drainOf(seconds, ceiling.docsPerSec);

  return {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: opts,
    smoke: where.smoke,
    thinkTimeMs: profile.thinkTimeMs,
    ingestWorkers,
    budget,
    budgetFrom: Number.isFinite(budgetMetric)
      ? "persist's spillway_persist_write_budget_per_sec"
      : "persist's DB_WRITE_OPS_PER_SEC",
    maxBacklog: ingestSettings.maxBacklog,
    iopsLimit: iopsLimit(cgroup),
    ceiling,
    seconds,
    load,
    summary: {
      offered: load.sent,
      answered: Object.values(load.statuses).reduce((x, y) => x + y, 0),
      accepted: load.statuses['202'] ?? 0,
      errors: load.errors.total,
      errorsUnderMaxBacklog: seconds
        .filter((s) => (s.backlog ?? 0) < maxBacklog)
        .reduce((sum, s) => sum + s.errors, 0),
      errorsByKind,
      peakBacklog,
      peakBacklogAt,
      busiestSecond: busiest.writes,
      busiestSecondAt: (busiest.atMs - t0) / 1000,
      persistedTotal: recorder.latest('spillway_persist_events_total'),
      storedDocuments,
      loadEndedAt: (loadEndMs - t0) / 1000,
      drainedAt: drainedAtMs === null ? null : (drainedAtMs - t0) / 1000,
      ...(drain ? { drain } : {}),
      afterLoad: {
        backlog: backlogAtLoadEnd,
        seconds: Number.isFinite(drainSec) ? drainSec : null,
      },
      latencyMs: load.latencyMs,
    },
    metrics: recorder.store,
    warnings,
  };
}
