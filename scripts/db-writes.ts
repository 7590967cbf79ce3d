/**
 * Counts write commands at the database server (not at the client): FerretDB's
 * per-command request counters (its debug address, DB_METRICS_URL), or mongod's
 * serverStatus().metrics.commands. Used by the tests and the benchmarks to check
 * the I/O budget where it matters.
 */
import { MongoClient } from 'mongodb';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { spawnEntry, stopProcess } from './processes.js';

const WRITE_COMMANDS = [
  'insert',
  'update',
  'delete',
  'findAndModify',
  'createIndexes',
  'dropIndexes',
  'create',
  'drop',
];

export async function serverWriteCommands(
  mongo: MongoClient,
  metricsUrl = process.env.DB_METRICS_URL,
): Promise<number> {
  if (metricsUrl) {
    const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(1000) })).text();
    let total = 0;
    for (const m of text.matchAll(
      /^ferretdb_client_requests_total\{command="(\w+)",[^}]*\} (\d+)/gm,
    )) {
      if (WRITE_COMMANDS.includes(m[1] as string)) total += Number(m[2]);
    }
    return total;
  }
  const status = await mongo.db('admin').command({ serverStatus: 1 });
  const commands = (status.metrics?.commands ?? {}) as Record<
    string,
    { total?: number | { toNumber(): number } }
  >;
  let total = 0;
  for (const name of WRITE_COMMANDS) {
    const value = commands[name]?.total ?? 0;
    total += typeof value === 'number' ? value : value.toNumber();
  }
  return total;
}

export interface WriteSample {
  /** When the read of the counter started and when its answer came (ms since the epoch, monotonic). */
  fromMs: number;
  toMs: number;
  /** Write commands so far, carried over a restart of the server (its counter starts again). */
  writes: number;
}

const clock = () => performance.timeOrigin + performance.now();

/**
 * Samples the server's write-command count every intervalMs until stopped, in a
 * process of its own: a test or benchmark that keeps its own event loop busy
 * (thousands of requests in flight) would otherwise delay its reads and leave
 * gaps. A server that does not answer (stopped, restarting) leaves a gap.
 */
export function sampleServerWrites(options: {
  mongodbUrl: string;
  metricsUrl?: string | undefined;
  intervalMs?: number;
}) {
  const child = spawnEntry(new URL(import.meta.url), {
    args: ['sample', String(options.intervalMs ?? 50)],
    env: { MONGODB_URL: options.mongodbUrl, DB_METRICS_URL: options.metricsUrl ?? '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const samples: WriteSample[] = [];
  let rest = '';
  child.proc.stdout?.setEncoding('utf8');
  child.proc.stdout?.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') samples.push(JSON.parse(line) as WriteSample);
  });
  return {
    samples,
    async stop(): Promise<WriteSample[]> {
      await stopProcess(child.proc, { timeoutMs: 5000 });
      return samples;
    },
  };
}

async function sample(intervalMs: number): Promise<void> {
  const mongo = new MongoClient(process.env.MONGODB_URL as string, {
    serverSelectionTimeoutMS: 2000,
  });
  const metricsUrl = process.env.DB_METRICS_URL || undefined;
  let stopped = false;
  process.on('SIGTERM', () => {
    stopped = true;
  });
  let offset = 0;
  let previous = 0;
  while (!stopped) {
    const fromMs = clock();
    const raw = await serverWriteCommands(mongo, metricsUrl).catch(() => undefined);
    if (raw !== undefined) {
      if (raw < previous) offset += previous;
      previous = raw;
      process.stdout.write(`${JSON.stringify({ fromMs, toMs: clock(), writes: raw + offset })}\n`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  await mongo.close(true);
}

/**
 * The most write commands seen in a sliding one-second window, as fine as the
 * sampling. A pair of samples counts only when the whole span of both reads
 * fits in one second, so a slow read can never stretch a window past it.
 * Returns the count and when (fromMs) the busiest window started.
 */
export function busiestSecond(samples: readonly WriteSample[]): { writes: number; atMs: number } {
  let most = { writes: 0, atMs: samples[0]?.fromMs ?? 0 };
  for (let i = 0; i < samples.length; i++) {
    const from = samples[i] as WriteSample;
    for (let j = i + 1; j < samples.length; j++) {
      const to = samples[j] as WriteSample;
      if (to.toMs - from.fromMs > 1000) break;
      if (to.writes - from.writes > most.writes)
        most = { writes: to.writes - from.writes, atMs: from.fromMs };
    }
  }
  return most;
}

export function maxWritesPerSecond(samples: readonly WriteSample[]): number {
  return busiestSecond(samples).writes;
}

runIfEntryPoint(import.meta.url, 'db-writes', async () => {
  const [command, interval] = process.argv.slice(2);
  if (command !== 'sample') throw new Error('usage: db-writes sample <intervalMs>');
  await sample(Number(interval));
});
