/**
 * What the benchmark scenarios share: the machine's figures, free ports, a
 * scenario's progress and log lines, the blkio counters of the database's group,
 * metrics scrapes, Redis clean-up and plain-text tables.
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { ensureServices } from '../scripts/services-env.js';
import type { RunnerConfig, RunnerMessage, RunnerResult } from './vu-runner.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Where a scenario reports to: a progress bar (npm run bench) or plain lines (bench:ingest). */
export interface ScenarioUi {
  /** A line for the reader (kept clear of the progress bars). */
  log(line: string): void;
  /** What runs now, and how many seconds the scenario has done of its estimate. */
  phase(text: string): void;
}

/** A ScenarioUi that writes lines to stderr: the thin commands use it. */
export const lineUi: ScenarioUi = {
  log: (line) => process.stderr.write(`${line}\n`),
  phase: (text) => process.stderr.write(`${text}\n`),
};

/** A run's timestamp as used in file names: 2026-11-28T23-43-52Z. */
export function fileStamp(date: Date): string {
  return date
    .toISOString()
    .replaceAll(':', '-')
    .replace(/\.\d+Z$/, 'Z');
}

export function readSysctl(name: string): string {
  try {
    return readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The machine, for the report: CPUs, load, node, kernel settings that matter to the load. */
export function machine() {
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    loadavg: loadavg(),
    node: process.version,
    somaxconn: readSysctl('net.core.somaxconn'),
  };
}
export type Machine = ReturnType<typeof machine>;

/** Raises net.core.somaxconn (so listen backlogs are not cut to 4096); warns when it cannot. */
export function tuneMachine(need: number): string[] {
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
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

/** Binds `port` (0: any) on loopback and lets it go; resolves the port, or undefined when it was taken. */
function tryPort(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/** The kernel's range of ports for outgoing connections (Linux; the usual one elsewhere). */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number];
  } catch {
    // not Linux
  }
  return [32768, 60999];
}

/**
 * A port to listen on that no outgoing connection will take before the
 * listener binds it: one free now, below the kernel's ephemeral range (a port
 * of listen(0) is in that range, and with thousands of connections opening a
 * process's own connection to Redis took one between its choice and its bind:
 * EADDRINUSE). Any free port when that range leaves no room below it.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const from = Math.max(10_000, low - 12_000);
  for (let tries = 0; tries < 50 && low - from > 100; tries++) {
    const found = await tryPort(from + Math.floor(Math.random() * (low - from)));
    if (found !== undefined) return found;
  }
  const any = await tryPort(0);
  if (any === undefined) throw new Error('no free port on 127.0.0.1');
  return any;
}

/** I/O operations the database's blkio group has done so far (NaN without a group). */
export function ioServiced(cgroup: string | undefined): number {
  if (!cgroup) return Number.NaN;
  try {
    const text = readFileSync(`${cgroup}/blkio.throttle.io_serviced`, 'utf8');
    return Number(/^Total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}

/** The write IOPS limit of the database's blkio group (undefined without one). */
export function iopsLimit(cgroup: string | undefined): number | undefined {
  if (!cgroup) return undefined;
  try {
    const text = readFileSync(`${cgroup}/blkio.throttle.write_iops_device`, 'utf8').trim();
    const value = Number(text.split(/\s+/)[1]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** A metrics endpoint's text, or '' when it does not answer within timeoutMs. */
export async function scrapeText(url: string, timeoutMs: number): Promise<string> {
  try {
    return await (await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })).text();
  } catch {
    return '';
  }
}

export async function deleteMatching(redis: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

export const fmt = (value: number | undefined | null, digits = 2) =>
  value === undefined || value === null || !Number.isFinite(value) ? '—' : value.toFixed(digits);
export const int = (value: number | undefined | null) =>
  value === undefined || value === null || !Number.isFinite(value)
    ? '—'
    : Math.round(value).toLocaleString('en-US');

/** A plain-text table, first column left-aligned, the others right-aligned. */
export function table(rows: string[][]): string {
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

/** A Markdown table. */
export function markdownTable(rows: string[][]): string {
  const [head, ...body] = rows;
  if (!head) return '';
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...body.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

/**
 * scripts/services.sh's variables (it starts what is missing), with the
 * database's metrics address and blkio group taken from the environment when
 * the services were given (REDIS_URL / MONGODB_URL set: the script then prints
 * neither).
 */
export function servicesEnv(): Record<string, string> {
  const env = ensureServices();
  for (const name of ['DB_METRICS_URL', 'DB_BLKIO_CGROUP']) {
    const value = process.env[name];
    if (!env[name] && value) env[name] = value;
  }
  return env;
}

/** A VU runner (bench/vu-runner.ts) in a process of its own, waiting for its config. */
export function forkVuRunner(): ChildProcess {
  return fork(fileURLToPath(new URL('./vu-runner.js', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [],
  });
}

/**
 * Sends a forked VU runner its config and resolves with its result; every other
 * message goes to `onMessage`. Rejects if the runner fails or exits first.
 */
export function runVuRunner(
  runner: ChildProcess,
  config: RunnerConfig,
  onMessage: (message: Exclude<RunnerMessage, { type: 'result' | 'failed' }>) => void,
): Promise<RunnerResult> {
  return new Promise<RunnerResult>((resolve, reject) => {
    runner.on('message', (message: RunnerMessage) => {
      if (message.type === 'result') resolve(message.result);
      else if (message.type === 'failed')
        reject(new Error(`load generator failed: ${message.error}`));
      else onMessage(message);
    });
    runner.once('exit', (code) =>
      reject(new Error(`load generator exited with ${code} before its result`)),
    );
    runner.send(config);
  });
}
