import { type Env, EnvReader, LOG_LEVELS, type LogLevel } from '../shared/env.js';
import { STREAM_KEY } from '../shared/names.js';

export interface IngestConfig {
  port: number;
  metricsPort: number;
  redisUrl: string;
  streamKey: string;
  maxBodyBytes: number;
  /** Stream length at which ingest answers 503; 0 = no limit. */
  maxBacklog: number;
  backlogRetryAfterSec: number;
  /** Per client per second; 0 = off. */
  rateLimitPerSec: number;
  /** Bearer tokens accepted; empty = no authentication. */
  apiKeys: string[];
  idempotencyTtlSec: number;
  redisTimeoutMs: number;
  shutdownTimeoutMs: number;
  defaultSource: string;
  logLevel: LogLevel;
}

export function loadIngestConfig(env: Env = process.env): IngestConfig {
  const r = new EnvReader(env);
  return {
    port: r.int('PORT', 8080, 0, 65535),
    metricsPort: r.int('METRICS_PORT', 9090, 0, 65535),
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6390', ['redis:', 'rediss:']),
    streamKey: r.string('STREAM_KEY', STREAM_KEY),
    maxBodyBytes: r.int('MAX_BODY_BYTES', 256 * 1024, 64, 64 * 1024 * 1024),
    maxBacklog: r.int('MAX_BACKLOG', 1_000_000),
    backlogRetryAfterSec: r.int('BACKLOG_RETRY_AFTER_SEC', 1, 1, 3600),
    rateLimitPerSec: r.int('RATE_LIMIT_PER_SEC', 0),
    apiKeys: r.list('INGEST_API_KEYS'),
    idempotencyTtlSec: r.int('IDEMPOTENCY_TTL_SEC', 86_400, 1),
    redisTimeoutMs: r.int('REDIS_TIMEOUT_MS', 1000, 1, 60_000),
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    defaultSource: r.string('DEFAULT_SOURCE', '/spillway/ingest'),
    logLevel: r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
  };
}
