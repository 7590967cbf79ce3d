/**
 * The `ingest` HTTP function, configured from the environment: registered with
 * the Functions Framework (`functions-framework --target=ingest`) and exported
 * as one typed object for Spillway's lean host (functions/host/), which serves
 * the same handler.
 */
import { http } from '@google-cloud/functions-framework';
import { Registry } from 'prom-client';
import type { HttpFunction } from '../shared/function.js';
import { createLogger } from '../shared/logger.js';
import {
  createRedis,
  requireRedisVersion,
  waitReady,
  watchConnection,
} from '../shared/redis/client.js';
import { loadIngestConfig } from './config.js';
import { createIngest } from './handler.js';

const config = loadIngestConfig();
const log = createLogger('ingest', config.logLevel);
const registry = new Registry();
const redis = createRedis(config.redisUrl, { commandTimeout: config.redisTimeoutMs });
watchConnection(redis, log);
requireRedisVersion(redis, log);
const app = createIngest(config, redis, registry, log);
// Scripts are loaded on every (re)connect: a restarted Redis has forgotten them.
redis.on('ready', () => {
  app.store.preload().catch((error) => log.warn({ err: error }, 'could not preload the scripts'));
});

export const ingest: HttpFunction = {
  signature: 'http',
  handler: (req, res) => app.handle(req, res),
  config,
  registry,
  log,
  ready: () => app.ready(),
  async whenReady(timeoutMs) {
    await waitReady(redis, timeoutMs).catch((error: Error) =>
      log.warn({ err: error }, 'serving before Redis is ready'),
    );
  },
  async shutdown() {
    app.memory.stop();
    await redis.quit().catch(() => redis.disconnect());
  },
};

http('ingest', ingest.handler);
