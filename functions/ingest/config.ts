import { type ServiceConfig, serviceConfig } from '../shared/config.js';
import { type Env, EnvReader } from '../shared/env.js';

export interface IngestConfig extends ServiceConfig {
  /** Stream length at which ingest answers 503; 0 = no limit. */
  maxBacklog: number;
  backlogRetryAfterSec: number;
  /** Per client per second; 0 = off. */
  rateLimitPerSec: number;
  /** Bearer tokens accepted; empty = no authentication. */
  apiKeys: string[];
  idempotencyTtlSec: number;
  redisTimeoutMs: number;
  defaultSource: string;
}

export function loadIngestConfig(env: Env = process.env): IngestConfig {
  const r = new EnvReader(env);
  return {
    ...serviceConfig(r, {
      port: 8080,
      metricsPort: 9090,
      maxBodyBytes: 256 * 1024,
      shutdownTimeoutMs: 10_000,
    }),
    maxBacklog: r.int('MAX_BACKLOG', 1_000_000),
    backlogRetryAfterSec: r.int('BACKLOG_RETRY_AFTER_SEC', 1, 1, 3600),
    rateLimitPerSec: r.int('RATE_LIMIT_PER_SEC', 0),
    apiKeys: r.list('INGEST_API_KEYS'),
    idempotencyTtlSec: r.int('IDEMPOTENCY_TTL_SEC', 86_400, 1),
    redisTimeoutMs: r.int('REDIS_TIMEOUT_MS', 1000, 1, 60_000),
    defaultSource: r.string('DEFAULT_SOURCE', '/spillway/ingest'),
  };
}
