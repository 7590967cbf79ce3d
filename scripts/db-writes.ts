/**
 * Counts write commands at the database server (not at the client): FerretDB's
 * per-command request counters (its debug address, DB_METRICS_URL), or mongod's
 * serverStatus().metrics.commands. Used by the tests and the benchmarks to check
 * the I/O budget where it matters.
 */
import type { MongoClient } from 'mongodb';

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
  atMs: number;
  writes: number;
}

/** Samples the server's write-command count every intervalMs until stopped. */
export function sampleServerWrites(mongo: MongoClient, intervalMs = 50) {
  const samples: WriteSample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const atMs = performance.now();
      samples.push({ atMs, writes: await serverWriteCommands(mongo) });
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    samples,
    async stop(): Promise<WriteSample[]> {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

/**
 * The most write commands seen between two samples at most one second apart: a
 * sliding one-second window, as fine as the sampling.
 */
export function maxWritesPerSecond(samples: readonly WriteSample[]): number {
  let most = 0;
  for (let i = 0; i < samples.length; i++) {
    const from = samples[i] as WriteSample;
    for (let j = i + 1; j < samples.length; j++) {
      const to = samples[j] as WriteSample;
      if (to.atMs - from.atMs > 1000) break;
      most = Math.max(most, to.writes - from.writes);
    }
  }
  return most;
}
