/**
 * The part of the configuration every Spillway process shares, parsed once:
 * where Redis and the stream are and how much to log; and, for a process that
 * serves HTTP, where it listens, where its metrics are, and how long it may take
 * to stop. Each function's config is this plus its own knobs.
 */
import { type EnvReader, LOG_LEVELS, type LogLevel } from './env.js';
import { STREAM_KEY } from './names.js';

export interface CommonConfig {
  redisUrl: string;
  streamKey: string;
  logLevel: LogLevel;
}

export interface ServiceConfig extends CommonConfig {
  /** Address to bind: 127.0.0.1 by default (HOST=0.0.0.0 in the container image). */
  host: string;
  port: number;
  /** Prometheus metrics, on their own port (not on the public route). */
  metricsPort: number;
  /** Larger bodies get 413, and are not read past this. */
  maxBodyBytes: number;
  /** Longest wait for in-flight work on SIGTERM. */
  shutdownTimeoutMs: number;
}

export function commonConfig(r: EnvReader): CommonConfig {
  return {
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6390', ['redis:', 'rediss:']),
    streamKey: r.string('STREAM_KEY', STREAM_KEY),
    logLevel: r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
  };
}

export function serviceConfig(
  r: EnvReader,
  defaults: { port: number; metricsPort: number; maxBodyBytes: number; shutdownTimeoutMs: number },
): ServiceConfig {
  return {
    ...commonConfig(r),
    host: r.string('HOST', '127.0.0.1'),
    port: r.int('PORT', defaults.port, 0, 65535),
    metricsPort: r.int('METRICS_PORT', defaults.metricsPort, 0, 65535),
    maxBodyBytes: r.int('MAX_BODY_BYTES', defaults.maxBodyBytes, 64, 64 * 1024 * 1024),
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', defaults.shutdownTimeoutMs, 0, 600_000),
  };
}
