/**
 * `createPersist(config, deps)`: the persist function, built and started from
 * its configuration. Each delivery (a RedisStreamSource CloudEvent,
 * docs/architecture.md) is a doorbell naming a stream entry; the committer
 * writes what that entry holds in its next group commit, and the delivery is
 * answered once that batch is committed. A poison event goes to `events_dead`
 * and is answered 2xx. Importing this module starts nothing; index.ts (the
 * Functions Framework's entry) and the host call the factory.
 */
import type { CloudEventV1 } from 'cloudevents';
import type { Redis } from 'ioredis';
import type { Db, MongoClient } from 'mongodb';
import { Registry } from 'prom-client';
import type { ConflictDocument, DeadDocument, EventDocument } from '../shared/document.js';
import { EntryError, type SourceEvent, sourceEventStreamId } from '../shared/entry.js';
import { redactUrl } from '../shared/env.js';
import type { EventFunction } from '../shared/function.js';
import { ClientError } from '../shared/http.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { CONFLICTS_COLLECTION, DEAD_COLLECTION, EVENTS_COLLECTION } from '../shared/names.js';
import { createRedis, requireRedisVersion, watchConnection } from '../shared/redis/client.js';
import { drainRateKey, writeBudgetKey } from '../shared/redis/keys.js';
import { Scripts } from '../shared/redis/scripts.js';
import { READY_CHECK_MS, within } from '../shared/time.js';
import { limitsOf } from './command-size.js';
import { Committer } from './committer.js';
import type { PersistConfig } from './config.js';
import { type Connecting, connectMongo } from './database.js';
import { DrainRate } from './drain-rate.js';
import {
  budgetGauges,
  createPersistMetrics,
  drainRateGauge,
  type PersistMetrics,
} from './metrics.js';
import { PullIntake } from './pull.js';
import { SharedBudget } from './shared-budget.js';

/** What persist is built on; each is made from the configuration when not given. */
export interface PersistDeps {
  redis?: Redis;
  mongo?: MongoClient;
  log?: Logger;
  registry?: Registry;
}

/** The function, and its parts (for tests and tools that look inside). */
export interface Persist extends EventFunction {
  committer: Committer;
  pull: PullIntake;
  budget: SharedBudget;
}

/** MongoDB's NamespaceExists: the collection is there already (made by an earlier start or another replica). */
const NAMESPACE_EXISTS = 48;

export function createPersist(config: PersistConfig, deps: PersistDeps = {}): Persist {
  const log = deps.log ?? createLogger('persist', config.logLevel);
  const registry = deps.registry ?? new Registry();
  const metrics = createPersistMetrics(registry);
  const redis = deps.redis ?? connectRedis(config, log);
  const { mongo, connecting } = connectMongo(config, log, deps.mongo);
  const db = mongo.db(config.mongodbDb);
  const budget = sharedBudget(config, redis, metrics, log);
  budgetGauges(registry, budget);
  const drainRate = new DrainRate(new Scripts(redis), drainRateKey(config.streamKey), log);
  drainRateGauge(registry, drainRate);
  const committer = new Committer({
    events: db.collection<EventDocument>(EVENTS_COLLECTION),
    dead: db.collection<DeadDocument>(DEAD_COLLECTION),
    conflicts: db.collection<ConflictDocument>(CONFLICTS_COLLECTION),
    redis,
    streamKey: config.streamKey,
    consumerGroup: config.consumerGroup,
    budget,
    maxBatchDocs: config.maxBatchDocs,
    latencyTargetMs: config.dbLatencyTargetMs,
    maxBatchBytes: config.maxBatchBytes,
    deliveryDeadlineMs: config.deliveryDeadlineMs,
    maxCommitAttempts: config.maxCommitAttempts,
    parkMs: config.parkMs,
    deadTtlMs: config.idempotencyTtlSec * 1000,
    taken: (entries) => drainRate.add(entries),
    ping: () => db.command({ ping: 1 }),
    log,
    metrics,
  });
  metrics.batchLimit.set(config.maxBatchDocs);
  const pull = new PullIntake(redis, committer, config, metrics, log);
  committer.start();
  pull.start();
  drainRate.start(() => committer.held > 0);
  void ensureCollections(db, connecting, committer, budget, metrics, log);
  logStart(config, log);
  return {
    signature: 'cloudevent',
    handler: (event) => deliver(event, committer, metrics),
    config,
    registry,
    log,
    ready: () => ready(redis, db, committer),
    drain: () => stopWork(config, pull, committer),
    async shutdown() {
      drainRate.stop();
      connecting.stop();
      // Closes the clients, without waiting on a database that does not answer.
      await within(budget.close(), 2000);
      await redis.quit().catch(() => redis.disconnect());
      await mongo.close(true).catch(() => undefined);
    },
    committer,
    pull,
    budget,
  };
}

function connectRedis(config: PersistConfig, log: Logger): Redis {
  const redis = createRedis(config.redisUrl, { enableOfflineQueue: true, maxRetriesPerRequest: 3 });
  watchConnection(redis, log);
  requireRedisVersion(redis, log);
  return redis;
}

/**
 * The database's budget, shared by every replica through Redis (single flight,
 * adaptive to write latency); this replica's share of it while Redis is away.
 */
function sharedBudget(
  config: PersistConfig,
  redis: Redis,
  metrics: PersistMetrics,
  log: Logger,
): SharedBudget {
  const budget: SharedBudget = new SharedBudget({
    redis,
    key: writeBudgetKey(config.mongodbDb),
    ceiling: config.dbWriteOpsPerSec,
    floor: config.dbWriteOpsFloor,
    targetMs: config.dbLatencyTargetMs,
    maxReplicas: config.persistMaxReplicas,
    maxBatchDocs: config.maxBatchDocs,
    log,
    onWrite: (write) => {
      metrics.writeLatency.observe(write.latencyMs / 1000);
      // The largest batch as this write's release left it (shared; a local one is the committer's).
      const limit = budget.batchLimit;
      if (limit !== undefined) metrics.batchLimit.set(limit);
    },
    onClockStep: () => metrics.clockSteps.inc(),
  });
  return budget;
}

/**
 * The events collection and the index of events_dead, once the database takes
 * them. Made here rather than by the first batch: a database creates a collection
 * on its first insert, which makes that write slow (a second or more on a small
 * disk), and a slow write cuts the batches of every replica for the writes
 * after it. A database that is down at start is no reason to exit: deliveries
 * queue and are retried meanwhile, while the client is connected again and
 * again until it is (database.ts); this starts once it is.
 */
async function ensureCollections(
  db: Db,
  connecting: Connecting,
  committer: Committer,
  budget: SharedBudget,
  metrics: PersistMetrics,
  log: Logger,
): Promise<void> {
  if (!(await connecting.connected)) return;
  for (let attempt = 0; ; attempt++) {
    try {
      // What one write command holds (a read, no budget): one grant is one command.
      committer.setCommandLimits(limitsOf(await db.command({ hello: 1 })));
      // Creating a collection or an index is a write command too: each takes the budget.
      metrics.writeCommands.inc({ collection: EVENTS_COLLECTION });
      await budget.run(() =>
        db.createCollection(EVENTS_COLLECTION).catch((error: { code?: unknown }) => {
          if (error?.code !== NAMESPACE_EXISTS) throw error;
        }),
      );
      metrics.writeCommands.inc({ collection: DEAD_COLLECTION });
      await budget.run(() => db.collection(DEAD_COLLECTION).createIndex({ deadAt: 1 }));
      return;
    } catch (error) {
      if (connecting.stopped) return;
      if (attempt === 0) log.warn({ err: error }, 'collections not made yet; retrying');
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 10_000)));
    }
  }
}

function logStart(config: PersistConfig, log: Logger): void {
  log.info(
    {
      mongodb: redactUrl(config.mongodbUrl),
      redis: redactUrl(config.redisUrl),
      stream: config.streamKey,
      group: config.consumerGroup,
      dbWriteOpsPerSec: config.dbWriteOpsPerSec,
      dbLatencyTargetMs: config.dbLatencyTargetMs,
      maxBatchDocs: config.maxBatchDocs,
      maxBatchBytes: config.maxBatchBytes,
    },
    'persist started',
  );
}

/**
 * A delivery is a doorbell: it names a stream entry, and the committer writes
 * what that entry holds (read from the stream with the rest of its batch). An
 * event that is not the source's is refused (400) and changes nothing.
 */
async function deliver(
  event: CloudEventV1<unknown>,
  committer: Committer,
  metrics: PersistMetrics,
): Promise<void> {
  metrics.deliveries.inc();
  const raw = event as unknown as SourceEvent;
  let streamId: string;
  try {
    streamId = sourceEventStreamId(raw);
  } catch (error) {
    if (!(error instanceof EntryError)) throw error;
    metrics.refused.inc();
    throw new ClientError('invalid_cloudevent', `not a RedisStreamSource event: ${error.message}`);
  }
  // The delivery's size stands in for the entry's until the entry is read.
  const size =
    typeof raw.data === 'string' ? raw.data.length : JSON.stringify(raw.data ?? null).length;
  return committer.submit({ kind: 'doorbell' }, streamId, size + 64);
}

/**
 * Ready when Redis answers and the database has taken a batch in the last 10 s or
 * answers a ping within READY_CHECK_MS: a database busy with our own writes is not down.
 */
async function ready(redis: Redis, db: Db, committer: Committer): Promise<boolean> {
  try {
    await redis.ping();
    if (performance.now() - committer.lastCommitAt < 10_000) return true;
    return await within(db.command({ ping: 1 }), READY_CHECK_MS);
  } catch {
    return false;
  }
}

/**
 * Stops pulling and taking deliveries, and commits and answers what is held
 * within SHUTDOWN_TIMEOUT_MS; what is not committed by then stays in the stream.
 */
async function stopWork(
  config: PersistConfig,
  pull: PullIntake,
  committer: Committer,
): Promise<void> {
  const deadline = performance.now() + config.shutdownTimeoutMs;
  await within(pull.stop(), config.shutdownTimeoutMs);
  await committer.stop(Math.max(0, deadline - performance.now()));
}
