/**
 * `npm run bench:ingest`: ingest against its two ceilings, in one run, on loopback.
 *
 *   (a)  bare node:http answering 202                       the machine's ceiling
 *   (b)  Functions Framework no-op on the framework's server  the framework's ceiling
 *   (c)  ingest (5 reads + 5 writes in Redis) on the lean host, dist/functions/host/main.js
 *   (c') the same registered ingest function on the framework's own server (extra row)
 *   (d)  (c) with Redis fsyncing its AOF on every write (appendfsync always): the cost of
 *        losing nothing acknowledged even on a machine crash (a Redis of its own, port 6392)
 *
 * Each server runs alone in its own child process; the load generator
 * (bench/vu-runner.ts) is another child. Per server: the reference load (paced VUs,
 * as k6 runs them, think time and event from k6/spike-profile.json), then
 * saturation (closed loop). Prints a table and writes bench/results/ingest-<ts>.json.
 * See bench/README.md.
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { idempotencyKey, sequenceKey } from '../functions/shared/redis/keys.js';
import { stopProcess, waitHttpReady } from '../scripts/processes.js';
import { latencyLimits, loadProfile, repoRoot } from './profile.js';
import type { RunnerConfig, RunnerMessage, RunnerResult } from './vu-runner.js';

const SERVERS = {
  a: { label: '(a) bare node:http', kind: 'bare', redis: false },
  b: { label: '(b) Functions Framework no-op', kind: 'ff-noop', redis: false },
  c: { label: '(c) ingest, lean host', kind: 'host', redis: 'everysec' },
  c2: { label: "(c') ingest, FF server", kind: 'ff-ingest', redis: 'everysec' },
  d: { label: '(d) ingest, lean host, AOF always', kind: 'host', redis: 'always' },
} as const;
type ServerId = keyof typeof SERVERS;

const MIN = { saturationSec: 15, pacedSec: 60, vus: 10_000, connections: 10_000 };
const TARGET_RATIO_B = 0.75;

const USAGE = `usage: npm run bench:ingest -- [options]
  --saturation-sec N   measured seconds of the closed-loop run per server (default 15; 0 skips)
  --paced-sec N        measured seconds of steady paced load per server (default 60; 0 skips)
  --vus N              paced virtual users, one connection each (default 10000)
  --connections N      connections of the saturation run (default 10000)
  --only LIST          servers to run, of a,b,c,c',d (default all; c2 = c')
  --warmup-sec N       closed loop: seconds between the last connection and the window (default 3)
  --connect-per-tick N connections opened per 100 ms while ramping up (default 250)`;

function options() {
  const { values } = parseArgs({
    options: {
      'saturation-sec': { type: 'string', default: String(MIN.saturationSec) },
      'paced-sec': { type: 'string', default: String(MIN.pacedSec) },
      vus: { type: 'string', default: String(MIN.vus) },
      connections: { type: 'string', default: String(MIN.connections) },
      only: { type: 'string', default: 'a,b,c,c2,d' },
      'warmup-sec': { type: 'string', default: '3' },
      'connect-per-tick': { type: 'string', default: '250' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: keyof typeof values, min: number) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < min) {
      console.error(`--${name} must be a number ≥ ${min}\n${USAGE}`);
      process.exit(2);
    }
    return value;
  };
  const only = String(values.only)
    .split(',')
    .map((id) => id.trim().replace("c'", 'c2'))
    .filter((id) => id !== '');
  for (const id of only) {
    if (!(id in SERVERS)) {
      console.error(`--only: unknown server ${id}\n${USAGE}`);
      process.exit(2);
    }
  }
  return {
    saturationSec: num('saturation-sec', 0),
    pacedSec: num('paced-sec', 0),
    vus: Math.floor(num('vus', 1)),
    connections: Math.floor(num('connections', 1)),
    only: (Object.keys(SERVERS) as ServerId[]).filter((id) => only.includes(id)),
    warmupSec: num('warmup-sec', 0),
    connectPerTick: Math.floor(num('connect-per-tick', 1)),
  };
}
type Options = ReturnType<typeof options>;

const log = (text: string) => process.stderr.write(`${text}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// --- machine ------------------------------------------------------------------

function readSysctl(name: string): string {
  try {
    return readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** Raises net.core.somaxconn (so listen backlogs are not cut to 4096); warns when it cannot. */
function tuneMachine(need: number): string[] {
  const warnings: string[] = [];
  if (Number(readSysctl('net.core.somaxconn')) < 65_535) {
    try {
      execFileSync('sysctl', ['-w', 'net.core.somaxconn=65535'], { stdio: 'pipe' });
    } catch (error) {
      warnings.push(
        `could not raise net.core.somaxconn to 65535 (${String((error as Error).message).split('\n')[0]}); it is ${readSysctl('net.core.somaxconn')}`,
      );
    }
  }
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const soft = Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? 'NaN');
  if (!(soft >= need + 500))
    warnings.push(
      `ulimit -n is ${soft}: ${need} connections need about ${need + 500} file descriptors per process`,
    );
  return warnings;
}

/** CPU seconds (user + system) of a process so far, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

async function redisCpuSeconds(redis: Redis | undefined): Promise<number> {
  if (!redis) return Number.NaN;
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1]);
  return field('used_cpu_user') + field('used_cpu_sys');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

// --- children -----------------------------------------------------------------

const children = new Set<ChildProcess>();

function killChildren() {
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
  resultsDir: string,
  stamp: string,
): Promise<RunningServer> {
  const port = await freePort();
  const logFile = join(resultsDir, `ingest-${stamp}-${id}.log`);
  const fd = openSync(logFile, 'a');
  const kind = SERVERS[id].kind;
  const script =
    kind === 'host'
      ? fileURLToPath(new URL('../functions/host/main.js', import.meta.url))
      : fileURLToPath(new URL('./servers.js', import.meta.url));
  const args = kind === 'host' ? [script] : [script, kind, String(port)];
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

interface PhaseResult extends RunnerResult {
  /** CPU used during the window, in % of one core: the server process and Redis. */
  serverCpuPercent: number;
  redisCpuPercent: number | null;
}

async function runPhase(
  name: string,
  config: RunnerConfig,
  server: RunningServer,
  redis: Redis | undefined,
): Promise<PhaseResult> {
  const runner = fork(fileURLToPath(new URL('./vu-runner.js', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [],
  });
  children.add(runner);
  let windowStart = { server: 0, redis: 0, at: 0 };
  let cpu = { server: Number.NaN, redis: Number.NaN };
  try {
    const result = await new Promise<RunnerResult>((resolve, reject) => {
      runner.on('message', (message: RunnerMessage) => {
        switch (message.type) {
          case 'progress':
            log(`  [${name}] ${message.text}`);
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
              log(`  [${name}] measuring for ${config.measureSec} s`);
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
          case 'result':
            resolve(message.result);
            break;
          case 'failed':
            reject(new Error(`load generator failed: ${message.error}`));
            break;
        }
      });
      runner.once('exit', (code) =>
        reject(new Error(`load generator exited with ${code} before its result`)),
      );
      runner.send(config);
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

/** The project's Redis (everysec), or a second one of its own that fsyncs every write. */
async function redisUrl(root: string, fsync: Fsync): Promise<string> {
  const env =
    fsync === 'always'
      ? {
          ...process.env,
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
  return url;
}

async function deleteMatching(redis: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

// --- report ---------------------------------------------------------------------

interface ServerReport {
  label: string;
  paced?: PhaseResult;
  saturation?: PhaseResult;
  logFile: string;
  error?: string;
}

const fmt = (value: number | undefined, digits = 2) =>
  value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits);
const int = (value: number | undefined) =>
  value === undefined || !Number.isFinite(value) ? '—' : Math.round(value).toLocaleString('en-US');

function table(rows: string[][]): string {
  const widths =
    rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  return rows
    .map((row, r) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join('  ')
        .concat(r === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : ''),
    )
    .join('\n');
}

// --- main -----------------------------------------------------------------------

async function main(): Promise<void> {
  const opts: Options = options();
  const root = repoRoot();
  const profile = loadProfile(root);
  const limits = latencyLimits(profile, 'spillway');
  const startedAt = new Date();
  const stamp = startedAt
    .toISOString()
    .replaceAll(':', '-')
    .replace(/\.\d+Z$/, 'Z');
  const resultsDir = join(root, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const offeredRps = (opts.vus * 1000) / profile.thinkTimeMs.mean;
  const full =
    opts.saturationSec >= MIN.saturationSec &&
    opts.pacedSec >= MIN.pacedSec &&
    opts.vus >= MIN.vus &&
    opts.connections >= MIN.connections &&
    opts.only.length === Object.keys(SERVERS).length;

  const warnings = tuneMachine(Math.max(opts.vus, opts.connections));
  for (const warning of warnings) log(`WARNING: ${warning}`);
  log(
    `bench:ingest ${startedAt.toISOString()}: ${cpus().length} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}, node ${process.version}, somaxconn ${readSysctl('net.core.somaxconn')}`,
  );
  log(
    `servers ${opts.only.join(',')}; paced: ${opts.vus} VUs, think ${profile.thinkTimeMs.mean} ms ± ${profile.thinkTimeMs.jitter * 100}% (k6/spike-profile.json) → ≈${offeredRps.toFixed(0)} req/s offered, ${opts.pacedSec} s measured; saturation: ${opts.connections} connections, ${opts.saturationSec} s measured`,
  );
  if (!full) log('NOTE: shortened run (flags below the defaults): not a full benchmark');

  const runTag = `bench-${startedAt.getTime()}`;
  const redisServers = new Map<Fsync, { url: string; client: Redis }>();
  for (const fsync of ['everysec', 'always'] as const) {
    if (!opts.only.some((id) => SERVERS[id].redis === fsync)) continue;
    const url = await redisUrl(root, fsync);
    const client = new Redis(url, { maxRetriesPerRequest: 2, lazyConnect: true });
    client.on('error', () => undefined); // a failed command fails the run
    await client.connect();
    redisServers.set(fsync, { url, client });
  }
  const reports: Partial<Record<ServerId, ServerReport>> = {};

  const base = {
    host: '127.0.0.1',
    connectPerTick: opts.connectPerTick,
    connectTickMs: 100,
    thinkMeanMs: profile.thinkTimeMs.mean,
    thinkJitter: profile.thinkTimeMs.jitter,
    event: profile.event,
    path: '/events',
  };

  try {
    for (const id of opts.only) {
      const label = SERVERS[id].label;
      const fsync = SERVERS[id].redis;
      const redis = fsync ? redisServers.get(fsync)?.client : undefined;
      const url = fsync ? (redisServers.get(fsync)?.url ?? '') : '';
      const streamKey = `bench:ingest:${startedAt.getTime()}:${id}`;
      const env: NodeJS.ProcessEnv = {
        FUNCTION_TARGET: 'ingest',
        INGEST_WORKERS: '1',
        LOG_LEVEL: 'warn',
        IDEMPOTENCY_TTL_SEC: '3600',
        ...(SERVERS[id].redis ? { REDIS_URL: url, STREAM_KEY: streamKey } : {}),
      };
      log(`\n${label}`);
      const server = await startServer(id, env, resultsDir, stamp);
      const report: ServerReport = { label, logFile: server.logFile };
      reports[id] = report;
      log(`  serving on 127.0.0.1:${server.port} (pid ${server.child.pid}), log ${server.logFile}`);
      try {
        if (opts.pacedSec > 0) {
          report.paced = await runPhase(
            `${id} paced`,
            {
              ...base,
              mode: 'paced',
              port: server.port,
              connections: opts.vus,
              warmupSec: 0,
              measureSec: opts.pacedSec,
              timeoutMs: 10_000,
              keyPrefix: `${runTag}-${id}-p`,
            },
            server,
            redis,
          );
        }
        if (opts.saturationSec > 0) {
          report.saturation = await runPhase(
            `${id} saturation`,
            {
              ...base,
              mode: 'closed',
              port: server.port,
              connections: opts.connections,
              warmupSec: opts.warmupSec,
              measureSec: opts.saturationSec,
              timeoutMs: 30_000,
              keyPrefix: `${runTag}-${id}-s`,
            },
            server,
            redis,
          );
        }
      } catch (error) {
        report.error = String((error as Error).message ?? error);
        log(`  FAILED: ${report.error}`);
      } finally {
        await stopChild(server.child);
        if (redis) {
          const length = await redis.xlen(streamKey);
          await redis.unlink(streamKey);
          log(`  deleted stream ${streamKey} (${length} entries)`);
        }
      }
    }
  } finally {
    killChildren();
    for (const { client: redis } of redisServers.values()) {
      const idem = await deleteMatching(redis, idempotencyKey('anon', `${runTag}-*`));
      const subjects = Math.max(opts.vus, opts.connections);
      let seqs = 0;
      for (let from = 1; from <= subjects; from += 1000) {
        const keys = [];
        for (let i = from; i < Math.min(from + 1000, subjects + 1); i++)
          keys.push(sequenceKey(`${profile.event.subjectPrefix}${i}`));
        seqs += await redis.unlink(...keys);
      }
      log(`deleted ${idem} idempotency records and ${seqs} subject sequences of this run`);
      await redis.quit();
    }
    if (redisServers.has('always'))
      execFileSync('bash', [join(root, 'scripts', 'services.sh'), 'stop'], {
        env: {
          ...process.env,
          SPILLWAY_DATA_DIR: join(root, '.data', 'bench-always'),
          SPILLWAY_REDIS_PORT: '6392',
        },
        stdio: 'ignore',
      });
  }

  // --- print ---
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
  for (const id of opts.only) {
    const r = reports[id];
    if (!r) continue;
    const s = r.saturation;
    const p = r.paced;
    const cpu = (phase?: PhaseResult) =>
      phase
        ? `${fmt(phase.serverCpuPercent, 0)}%${phase.redisCpuPercent === null ? '' : `/${fmt(phase.redisCpuPercent, 0)}%`}`
        : '—';
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
      `${cpu(s)} | ${cpu(p)}`,
    ]);
  }
  const lines: string[] = [];
  lines.push('');
  lines.push(
    `Saturation: ${opts.connections} keep-alive connections, closed loop, ${opts.saturationSec} s (latency = queueing, ms).`,
  );
  lines.push(
    `Reference load: ${opts.vus} paced VUs, think ${profile.thinkTimeMs.mean} ms ± ${profile.thinkTimeMs.jitter * 100}%, ≈${offeredRps.toFixed(0)} req/s offered, ${opts.pacedSec} s steady state (latency ms, write → last byte).`,
  );
  lines.push(
    'cpu: % of one core during the window, saturation | reference (server process / Redis).',
  );
  lines.push('');
  lines.push(table(rows));

  const sat = (id: ServerId) => reports[id]?.saturation?.rps;
  const ratio = (x?: number, y?: number) => (x !== undefined && y ? x / y : undefined);
  const ratios = {
    cOverA: ratio(sat('c'), sat('a')),
    cOverB: ratio(sat('c'), sat('b')),
    c2OverA: ratio(sat('c2'), sat('a')),
    c2OverB: ratio(sat('c2'), sat('b')),
    bOverA: ratio(sat('b'), sat('a')),
  };
  lines.push('');
  lines.push('Saturated throughput ratios:');
  lines.push(`  (c)/(a)  = ${fmt(ratios.cOverA, 3)}   ingest, lean host / bare node:http`);
  lines.push(
    `  (c)/(b)  = ${fmt(ratios.cOverB, 3)}   ingest, lean host / Functions Framework no-op (target ≥ ${TARGET_RATIO_B})`,
  );
  lines.push(`  (c')/(a) = ${fmt(ratios.c2OverA, 3)}   ingest, FF server / bare node:http`);
  lines.push(
    `  (c')/(b) = ${fmt(ratios.c2OverB, 3)}   ingest, FF server / Functions Framework no-op`,
  );
  lines.push(`  (b)/(a)  = ${fmt(ratios.bOverA, 3)}   the framework's share of the machine`);
  const d = reports.d;
  if (d) {
    lines.push('');
    lines.push(
      'The cost of appendfsync always (nothing acknowledged lost even on a machine crash):',
    );
    lines.push(`  (d)/(c) saturated = ${fmt(ratio(sat('d'), sat('c')), 3)}`);
    lines.push(
      `  reference p50 / p95 / p99: (c) ${fmt(reports.c?.paced?.latencyMs.p50)} / ${fmt(reports.c?.paced?.latencyMs.p95)} / ${fmt(reports.c?.paced?.latencyMs.p99)} ms, (d) ${fmt(d.paced?.latencyMs.p50)} / ${fmt(d.paced?.latencyMs.p95)} / ${fmt(d.paced?.latencyMs.p99)} ms`,
    );
  }

  const c = reports.c;
  const verdict = (ok: boolean | undefined) =>
    ok === undefined ? 'not measured' : ok ? 'MET' : 'NOT MET';
  const targets = {
    ratioCOverB: ratios.cOverB === undefined ? undefined : ratios.cOverB >= TARGET_RATIO_B,
    saturationErrors: c?.saturation ? c.saturation.errors.total === 0 : undefined,
    referenceErrors: c?.paced ? c.paced.errors.total === 0 : undefined,
    p95: c?.paced && limits[95] !== undefined ? c.paced.latencyMs.p95 <= limits[95] : undefined,
    p99: c?.paced && limits[99] !== undefined ? c.paced.latencyMs.p99 <= limits[99] : undefined,
  };
  lines.push('');
  lines.push('Targets for (c), ingest on the lean host:');
  lines.push(
    `  (c)/(b) ≥ ${TARGET_RATIO_B}: ${verdict(targets.ratioCOverB)} (${fmt(ratios.cOverB, 3)})`,
  );
  lines.push(
    `  0 errors at saturation: ${verdict(targets.saturationErrors)} (${int(c?.saturation?.errors.total)})`,
  );
  lines.push(
    `  0 errors at reference load: ${verdict(targets.referenceErrors)} (${int(c?.paced?.errors.total)})`,
  );
  lines.push(
    `  p95 ≤ ${limits[95]} ms at reference load: ${verdict(targets.p95)} (${fmt(c?.paced?.latencyMs.p95)} ms)`,
  );
  lines.push(
    `  p99 ≤ ${limits[99]} ms at reference load: ${verdict(targets.p99)} (${fmt(c?.paced?.latencyMs.p99)} ms)`,
  );

  const details: string[] = [];
  for (const id of opts.only) {
    const r = reports[id];
    if (!r) continue;
    for (const [name, phase] of [
      ['saturation', r.saturation],
      ['reference', r.paced],
    ] as const) {
      if (!phase) continue;
      const e = phase.errors;
      details.push(
        `  ${r.label} ${name}: ${phase.completed} answers in ${phase.measuredSec.toFixed(1)} s, ${phase.connectedAtStart}/${phase.connections} connections; statuses ${JSON.stringify(phase.statuses)}; errors non2xx ${e.non2xx} socket ${e.socket} timeout ${e.timeout} connect ${e.connect}${Object.keys(phase.errorCodes).length ? ` ${JSON.stringify(phase.errorCodes)}` : ''}; reconnects ${phase.reconnects}; generator ${fmt(phase.generator.cpuPercent, 0)}% cpu, loop delay p99 ${fmt(phase.generator.loopDelayP99Ms)} ms max ${fmt(phase.generator.loopDelayMaxMs)} ms`,
      );
    }
    if (r.error) details.push(`  ${r.label}: FAILED: ${r.error} (log ${r.logFile})`);
  }
  lines.push('');
  lines.push('Details (errors over the whole phase: ramp, warm-up and window):');
  lines.push(...details);
  if (warnings.length > 0) lines.push('', ...warnings.map((w) => `WARNING: ${w}`));
  if (!full) lines.push('', 'NOTE: shortened run: not a full benchmark.');

  const resultFile = join(resultsDir, `ingest-${stamp}.json`);
  lines.push('', `Results: ${resultFile}`);
  console.log(lines.join('\n'));

  writeFileSync(
    resultFile,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        full,
        options: opts,
        machine: {
          cpus: cpus().length,
          loadavgAtEnd: loadavg(),
          node: process.version,
          somaxconn: readSysctl('net.core.somaxconn'),
        },
        warnings,
        profile: {
          thinkTimeMs: profile.thinkTimeMs,
          event: profile.event,
          offeredRps,
          latencyLimitsMs: limits,
        },
        servers: reports,
        ratios,
        targets,
      },
      null,
      2,
    )}\n`,
  );
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killChildren();
    process.exit(130);
  });
}
process.on('exit', killChildren);

main().catch((error: unknown) => {
  killChildren();
  process.stderr.write(`bench:ingest failed: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
