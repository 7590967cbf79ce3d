/**
 * `FUNCTION_TARGET=ingest|persist node dist/functions/host/main.js`: Spillway's
 * lean host for its Functions Framework functions (server.ts says why). The
 * container image and the local pipeline both run this command.
 *
 * <TARGET>_WORKERS > 1 (INGEST_WORKERS, PERSIST_WORKERS) forks that many worker
 * processes sharing the port (workers.ts).
 */
import cluster from 'node:cluster';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ConfigError, EnvReader } from '../shared/env.js';
import type { SpillwayFunction } from '../shared/function.js';
import { serve } from './server.js';
import { runWorkers } from './workers.js';

/** The command the local pipeline and the container image both run. */
export const START_COMMAND = ['node', 'dist/functions/host/main.js'] as const;

/** Each function: its module (loaded only where it runs) and its config (cheap, no side effects). */
export const TARGETS = {
  ingest: {
    load: async (): Promise<SpillwayFunction> => (await import('../ingest/index.js')).ingest,
    config: async () => (await import('../ingest/config.js')).loadIngestConfig(),
  },
  persist: {
    load: async (): Promise<SpillwayFunction> => (await import('../persist/index.js')).persist,
    config: async () => (await import('../persist/config.js')).loadPersistConfig(),
  },
} as const;
export type Target = keyof typeof TARGETS;

export interface HostOptions {
  target: Target;
  workers: number;
}

export function loadHostOptions(env = process.env): HostOptions {
  const r = new EnvReader(env);
  const target = r.oneOf('FUNCTION_TARGET', 'ingest', Object.keys(TARGETS) as Target[]);
  return { target, workers: r.int(`${target.toUpperCase()}_WORKERS`, 1, 1, 64) };
}

async function main(): Promise<void> {
  const options = loadHostOptions();
  const target = TARGETS[options.target];
  if (options.workers > 1 && cluster.isPrimary) {
    // The primary only needs where the metrics go; the workers run the function.
    const config = await target.config();
    runWorkers(options.workers, { host: config.host, port: config.metricsPort });
    return;
  }
  const running = await serve(await target.load());
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    running.stop().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`stop failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const entry = process.argv[1];
if (entry !== undefined && pathToFileURL(realpathSync(entry)).href === import.meta.url) {
  main().catch((error: unknown) => {
    const message =
      error instanceof ConfigError
        ? `configuration error: ${error.message}`
        : String((error as Error)?.stack ?? error);
    process.stderr.write(`${message}\n`);
    process.exit(1);
  });
}
