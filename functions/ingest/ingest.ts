/**
 * `createIngest(config, deps)`: the ingest function, built from its
 * configuration (its Redis client, its scripts loaded on every connect, its
 * memory admission started, its subscriber to persist's announcements open).
 * Importing this module starts nothing; index.ts
 * (the Functions Framework's entry) and the host call the factory.
 */
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { HttpFunction } from '../shared/function.js';
import { createLogger, type Logger } from '../shared/logger.js';
import {
  createRedis,
  requireRedisVersion,
  waitReady,
  watchConnection,
} from '../shared/redis/client.js';
import { RECEIPT_SECRET_KEY } from '../shared/redis/keys.js';
import { APPENDER_OPTIONS } from '../shared/redis/receipt-epoch.js';
import type { IngestConfig } from './config.js';
import { createIngestHandler } from './handler.js';

/** What ingest is built on; each is made from the configuration when not given. */
export interface IngestDeps {
  redis?: Redis;
  log?: Logger;
  registry?: Registry;
}

export function createIngest(config: IngestConfig, deps: IngestDeps = {}): HttpFunction {
  const log = deps.log ?? createLogger('ingest', config.logLevel);
  const registry = deps.registry ?? new Registry();
  const redis = deps.redis ?? connectRedis(config, log);
  const app = createIngestHandler(config, redis, registry, log);
  // On every (re)connect the scripts are loaded (a restarted Redis has forgotten
  // them); the receipts check the stream's epoch on it themselves (receipts.ts).
  redis.on('ready', () => {
    app.store.preload().catch((error) => log.warn({ err: error }, 'could not preload the scripts'));
  });
  if (config.receiptSecret.trim() === '')
    log.warn(
      { key: RECEIPT_SECRET_KEY },
      'RECEIPT_SECRET is not set: receipts are keyed with a secret kept in Redis, so whoever can read Redis can mint them; set RECEIPT_SECRET',
    );
  return {
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
    // Requests waiting for their commit get their answer now (checked once more).
    drain: async () => app.waiters.drain(),
    async shutdown() {
      app.memory.stop();
      await app.waiters.stop();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/**
 * Ingest's client appends to the stream (APPENDER_OPTIONS): it never sends a
 * command again across a reconnect (ioredis would, by default), so nothing
 * this process sends reaches a restarted Redis before the receipts' epoch
 * check (shared/redis/receipt-epoch.ts). Its scripts answer within
 * REDIS_TIMEOUT_MS or a 503 says so (Scripts' `timeoutMs`, judged after the
 * replies already received are read: ioredis's own `commandTimeout` fires in
 * a process that was busy for longer even when the reply is waiting in its
 * socket, and a 503 would deny an event Redis took). That `commandTimeout` is
 * kept, longer, as the backstop that ends a command in flight when its
 * connection dropped (neither resent nor answered) and every other command.
 */
/** How much longer than REDIS_TIMEOUT_MS ioredis waits for any command before it gives up on it. */
const COMMAND_BACKSTOP_MS = 5000;

function connectRedis(config: IngestConfig, log: Logger): Redis {
  const redis = createRedis(config.redisUrl, {
    ...APPENDER_OPTIONS,
    commandTimeout: config.redisTimeoutMs + COMMAND_BACKSTOP_MS,
  });
  watchConnection(redis, log);
  requireRedisVersion(redis, log);
  return redis;
}
