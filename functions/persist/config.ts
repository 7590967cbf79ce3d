import { type ServiceConfig, serviceConfig } from '../shared/config.js';
import { type Env, EnvReader } from '../shared/env.js';
import { CONSUMER_GROUP, DATABASE } from '../shared/names.js';

export interface PersistConfig extends ServiceConfig {
  mongodbUrl: string;
  database: string;
  consumerGroup: string;
  /** Write commands per second this process may send to the database. */
  writeOpsPerSec: number;
  maxBatchDocs: number;
  maxBatchBytes: number;
  /** A push delivery not committed by then gets a 5xx (the Trigger redelivers). */
  deliveryDeadlineMs: number;
  mongoTimeoutMs: number;
  /** Write attempts an entry gets before it is parked (left in the stream for later). */
  maxCommitAttempts: number;
  /** How long a parked entry is left alone before the pull intake tries it again. */
  parkMs: number;
  sweepIntervalMs: number;
  staleAfterMs: number;
  /** Backlog beyond the source's cursor above which the pull intake catches up. */
  catchupBacklog: number;
  /** Entries the catch-up leaves to the source just beyond its cursor. */
  catchupSkipEntries: number;
  pullChunkEntries: number;
  leaseTtlMs: number;
}

export function loadPersistConfig(env: Env = process.env): PersistConfig {
  const r = new EnvReader(env);
  return {
    ...serviceConfig(r, {
      port: 8081,
      metricsPort: 9091,
      maxBodyBytes: 1024 * 1024,
      shutdownTimeoutMs: 30_000,
    }),
    mongodbUrl: r.url('MONGODB_URL', 'mongodb://127.0.0.1:27030/', ['mongodb:', 'mongodb+srv:']),
    database: r.string('MONGODB_DB', DATABASE),
    consumerGroup: r.string('CONSUMER_GROUP', CONSUMER_GROUP),
    writeOpsPerSec: r.int('WRITE_OPS_PER_SEC', 100, 1, 100_000),
    maxBatchDocs: r.int('MAX_BATCH_DOCS', 10_000, 1, 100_000),
    maxBatchBytes: r.int('MAX_BATCH_BYTES', 16 * 1024 * 1024, 1024, 46 * 1024 * 1024),
    deliveryDeadlineMs: r.int('DELIVERY_DEADLINE_MS', 30_000, 100),
    mongoTimeoutMs: r.int('MONGO_TIMEOUT_MS', 20_000, 100),
    maxCommitAttempts: r.int('MAX_COMMIT_ATTEMPTS', 6, 1, 100),
    parkMs: r.int('PARK_MS', 60_000, 0),
    sweepIntervalMs: r.int('SWEEP_INTERVAL_MS', 5000, 50),
    staleAfterMs: r.int('STALE_AFTER_MS', 30_000, 0),
    catchupBacklog: r.int('CATCHUP_BACKLOG', 10_000, 0),
    catchupSkipEntries: r.int('CATCHUP_SKIP_ENTRIES', 1000, 0),
    pullChunkEntries: r.int('PULL_CHUNK_ENTRIES', 5000, 1, 100_000),
    leaseTtlMs: r.int('LEASE_TTL_MS', 10_000, 500),
  };
}
