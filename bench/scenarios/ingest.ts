/**
 * The ingest scenario: ingest against its two ceilings, in one run, on loopback.
 *
 *   (a)  bare node:http answering 202                       the machine's ceiling
 *   (b)  Functions Framework no-op on the framework's server  the framework's ceiling
 *   (c)  ingest (5 reads + 5 writes in Redis) on the lean host, dist/functions/host/main.js
 *   (c') the same registered ingest function on the framework's own server (extra row)
 *   (d)  (c) with Redis fsyncing its AOF on every write (appendfsync always): the cost of
 *        losing nothing acknowledged even on a machine crash (a Redis of its own, port 6392)
 *   (w)  (c) with every request asking to wait for the database (`Prefer: wait=2`), persist
 *        and the relay running behind it: 201 once committed, else 202 after 2 s; the
 *        reference load only (its latency is the commit's, not ingest's)
 *
 * Each server runs alone in its own child process; the load generator
 * (bench/vu-runner.ts) is another child. Per server: the reference load (paced VUs,
 * as k6 runs them, think time and event from k6/spike-profile.json), then
 * saturation (closed loop). With `profile`, (c) runs once more at the reference
 * load under `node --cpu-prof`, and the profile's heaviest frames (self time) are
 * kept. See bench/README.md.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { idempotencyKey, sequenceKey } from '../../functions/shared/redis/keys.js';
import { stopProcess, waitHttpReady } from '../../scripts/processes.js';
import {
  cpuSeconds,
  deleteMatching,
  fmt,
  forkVuRunner,
  freePort,
  int,
  type Machine,
  machine,
  runVuRunner,
  type ScenarioUi,
  sleep,
  table,
  tuneMachine,
} from '../common.js';
import { type CpuFrame, topSelfFrames } from '../cpu-profile.js';
import { loadProfile, type ProfileEvent, repoRoot, type SpikeProfile } from '../profile.js';
import type { RunnerConfig, RunnerResult } from '../vu-runner.js';

/** wait: the seconds every request asks to wait for the database (Prefer: wait); 0, none. */
export const SERVERS = {
  a: { label: '(a) bare node:http', kind: 'bare', redis: false, wait: 0 },
  b: { label: '(b) Functions Framework no-op', kind: 'ff-noop', redis: false, wait: 0 },
  c: { label: '(c) ingest, lean host', kind: 'host', redis: 'everysec', wait: 0 },
  c2: { label: "(c') ingest, FF server", kind: 'ff-ingest', redis: 'everysec', wait: 0 },
  d: { label: '(d) ingest, lean host, AOF always', kind: 'host', redis: 'always', wait: 0 },
  w: { label: '(w) ingest, lean host, Prefer: wait=2', kind: 'host', redis: 'everysec', wait: 2 },
} as const;
export type ServerId = keyof typeof SERVERS;

export interface IngestOptions {
  saturationSec: number;
  pacedSec: number;
  vus: number;
  connections: number;
  only: ServerId[];
  warmupSec: number;
  connectPerTick: number;
  /** Run (c) once more at the reference load under node --cpu-prof. */
  profile: boolean;
  /** A mean think time instead of the profile's (smoke runs only). */
  thinkMs?: number;
}

/** The full length: what a run below counts as shortened. */
export const FULL_INGEST: IngestOptions = {
  saturationSec: 15,
  pacedSec: 60,
  vus: 10_000,
  connections: 10_000,
  only: Object.keys(SERVERS) as ServerId[],
  warmupSec: 3,
  connectPerTick: 250,
  profile: false,
};

export function isFullIngest(opts: IngestOptions): boolean {
  return (
    opts.saturationSec >= FULL_INGEST.saturationSec &&
    opts.pacedSec >= FULL_INGEST.pacedSec &&
    opts.vus >= FULL_INGEST.vus &&
    opts.connections >= FULL_INGEST.connections &&
    opts.only.length === FULL_INGEST.only.length
  );
}

/** Seconds the scenario should take, for its progress bar. */
export function estimateIngestSec(opts: IngestOptions): number {
  const think = (opts.thinkMs ?? loadProfile().thinkTimeMs.mean) / 1000;
  const ramp = (n: number) => (n / opts.connectPerTick) * 0.1 + 1;
  const paced = opts.pacedSec > 0 ? ramp(opts.vus) + think + opts.pacedSec + 1 : 0;
  const saturation =
    opts.saturationSec > 0 ? ramp(opts.connections) + opts.warmupSec + opts.saturationSec + 1 : 0;
  const waiting = opts.only.filter((id) => SERVERS[id].wait > 0).length;
  return (
    opts.only.length * (paced + saturation + 3) -
    waiting * (saturation - 5) +
    (opts.profile ? paced + 4 : 0)
  );
}

export interface PhaseResult extends RunnerResult {
  /** CPU used during the window, in % of one core: the server process and Redis. */
  serverCpuPercent: number;
  redisCpuPercent: number | null;
}

export interface ServerReport {
  label: string;
  paced?: PhaseResult;
  saturation?: PhaseResult;
  logFile: string;
  error?: string;
}

export interface IngestResult {
  startedAt: string;
  finishedAt: string;
  full: boolean;
  options: IngestOptions;
  machine: Machine;
  warnings: string[];
  profile: {
    thinkTimeMs: { mean: number; jitter: number };
    event: ProfileEvent;
    offeredRps: number;
  };
  servers: Partial<Record<ServerId, ServerReport>>;
  /** Saturated throughput ratios. */
  ratios: {
    cOverA?: number | undefined;
    cOverB?: number | undefined;
    c2OverA?: number | undefined;
    c2OverB?: number | undefined;
    bOverA?: number | undefined;
    dOverC?: number | undefined;
  };
  /** (c) at the reference load under node --cpu-prof. */
  cpuProfile?: {
    file: string;
    paced: PhaseResult;
    totalMs: number;
    idleMs: number;
    top: CpuFrame[];
    error?: string;
  };
}

// --- children -----------------------------------------------------------------

const children = new Set<ChildProcess>();

/** Kills what this scenario left running (on a signal, or when the run fails). */
export function killIngestChildren() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}

async function stopChild(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  await stopProcess(child, { timeoutMs });
  children.delete(child);
}

interface RunningServer {
  child: ChildProcess;
  port: number;
  logFile: string;
}

async function startServer(
  id: ServerId,
  env: NodeJS.ProcessEnv,
  logFile: string,
  execArgv: string[] = [],
): Promise<RunningServer> {
  const port = await freePort();
  const fd = openSync(logFile, 'a');
  const kind = SERVERS[id].kind;
  const script =
    kind === 'host'
      ? fileURLToPath(new URL('../../functions/host/main.js', import.meta.url))
      : fileURLToPath(new URL('../servers.js', import.meta.url));
  const args = kind === 'host' ? [...execArgv, script] : [...execArgv, script, kind, String(port)];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env, PORT: String(port), METRICS_PORT: '0' },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  children.add(child);
  await waitHttpReady(`http://127.0.0.1:${port}/readyz`, {
    timeoutMs: 30_000,
    proc: child,
    what: `${SERVERS[id].label} (log ${logFile})`,
    // The lean host answers /readyz; the others answer once they listen (and the
    // framework's ingest listens once its Redis is ready).
    accept: kind === 'host' ? (status) => status === 200 : (status) => status > 0,
  });
  return { child, port, logFile };
}

async function redisCpuSeconds(redis: Redis | undefined): Promise<number> {
  if (!redis) return Number.NaN;
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1]);
  return field('used_cpu_user') + field('used_cpu_sys');
}

async function runPhase(
  name: string,
  config: RunnerConfig,
  server: RunningServer,
  redis: Redis | undefined,
  ui: ScenarioUi,
): Promise<PhaseResult> {
  const runner = forkVuRunner();
  children.add(runner);
  let windowStart = { server: 0, redis: 0, at: 0 };
  let cpu = { server: Number.NaN, redis: Number.NaN };
  try {
    const result = await runVuRunner(runner, config, (message) => {
      switch (message.type) {
        case 'progress':
          ui.log(`  [${name}] ${message.text}`);
          break;
        case 'window':
          if (message.edge === 'start') {
            const at = performance.now();
            const serverCpu = cpuSeconds(server.child.pid);
            redisCpuSeconds(redis).then(
              (redisCpu) => {
                windowStart = { server: serverCpu, redis: redisCpu, at };
              },
              () => {},
            );
            ui.phase(`${name}: measuring for ${config.measureSec} s`);
          } else {
            const seconds = (performance.now() - windowStart.at) / 1000;
            const serverCpu = cpuSeconds(server.child.pid);
            cpu = {
              server: ((serverCpu - windowStart.server) / seconds) * 100,
              redis: Number.NaN,
            };
            redisCpuSeconds(redis).then(
              (redisCpu) => {
                cpu.redis = ((redisCpu - windowStart.redis) / seconds) * 100;
              },
              () => {},
            );
          }
          break;
      }
    });
    await sleep(50); // the Redis INFO of the window's end
    return {
      ...result,
      serverCpuPercent: cpu.server,
      redisCpuPercent: redis ? cpu.redis : null,
    };
  } finally {
    await stopChild(runner, 5000);
  }
}

// --- Redis ----------------------------------------------------------------------

type Fsync = 'everysec' | 'always';

/**
 * The project's Redis (everysec), or a second one of its own that fsyncs every
 * write; and the project's database (everysec: for the row that waits on it).
 */
function servicesOf(root: string, fsync: Fsync): { url: string; mongodbUrl?: string } {
  const env =
    fsync === 'always'
      ? {
          ...process.env,
          REDIS_URL: '',
          SPILLWAY_DATA_DIR: join(root, '.data', 'bench-always'),
          SPILLWAY_REDIS_PORT: '6392',
          REDIS_APPENDFSYNC: 'always',
        }
      : process.env;
  const args = fsync === 'always' ? ['up', 'redis'] : ['up'];
  const out = execFileSync('bash', [join(root, 'scripts', 'services.sh'), ...args], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = /^REDIS_URL=(.+)$/m.exec(out)?.[1]?.trim();
  if (!url) throw new Error(`scripts/services.sh up printed no REDIS_URL line:\n${out}`);
  const mongodbUrl = /^MONGODB_URL=(.+)$/m.exec(out)?.[1]?.trim();
  return mongodbUrl ? { url, mongodbUrl } : { url };
}

// --- persist and the relay, behind the row that waits ---------------------------

interface Persistence {
  persist: ChildProcess;
  relay: ChildProcess;
  database: string;
}

/**
 * Persist and the relay on `streamKey`, as `npm start` runs them, with a
 * database of their own: what a request that waits for the database waits on.
 */
async function startPersistence(
  env: { REDIS_URL: string; MONGODB_URL: string; STREAM_KEY: string },
  database: string,
  logFile: string,
): Promise<Persistence> {
  const port = await freePort();
  const fd = openSync(logFile, 'a');
  const spawnDist = (path: string, extra: NodeJS.ProcessEnv) => {
    const child = spawn(process.execPath, [fileURLToPath(new URL(path, import.meta.url))], {
      env: { ...process.env, ...env, LOG_LEVEL: 'warn', STATUS_FILE: '', ...extra },
      stdio: ['ignore', fd, fd],
    });
    children.add(child);
    return child;
  };
  const persist = spawnDist('../../functions/host/main.js', {
    FUNCTION_TARGET: 'persist',
    PORT: String(port),
    METRICS_PORT: String(await freePort()),
    MONGODB_DB: database,
  });
  const relay = spawnDist('../../eventing/relay/main.js', {
    PERSIST_URL: `http://127.0.0.1:${port}/`,
  });
  closeSync(fd);
  await waitHttpReady(`http://127.0.0.1:${port}/readyz`, {
    timeoutMs: 30_000,
    proc: persist,
    what: `persist (log ${logFile})`,
  });
  return { persist, relay, database };
}

async function stopPersistence(p: Persistence, mongodbUrl: string): Promise<void> {
  await Promise.all([stopChild(p.relay), stopChild(p.persist, 40_000)]);
  const mongo = await new MongoClient(mongodbUrl).connect();
  try {
    await mongo.db(p.database).dropDatabase();
  } finally {
    await mongo.close();
  }
}

// --- the scenario ---------------------------------------------------------------

interface RedisService {
  url: string;
  mongodbUrl?: string;
  client: Redis;
}

/** What every step of one run shares: its options and output, its Redis servers, its rows. */
interface IngestRun {
  opts: IngestOptions;
  ui: ScenarioUi;
  where: { resultsDir: string; stamp: string };
  root: string;
  profile: SpikeProfile;
  startedAt: Date;
  /** Prefix of the run's idempotency keys, so that they can be found and deleted after. */
  runTag: string;
  redisServers: Map<Fsync, RedisService>;
  reports: Partial<Record<ServerId, ServerReport>>;
}

/** What the result says about the run beside its rows, known before the first row. */
interface IngestHead {
  full: boolean;
  machine: Machine;
  warnings: string[];
  offeredRps: number;
}

type Pass = 'paced' | 'saturation';

/**
 * Runs the scenario. Logs of the servers go to `<resultsDir>/ingest-<stamp>-<id>.log`,
 * the CPU profile (with `profile`) to `<resultsDir>/<stamp>-cpuprof/`.
 */
export async function runIngestScenario(
  opts: IngestOptions,
  ui: ScenarioUi,
  where: { resultsDir: string; stamp: string },
): Promise<IngestResult> {
  const { run, head } = await startRun(opts, ui, where);
  let cpuProfile: IngestResult['cpuProfile'];
  try {
    // Every server's reference load first, then every saturation run: a paced row
    // never follows another row's 10,000 closed connections (their TIME_WAIT
    // sockets and the kernel's cleanup would fall into its tail, not the next's).
    const passes: Pass[] = [
      ...(opts.pacedSec > 0 ? (['paced'] as const) : []),
      ...(opts.saturationSec > 0 ? (['saturation'] as const) : []),
    ];
    for (const pass of passes) for (const id of opts.only) await runServerPass(run, id, pass);
    if (opts.profile && opts.pacedSec > 0) cpuProfile = await runProfiled(run);
  } finally {
    await cleanUp(run);
  }
  return resultOf(run, head, cpuProfile);
}

/**
 * The run set up: the profile (its think time the options' where given), the
 * machine tuned, the plan logged, the Redis servers the rows need connected.
 */
async function startRun(
  opts: IngestOptions,
  ui: ScenarioUi,
  where: IngestRun['where'],
): Promise<{ run: IngestRun; head: IngestHead }> {
  const root = repoRoot();
  const loaded = loadProfile(root);
  const profile = {
    ...loaded,
    thinkTimeMs: { ...loaded.thinkTimeMs, mean: opts.thinkMs ?? loaded.thinkTimeMs.mean },
  };
  const startedAt = new Date();
  mkdirSync(where.resultsDir, { recursive: true });
  const offeredRps = (opts.vus * 1000) / profile.thinkTimeMs.mean;
  const full = isFullIngest(opts);
  const warnings = tuneMachine(Math.max(opts.vus, opts.connections));
  for (const warning of warnings) ui.log(`WARNING: ${warning}`);
  const m = machine();
  ui.log(
    `ingest ${startedAt.toISOString()}: ${m.cpus} CPUs, load average ${m.loadavg.map((l) => l.toFixed(2)).join(' ')}, node ${m.node}, somaxconn ${m.somaxconn}`,
  );
  ui.log(
    `servers ${opts.only.join(',')}; paced: ${opts.vus} VUs, think ${profile.thinkTimeMs.mean} ms ± ${profile.thinkTimeMs.jitter * 100}% (k6/spike-profile.json) → ≈${offeredRps.toFixed(0)} req/s offered, ${opts.pacedSec} s measured; saturation: ${opts.connections} connections, ${opts.saturationSec} s measured`,
  );
  if (!full) ui.log('NOTE: shortened run (below the full length): not a full benchmark');
  const run: IngestRun = {
    opts,
    ui,
    where,
    root,
    profile,
    startedAt,
    runTag: `bench-${startedAt.getTime()}`,
    redisServers: await connectRedis(root, opts),
    reports: {},
  };
  return { run, head: { full, machine: m, warnings, offeredRps } };
}

/** The Redis servers the chosen rows need (everysec, always), each with a client. */
async function connectRedis(root: string, opts: IngestOptions): Promise<Map<Fsync, RedisService>> {
  const redisServers = new Map<Fsync, RedisService>();
  const needRedis = (fsync: Fsync) =>
    opts.only.some((id) => SERVERS[id].redis === fsync) || (fsync === 'everysec' && opts.profile);
  for (const fsync of ['everysec', 'always'] as const) {
    if (!needRedis(fsync)) continue;
    const services = servicesOf(root, fsync);
    const client = new Redis(services.url, { maxRetriesPerRequest: 2, lazyConnect: true });
    client.on('error', () => undefined); // a failed command fails the run
    await client.connect();
    redisServers.set(fsync, { ...services, client });
  }
  return redisServers;
}

/** What every VU runner of the run shares: the profile's think time and event. */
function runnerBase(run: IngestRun) {
  return {
    host: '127.0.0.1',
    connectPerTick: run.opts.connectPerTick,
    connectTickMs: 100,
    thinkMeanMs: run.profile.thinkTimeMs.mean,
    thinkJitter: run.profile.thinkTimeMs.jitter,
    event: run.profile.event,
    path: '/events',
  };
}

/** The reference load: paced VUs; `wait` > 0, every request asks to wait for the database. */
function pacedConfig(run: IngestRun, port: number, keyPrefix: string, wait = 0): RunnerConfig {
  return {
    ...runnerBase(run),
    mode: 'paced',
    port,
    connections: run.opts.vus,
    warmupSec: 0,
    measureSec: run.opts.pacedSec,
    timeoutMs: 10_000,
    keyPrefix,
    ...(wait > 0 ? { headers: { Prefer: `wait=${wait}` } } : {}),
  };
}

/** Saturation: a closed loop on every connection, after a warm-up. */
function saturationConfig(run: IngestRun, port: number, keyPrefix: string): RunnerConfig {
  return {
    ...runnerBase(run),
    mode: 'closed',
    port,
    connections: run.opts.connections,
    warmupSec: run.opts.warmupSec,
    measureSec: run.opts.saturationSec,
    timeoutMs: 30_000,
    keyPrefix,
  };
}

/** A server's environment: ingest on its row's Redis and on a stream of its own. */
function serverEnv(run: IngestRun, id: ServerId, streamKey: string): NodeJS.ProcessEnv {
  const fsync = SERVERS[id].redis;
  const url = fsync ? (run.redisServers.get(fsync)?.url ?? '') : '';
  return {
    FUNCTION_TARGET: 'ingest',
    INGEST_WORKERS: '1',
    LOG_LEVEL: 'warn',
    IDEMPOTENCY_TTL_SEC: '3600',
    ...(fsync ? { REDIS_URL: url, STREAM_KEY: streamKey } : {}),
  };
}

/**
 * One row, one pass: its server started (with persist and the relay behind it
 * for the row that waits), the load run, everything stopped and its stream
 * deleted. A failed load is the row's error; a server that does not start
 * fails the run.
 */
async function runServerPass(run: IngestRun, id: ServerId, pass: Pass): Promise<void> {
  const { ui, where, startedAt } = run;
  const { label, redis: fsync, wait } = SERVERS[id];
  // A request that waits is timed by the database: only the reference load says anything.
  if (wait > 0 && pass === 'saturation') return;
  const services = fsync ? run.redisServers.get(fsync) : undefined;
  const redis = services?.client;
  const streamKey = `bench:ingest:${startedAt.getTime()}:${id}:${pass}`;
  ui.phase(`${label}: starting`);
  const logFile = join(where.resultsDir, `ingest-${where.stamp}-${id}-${pass}.log`);
  const behind =
    wait > 0 && services?.mongodbUrl
      ? await startPersistence(
          { REDIS_URL: services.url, MONGODB_URL: services.mongodbUrl, STREAM_KEY: streamKey },
          `bench_wait_${startedAt.getTime()}`,
          logFile,
        )
      : undefined;
  const server = await startServer(id, serverEnv(run, id, streamKey), logFile);
  run.reports[id] ??= { label, logFile: server.logFile };
  const report = run.reports[id] as ServerReport;
  ui.log(
    `${label}: serving on 127.0.0.1:${server.port} (pid ${server.child.pid}), log ${server.logFile}`,
  );
  try {
    await measurePass(run, id, pass, { server, redis, report });
  } catch (error) {
    const message = `${pass}: ${String((error as Error).message ?? error)}`;
    report.error = report.error ? `${report.error}; ${message}` : message;
    ui.log(`  FAILED: ${message}`);
  } finally {
    await stopChild(server.child);
    if (behind && services?.mongodbUrl) await stopPersistence(behind, services.mongodbUrl);
    if (redis) await deleteStream(redis, streamKey, ui);
  }
}

/** The pass's load against a running server, its figures into the row's report. */
async function measurePass(
  run: IngestRun,
  id: ServerId,
  pass: Pass,
  on: { server: RunningServer; redis: Redis | undefined; report: ServerReport },
): Promise<void> {
  const { opts, ui, runTag } = run;
  const { server, redis, report } = on;
  const label = SERVERS[id].label;
  if (pass === 'paced') {
    ui.phase(`${label}: reference load, ${opts.vus} VUs`);
    report.paced = await runPhase(
      `${id} paced`,
      pacedConfig(run, server.port, `${runTag}-${id}-p`, SERVERS[id].wait),
      server,
      redis,
      ui,
    );
  }
  if (pass === 'saturation') {
    ui.phase(`${label}: saturation, ${opts.connections} connections`);
    report.saturation = await runPhase(
      `${id} saturation`,
      saturationConfig(run, server.port, `${runTag}-${id}-s`),
      server,
      redis,
      ui,
    );
  }
}

async function deleteStream(redis: Redis, streamKey: string, ui: ScenarioUi): Promise<void> {
  const length = await redis.xlen(streamKey);
  await redis.unlink(streamKey);
  ui.log(`  deleted stream ${streamKey} (${length} entries)`);
}

/** (c) once more at the reference load under node --cpu-prof, and its heaviest frames. */
async function runProfiled(run: IngestRun): Promise<IngestResult['cpuProfile']> {
  const { opts, ui, where } = run;
  const redis = run.redisServers.get('everysec')?.client;
  const streamKey = `bench:ingest:${run.startedAt.getTime()}:profile`;
  const dir = join(where.resultsDir, `${where.stamp}-cpuprof`);
  mkdirSync(dir, { recursive: true });
  ui.phase(`(c) under node --cpu-prof: reference load, ${opts.vus} VUs`);
  const logFile = join(where.resultsDir, `ingest-${where.stamp}-profile.log`);
  const server = await startServer('c', serverEnv(run, 'c', streamKey), logFile, [
    '--cpu-prof',
    `--cpu-prof-dir=${dir}`,
  ]);
  let paced: PhaseResult;
  try {
    paced = await runPhase(
      'c profiled',
      pacedConfig(run, server.port, `${run.runTag}-c-prof`),
      server,
      redis,
      ui,
    );
  } finally {
    // SIGTERM: the host drains and exits, and node writes the profile on exit.
    await stopChild(server.child, 30_000);
    if (redis) await redis.unlink(streamKey);
  }
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (!file)
    return { file: dir, paced, totalMs: 0, idleMs: 0, top: [], error: 'no .cpuprofile written' };
  return { file: join(dir, file), paced, ...topSelfFrames(join(dir, file), 15) };
}

/**
 * Kills what is left, deletes what the run wrote to Redis (idempotency records,
 * subject sequences) and stops the Redis that fsyncs every write.
 */
async function cleanUp(run: IngestRun): Promise<void> {
  killIngestChildren();
  for (const { client: redis } of run.redisServers.values()) {
    const idem = await deleteMatching(redis, idempotencyKey('anon', `${run.runTag}-*`));
    const seqs = await deleteSequences(redis, run);
    run.ui.log(`deleted ${idem} idempotency records and ${seqs} subject sequences of this run`);
    await redis.quit();
  }
  if (run.redisServers.has('always'))
    execFileSync('bash', [join(run.root, 'scripts', 'services.sh'), 'stop'], {
      env: {
        ...process.env,
        SPILLWAY_DATA_DIR: join(run.root, '.data', 'bench-always'),
        SPILLWAY_REDIS_PORT: '6392',
      },
      stdio: 'ignore',
    });
}

/** Every VU's subject sequence (one subject per VU or connection), 1000 keys a command. */
async function deleteSequences(redis: Redis, run: IngestRun): Promise<number> {
  const { event } = run.profile;
  const subjects = Math.max(run.opts.vus, run.opts.connections);
  let seqs = 0;
  for (let from = 1; from <= subjects; from += 1000) {
    const keys = [];
    for (let i = from; i < Math.min(from + 1000, subjects + 1); i++)
      keys.push(sequenceKey(event.source, `${event.subjectPrefix}${i}`));
    seqs += await redis.unlink(...keys);
  }
  return seqs;
}

function resultOf(
  run: IngestRun,
  head: IngestHead,
  cpuProfile: IngestResult['cpuProfile'],
): IngestResult {
  const { reports, profile } = run;
  const sat = (id: ServerId) => reports[id]?.saturation?.rps;
  const ratio = (x?: number, y?: number) => (x !== undefined && y ? x / y : undefined);
  return {
    startedAt: run.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    full: head.full,
    options: run.opts,
    machine: head.machine,
    warnings: head.warnings,
    profile: {
      thinkTimeMs: profile.thinkTimeMs,
      event: profile.event,
      offeredRps: head.offeredRps,
    },
    servers: reports,
    ratios: {
      cOverA: ratio(sat('c'), sat('a')),
      cOverB: ratio(sat('c'), sat('b')),
      c2OverA: ratio(sat('c2'), sat('a')),
      c2OverB: ratio(sat('c2'), sat('b')),
      bOverA: ratio(sat('b'), sat('a')),
      dOverC: ratio(sat('d'), sat('c')),
    },
    ...(cpuProfile ? { cpuProfile } : {}),
  };
}

// --- text -------------------------------------------------------------------------

/** CPU during a window, % of one core: the server, and Redis where the row has one. */
function cpuCell(phase?: PhaseResult): string {
  return phase
    ? `${fmt(phase.serverCpuPercent, 0)}%${phase.redisCpuPercent === null ? '' : `/${fmt(phase.redisCpuPercent, 0)}%`}`
    : '—';
}

/** One row per server: saturation, then the reference load, then CPU in both. */
function serverRows(result: IngestResult): string[][] {
  const rows: string[][] = [
    [
      'server',
      'sat req/s',
      'sat err',
      'sat p50',
      'sat p99',
      'ref p50',
      'ref p95',
      'ref p99',
      'ref max',
      'ref req/s',
      'ref err',
      'cpu srv/redis',
    ],
  ];
  for (const id of result.options.only) {
    const r = result.servers[id];
    if (!r) continue;
    const s = r.saturation;
    const p = r.paced;
    rows.push([
      r.label + (r.error ? ' (FAILED)' : ''),
      int(s?.rps),
      int(s?.errors.total),
      fmt(s?.latencyMs.p50, 1),
      fmt(s?.latencyMs.p99, 1),
      fmt(p?.latencyMs.p50),
      fmt(p?.latencyMs.p95),
      fmt(p?.latencyMs.p99),
      fmt(p?.latencyMs.max),
      fmt(p?.rps, 1),
      int(p?.errors.total),
      `${cpuCell(s)} | ${cpuCell(p)}`,
    ]);
  }
  return rows;
}

/** What the two loads were, so the table's figures can be read. */
function loadLines(result: IngestResult): string[] {
  const { options: opts, profile } = result;
  return [
    `Saturation: ${opts.connections} keep-alive connections, closed loop, ${opts.saturationSec} s (latency = queueing, ms).`,
    `Reference load: ${opts.vus} paced VUs, think ${profile.thinkTimeMs.mean} ms ± ${profile.thinkTimeMs.jitter * 100}%, ≈${profile.offeredRps.toFixed(0)} req/s offered, ${opts.pacedSec} s steady state (latency ms, write → last byte).`,
    'cpu: % of one core during the window, saturation | reference (server process / Redis).',
  ];
}

function ratioLines(ratios: IngestResult['ratios']): string[] {
  return [
    'Saturated throughput ratios:',
    `  (c)/(a)  = ${fmt(ratios.cOverA, 3)}   ingest, lean host / bare node:http`,
    `  (c)/(b)  = ${fmt(ratios.cOverB, 3)}   ingest, lean host / Functions Framework no-op`,
    `  (c')/(a) = ${fmt(ratios.c2OverA, 3)}   ingest, FF server / bare node:http`,
    `  (c')/(b) = ${fmt(ratios.c2OverB, 3)}   ingest, FF server / Functions Framework no-op`,
    `  (b)/(a)  = ${fmt(ratios.bOverA, 3)}   the framework's share of the machine`,
  ];
}

/** (d) beside (c): what fsyncing every write costs; nothing when (d) did not run. */
function aofAlwaysLines(result: IngestResult): string[] {
  const { c, d } = result.servers;
  if (!d) return [];
  return [
    '',
    'The cost of appendfsync always (nothing acknowledged lost even on a machine crash):',
    `  (d)/(c) saturated = ${fmt(result.ratios.dOverC, 3)}`,
    `  reference p50 / p95 / p99: (c) ${fmt(c?.paced?.latencyMs.p50)} / ${fmt(c?.paced?.latencyMs.p95)} / ${fmt(c?.paced?.latencyMs.p99)} ms, (d) ${fmt(d.paced?.latencyMs.p50)} / ${fmt(d.paced?.latencyMs.p95)} / ${fmt(d.paced?.latencyMs.p99)} ms`,
  ];
}

/** (w) beside (c): how many requests that waited saw their commit; nothing when (w) did not run. */
function waitLines(result: IngestResult): string[] {
  const w = result.servers.w?.paced;
  if (!w) return [];
  const c = result.servers.c?.paced;
  const committed = w.statuses['201'] ?? 0;
  return [
    '',
    `Waiting for the database (Prefer: wait=2, persist and the relay behind ingest): ${committed} of ${w.completed} answered 201 (committed within 2 s), ${w.statuses['202'] ?? 0} 202.`,
    `  reference p50 / p95 / p99: (w) ${fmt(w.latencyMs.p50)} / ${fmt(w.latencyMs.p95)} / ${fmt(w.latencyMs.p99)} ms, (c) ${fmt(c?.latencyMs.p50)} / ${fmt(c?.latencyMs.p95)} / ${fmt(c?.latencyMs.p99)} ms`,
  ];
}

/** Every phase's counts and errors, and every failure with its log. */
function detailLines(result: IngestResult): string[] {
  const lines = ['', 'Details (errors over the whole phase: ramp, warm-up and window):'];
  for (const id of result.options.only) {
    const r = result.servers[id];
    if (!r) continue;
    for (const [name, phase] of [
      ['saturation', r.saturation],
      ['reference', r.paced],
    ] as const) {
      if (!phase) continue;
      lines.push(`  ${r.label} ${name}: ${phaseDetails(phase)}`);
    }
    if (r.error) lines.push(`  ${r.label}: FAILED: ${r.error} (log ${r.logFile})`);
  }
  return lines;
}

/** The scenario's table and details, as plain text. */
export function ingestText(result: IngestResult): string {
  const lines = [
    ...loadLines(result),
    '',
    table(serverRows(result)),
    '',
    ...ratioLines(result.ratios),
    ...aofAlwaysLines(result),
    ...waitLines(result),
    ...detailLines(result),
  ];
  const prof = result.cpuProfile;
  if (prof) {
    lines.push('');
    lines.push(
      `CPU profile of (c) at the reference load (node --cpu-prof; p95 ${fmt(prof.paced.latencyMs.p95)} ms, p99 ${fmt(prof.paced.latencyMs.p99)} ms under the profiler): ${prof.file}`,
    );
    lines.push(cpuProfileText(prof));
  }
  if (result.warnings.length > 0) lines.push('', ...result.warnings.map((w) => `WARNING: ${w}`));
  if (!result.full) lines.push('', 'NOTE: shortened run: not a full benchmark.');
  return lines.join('\n');
}

export function phaseDetails(phase: PhaseResult): string {
  const e = phase.errors;
  return `${phase.completed} answers in ${phase.measuredSec.toFixed(1)} s, ${phase.connectedAtStart}/${phase.connections} connections; statuses ${JSON.stringify(phase.statuses)}; errors non2xx ${e.non2xx} socket ${e.socket} timeout ${e.timeout} connect ${e.connect}${Object.keys(phase.errorCodes).length ? ` ${JSON.stringify(phase.errorCodes)}` : ''}; reconnects ${phase.reconnects}; generator ${fmt(phase.generator.cpuPercent, 0)}% cpu, loop delay p99 ${fmt(phase.generator.loopDelayP99Ms)} ms max ${fmt(phase.generator.loopDelayMaxMs)} ms`;
}

export function cpuProfileText(prof: NonNullable<IngestResult['cpuProfile']>): string {
  if (prof.error) return `  ${prof.error}`;
  const busy = prof.totalMs - prof.idleMs;
  const rows = [['self ms', '% of busy', 'function', 'where']];
  for (const frame of prof.top)
    rows.push([
      fmt(frame.selfMs, 0),
      `${fmt((frame.selfMs / busy) * 100, 1)}%`,
      frame.functionName,
      frame.where,
    ]);
  return `  profiled ${fmt(prof.totalMs / 1000, 1)} s, busy ${fmt(busy / 1000, 1)} s (${fmt((busy / prof.totalMs) * 100, 0)}%); top frames by self time:\n${table(
    rows.map((row) => [row[2] ?? '', row[0] ?? '', row[1] ?? '', row[3] ?? '']),
  )
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n')}`;
}
