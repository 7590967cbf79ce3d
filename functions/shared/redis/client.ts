import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../logger.js';

/**
 * A Redis client that fails fast instead of queueing: a command sent while the
 * connection is down errors at once, so a caller can answer 503 rather than hang.
 */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
    ...options,
  });
}

/** Resolves once the client is ready (or rejects after timeoutMs). */
export async function waitReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis not ready after ${timeoutMs} ms (status ${redis.status})`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/**
 * Every client gets an error listener (ioredis reports an unhandled error event
 * otherwise); the log says once that the connection is lost and once that it is
 * back, not once per reconnect attempt.
 */
export function watchConnection(redis: Redis, log: Logger, what = 'redis'): Redis {
  let lost = false;
  redis.on('error', (error: Error) => {
    if (lost) return;
    lost = true;
    log.warn({ err: error }, `${what} connection lost; reconnecting`);
  });
  redis.on('ready', () => {
    if (!lost) return;
    lost = false;
    log.info(`${what} connection back`);
  });
  return redis;
}
