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
 * Resolves when the client takes commands now (ready, or not connecting yet:
 * `wait`), else once it is ready; rejects when it fails to connect (an error,
 * or the end of the connection) or when `signal` aborts. Listeners are gone
 * either way.
 */
export function whenUsable(redis: Redis, signal: AbortSignal): Promise<void> {
  if (redis.status === 'ready' || redis.status === 'wait') return Promise.resolve();
  const closed = () => new Error(`Redis connection ${redis.status}`);
  if (redis.status === 'end') return Promise.reject(closed());
  return new Promise<void>((resolve, reject) => {
    const settle = (error?: unknown) => {
      redis.off('ready', ready);
      redis.off('error', failed);
      redis.off('end', ended);
      signal.removeEventListener('abort', aborted);
      if (error === undefined) resolve();
      else reject(error);
    };
    const ready = () => settle();
    const failed = (error?: unknown) => settle(error instanceof Error ? error : closed());
    const ended = () => settle(closed());
    const aborted = () => settle(signal.reason);
    redis.once('ready', ready);
    redis.once('error', failed);
    redis.once('end', ended);
    signal.addEventListener('abort', aborted, { once: true });
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

/** The oldest Redis Spillway runs on: script flags (allow-oom), PEXPIRE NX, XINFO lag, XAUTOCLAIM. */
export const MIN_REDIS_MAJOR = 7;

/** `redis_version` of an INFO server reply, and whether Spillway can run on it. */
export function redisVersionOf(info: string): { version: string; supported: boolean } {
  const version = /^redis_version:(\S+)/m.exec(info)?.[1] ?? 'unknown';
  const major = Number(version.split('.')[0]);
  return { version, supported: Number.isInteger(major) && major >= MIN_REDIS_MAJOR };
}

/**
 * Checks the server's version on every connect (a Redis may be replaced by an
 * older one behind the same address) and stops the process, saying why, on a
 * server older than MIN_REDIS_MAJOR: Spillway's scripts would fail part-way
 * there (on 6.x ingest's script fails after its XADD: an event stored but
 * answered 503, and its retry stored twice).
 */
export function requireRedisVersion(redis: Redis, log: Logger, exit = process.exit): void {
  redis.on('ready', () => {
    redis.info('server').then(
      (info) => {
        const { version, supported } = redisVersionOf(info);
        if (supported) return;
        log.fatal(
          { redisVersion: version },
          `Redis ${version} is too old: Spillway needs Redis ${MIN_REDIS_MAJOR}.0 or newer (Debian 12 and Ubuntu 24.04 ship it; elsewhere packages.redis.io)`,
        );
        exit(1);
      },
      () => undefined, // not answered: the next connect checks again
    );
  });
}
