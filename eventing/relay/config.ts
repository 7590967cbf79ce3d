import type { Env } from '../../functions/shared/env.js';
import { readPart } from '../../functions/shared/settings.js';

/** The relay's settings: those functions/shared/settings.ts names for it. */
export const loadRelayConfig = (env: Env = process.env) => readPart('relay', env);
