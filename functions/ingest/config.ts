import type { Env } from '../shared/env.js';
import { readPart } from '../shared/settings.js';

/** Ingest's settings: those functions/shared/settings.ts names for it. */
export const loadIngestConfig = (env: Env = process.env) => readPart('ingest', env);
export type IngestConfig = ReturnType<typeof loadIngestConfig>;
