/**
 * `FUNCTION_TARGET=ingest|persist node dist/functions/host/main.js`: Spillway's
 * lean host for its Functions Framework functions (server.ts says why). The
 * container image and the local pipeline both run this command.
 *
 * <TARGET>_WORKERS > 1 (INGEST_WORKERS, PERSIST_WORKERS) forks that many worker
 * processes sharing the port (workers.ts).
 */
import cluster from 'node:cluster';
import { runIfEntryPoint } from '../shared/entrypoint.js';
import type { SpillwayFunction } from '../shared/function.js';
import { readPart } from '../shared/settings.js';
import { serve } from './server.js';
import { runWorkers } from './workers.js';

/** The command the local pipeline and the container image both run. */
export const START_COMMAND = ['node', 'dist/functions/host/main.js'] as const;

/** Each function: its factory (loaded only where it runs) and its config (cheap, no side effects). */
const TARGETS = {
  ingest: {
    load: async (): Promise<SpillwayFunction> =>
      (await import('../ingest/ingest.js')).createIngest(await TARGETS.ingest.config()),
    config: async () => (await import('../ingest/config.js')).loadIngestConfig(),
  },
  persist: {
    load: async (): Promise<SpillwayFunction> =>
      (await import('../persist/persist.js')).createPersist(await TARGETS.persist.config()),
    config: async () => (await import('../persist/config.js')).loadPersistConfig(),
  },
} as const;
type Target = keyof typeof TARGETS;

interface HostOptions {
  target: Target;
  workers: number;
}

function loadHostOptions(env = process.env): HostOptions {
  const settings = readPart('host', env);
  const target = settings.functionTarget;
  return {
    target,
    workers: target === 'ingest' ? settings.ingestWorkers : settings.persistWorkers,
  };
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

runIfEntryPoint(import.meta.url, 'host', main);
