/**
 * Support for the shared write budget's tests: a Redis of their own (started and
 * stopped with scripts/services.sh, so they can stop it without touching anyone
 * else's), writer processes, window counts, and a TCP proxy that can stall.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { WriterConfig, WriterLine } from './budget-writer.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Ms on the machine's monotonic clock (CLOCK_MONOTONIC), the same in every
 * process on it: each process's performance.timeOrigin is sampled at its start
 * and may be off by a few ms when the machine is busy.
 */
export const clock = () => Number(process.hrtime.bigint()) / 1e6;
const REDIS_PORT = process.env.SPILLWAY_BUDGET_REDIS_PORT ?? '6393';
const servicesEnv = () => ({
  ...process.env,
  SPILLWAY_DATA_DIR: process.env.SPILLWAY_BUDGET_DATA_DIR ?? `${ROOT}.data/budget`,
  SPILLWAY_REDIS_PORT: REDIS_PORT,
});

/** Starts (or reuses) the tests' own Redis; returns its URL. */
export function budgetRedisUp(): string {
  const out = execFileSync('bash', ['scripts/services.sh', 'up', 'redis'], {
    cwd: ROOT,
    env: servicesEnv(),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = /^REDIS_URL=(.*)$/m.exec(out)?.[1];
  if (!url) throw new Error(`services.sh printed no REDIS_URL:\n${out}`);
  return url.trim();
}

/** Stops the tests' own Redis (only it: its data dir has no database). */
export function budgetRedisStop(): void {
  execFileSync('bash', ['scripts/services.sh', 'stop'], {
    cwd: ROOT,
    env: servicesEnv(),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

export type WriteLine = Extract<WriterLine, { kind: 'write' }>;

export interface Writer {
  name: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
  /** The writer's JSON lines so far. */
  lines(): WriterLine[];
  writes(): WriteLine[];
  /** Its pino log lines' messages. */
  messages(): string[];
  /** Its pino log lines. */
  logs(): Array<Record<string, unknown>>;
  output(): string;
}

export function startWriter(config: WriterConfig): Writer {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/support/budget-writer.ts'], {
    cwd: ROOT,
    env: { ...process.env, WRITER_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout?.on('data', (chunk) => (output += chunk));
  proc.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  const parsed = () =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const lines = () => parsed().filter((line) => 'kind' in line) as unknown as WriterLine[];
  return {
    name: config.name,
    proc,
    exited,
    lines,
    writes: () => lines().filter((line): line is WriteLine => line.kind === 'write'),
    messages: () =>
      parsed()
        .filter((line) => typeof line.msg === 'string')
        .map((line) => line.msg as string),
    logs: () => parsed().filter((line) => typeof line.msg === 'string'),
    output: () => output,
  };
}

/** Waits for every writer to exit; a failed one fails the test with its output. */
export async function finished(writers: Writer[]): Promise<void> {
  const codes = await Promise.all(writers.map((writer) => writer.exited));
  codes.forEach((code, i) => {
    const writer = writers[i] as Writer;
    if (code !== 0) throw new Error(`writer ${writer.name} exited ${code}:\n${writer.output()}`);
  });
}

/** The most of these instants that any closed one-second window holds, wherever it starts. */
export function mostInOneSecond(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to++) {
    while ((sorted[to] as number) - (sorted[from] as number) > 1000) from++;
    most = Math.max(most, to - from + 1);
  }
  return most;
}

/**
 * Writes ordered by start: the smallest gap from one write's answer to the next
 * one's start (negative when two overlapped).
 */
export function smallestGap(writes: readonly WriteLine[]): number {
  const sorted = [...writes].sort((a, b) => a.start - b.start);
  let smallest = Number.POSITIVE_INFINITY;
  for (let i = 1; i < sorted.length; i++) {
    const gap = (sorted[i] as WriteLine).start - (sorted[i - 1] as WriteLine).answer;
    smallest = Math.min(smallest, gap);
  }
  return smallest;
}

/** Writes per second from the first start to the last answer. */
export function ratePerSec(writes: readonly WriteLine[]): number {
  const first = Math.min(...writes.map((w) => w.start));
  const last = Math.max(...writes.map((w) => w.answer));
  return (writes.length * 1000) / (last - first);
}

/**
 * A TCP proxy to Redis that can stall: while paused, nothing goes either way
 * (the connection stays up, commands go unanswered), and on resume what was held
 * flows on, in order.
 */
export class StallingProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private paused = false;

  constructor(private readonly targetPort: number) {
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      if (this.paused) {
        client.pause();
        upstream.pause();
      }
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    return address.port;
  }

  pause(): void {
    this.paused = true;
    for (const socket of this.sockets) socket.pause();
  }

  resume(): void {
    this.paused = false;
    for (const socket of this.sockets) socket.resume();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
