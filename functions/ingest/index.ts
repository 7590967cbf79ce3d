/**
 * Registers the `ingest` HTTP function with the Functions Framework, configured
 * from the environment. Deploy with `functions-framework --target=ingest` or the
 * lean host (functions/host.ts), which serves this same registered function.
 */
import { http } from '@google-cloud/functions-framework';
import { Registry } from 'prom-client';
import { createLogger } from '../shared/logger.js';
import { createRedis, waitReady, watchConnection } from '../shared/redis/client.js';
import { loadIngestConfig } from './config.js';
import { createIngest } from './handler.js';

export const config = loadIngestConfig();
export const log = createLogger('ingest', config.logLevel);
export const registry = new Registry();
const redis = createRedis(config.redisUrl, { commandTimeout: config.redisTimeoutMs });
watchConnection(redis, log);
const ingest = createIngest(config, redis, registry, log);
// Scripts are loaded on every (re)connect: a restarted Redis has forgotten them.
redis.on('ready', () => {
  ingest.store
    .preload()
    .catch((error) => log.warn({ err: error }, 'could not preload the ingest script'));
});

http('ingest', (req, res) => ingest.handle(req, res));

/** For the host: the configured body cap, readiness, and a clean stop. */
export const maxBodyBytes = config.maxBodyBytes;
export const shutdownTimeoutMs = config.shutdownTimeoutMs;
export const ready = () => ingest.ready();
/** Resolves once Redis is ready (or after timeoutMs): a new worker takes no request before. */
export async function whenReady(timeoutMs: number): Promise<void> {
  await waitReady(redis, timeoutMs).catch((error: Error) =>
    log.warn({ err: error }, 'serving before Redis is ready'),
  );
}
export async function shutdown(): Promise<void> {
  await redis.quit().catch(() => redis.disconnect());
}
