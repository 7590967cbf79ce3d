import type { Env } from '../shared/env.js';
import { readPart } from '../shared/settings.js';

/** Persist's settings: those functions/shared/settings.ts names for it, with its own defaults. */
export const loadPersistConfig = (env: Env = process.env) =>
  readPart('persist', env, {
    PORT: 8081,
    METRICS_PORT: 9091,
    MAX_BODY_BYTES: 1024 * 1024,
    SHUTDOWN_TIMEOUT_MS: 30_000,
  });
export type PersistConfig = ReturnType<typeof loadPersistConfig>;
