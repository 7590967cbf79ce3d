/**
 * The faults of the fault suite: each is injected on a real process of the
 * running pipeline (or its services) while paced load goes on.
 */
import { Redis } from 'ioredis';
import {
  type ChaosServices,
  hostWorkers,
  killAndWait,
  type PipelineRun,
  sleep,
} from '../support/pipeline-harness.js';

export interface FaultContext {
  services: ChaosServices;
  pipeline: PipelineRun;
  /** Stops the pipeline with SIGINT (as Ctrl-C); says how the stop went. */
  stopPipeline(): Promise<{ code: number | null; elapsedMs: number }>;
  /** Starts it again, on the same ports. */
  startPipeline(): Promise<void>;
  /** Long faults (`npm run chaos`) or short ones (the subset in `npm test`). */
  long: boolean;
}

export interface Scenario {
  name: string;
  what: string;
  /** Runs in `npm test` as well as in `npm run chaos`. */
  core: boolean;
  /** Extra environment for the pipeline. */
  env?: Record<string, string>;
  /** Seconds of load, when the scenario needs more than the suite's. */
  seconds?: number;
  /** Ingest must answer 202 again after the fault, for at least this many seconds' worth of the load. */
  acceptsAfter?: number;
  /**
   * Clients that ask: every 10th request waits for the database (Prefer:
   * wait=2), and receipts are read while the load runs; afterwards every
   * `persisted` and every 201 is checked against MongoDB.
   */
  receipts?: boolean;
  /** Injects the fault; resolves once it is over (process back, disk fast again). */
  fault(ctx: FaultContext): Promise<void>;
}

/** Three persist replicas sharing one budget of 30 (a replica cut off from Redis writes at 10). */
const REPLICAS = {
  PERSIST_WORKERS: '3',
  PERSIST_MAX_REPLICAS: '3',
  DB_WRITE_OPS_PER_SEC: '30',
  RELAY_CONSUMERS: '300',
};

/** Redis's used memory, from INFO. */
async function usedMemory(redis: Redis): Promise<number> {
  return Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1] ?? Number.NaN);
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'redis-full',
    what: 'Redis filled to its maxmemory while the database is down, persist SIGKILL while Redis is full, then the database back',
    core: false,
    // Admission off: Redis itself reaches maxmemory and refuses ingest's writes.
    env: { MAX_REDIS_MEMORY_PCT: '0' },
    seconds: 90,
    acceptsAfter: 5,
    async fault({ services, pipeline }) {
      const redis = new Redis(services.urls.REDIS_URL as string, { maxRetriesPerRequest: 1 });
      redis.on('error', () => undefined);
      try {
        await killAndWait(services.dbPid(), 'SIGKILL');
        // maxmemory just above what Redis holds now: the load fills the rest.
        await redis.config('SET', 'maxmemory', String((await usedMemory(redis)) + 3 * 1024 * 1024));
        const deadline = Date.now() + 60_000;
        for (;;) {
          const full = await redis.set('chaos:probe', 'x'.repeat(1024)).then(
            () => false,
            (error: Error) => error.message.includes('OOM'),
          );
          if (full) break;
          if (Date.now() > deadline) throw new Error('Redis did not fill within 60 s');
          await sleep(200);
        }
        // A new persist must take the sweeper's lease and the budget with Redis full.
        const pid = pipeline.pid('persist');
        await killAndWait(pid, 'SIGKILL');
        await pipeline.restarted('persist', pid);
        await sleep(3000);
        // The database back; nobody touches Redis: the drain has to free it.
        services.up();
      } finally {
        redis.disconnect();
      }
    },
  },
  {
    name: 'db-kill',
    what: 'database SIGKILL, restarted later',
    core: true,
    async fault({ services, long }) {
      await killAndWait(services.dbPid(), 'SIGKILL');
      await sleep(long ? 20_000 : 8000);
      services.up();
    },
  },
  {
    name: 'receipts-db-kill',
    what: 'database SIGKILL, restarted later, while clients wait for it (every 10th request Prefer: wait=2) and read their receipts: every persisted and 201 checked against MongoDB',
    core: false,
    receipts: true,
    async fault({ services, long }) {
      await killAndWait(services.dbPid(), 'SIGKILL');
      await sleep(long ? 20_000 : 8000);
      services.up();
    },
  },
  {
    name: 'db-term',
    what: 'database SIGTERM (a clean stop), restarted later',
    core: false,
    async fault({ services, long }) {
      await killAndWait(services.dbPid(), 'SIGTERM');
      await sleep(long ? 10_000 : 5000);
      services.up();
    },
  },
  {
    name: 'db-stop',
    what: 'database SIGSTOP (a hung disk), SIGCONT later',
    core: false,
    async fault({ services, long }) {
      const pid = services.dbPid();
      process.kill(pid, 'SIGSTOP');
      await sleep(long ? 30_000 : 10_000);
      process.kill(pid, 'SIGCONT');
    },
  },
  {
    name: 'stop-db-hung',
    what: 'Ctrl-C while the database hangs (SIGSTOP), then a new start',
    core: false,
    async fault({ services, stopPipeline, startPipeline }) {
      const pid = services.dbPid();
      process.kill(pid, 'SIGSTOP');
      let stopped: { code: number | null; elapsedMs: number };
      try {
        await sleep(3000);
        // Persist gives up waiting after its SHUTDOWN_TIMEOUT_MS (10 s under npm start).
        stopped = await stopPipeline();
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      if (stopped.code !== 0 || stopped.elapsedMs > 20_000)
        throw new Error(`Ctrl-C took ${stopped.elapsedMs} ms (exit ${stopped.code})`);
      await startPipeline();
    },
  },
  {
    name: 'db-iops',
    what: "the database's IOPS cut from 100 to 5, then restored",
    core: false,
    async fault({ services, long }) {
      services.setDbIops(5);
      try {
        await sleep(long ? 30_000 : 10_000);
      } finally {
        services.setDbIops(100);
      }
    },
  },
  {
    name: 'redis-kill',
    what: 'Redis SIGKILL, restarted from its AOF (3 persist replicas: each falls back to its share of the budget)',
    core: true,
    env: REPLICAS,
    async fault({ services }) {
      await killAndWait(services.redisPid(), 'SIGKILL');
      await sleep(3000);
      services.up();
    },
  },
  {
    name: 'ingest-worker-kill',
    what: 'one ingest worker SIGKILL',
    core: false,
    async fault({ pipeline }) {
      const workers = hostWorkers(pipeline.pid('ingest'));
      const victim = workers[0];
      if (victim === undefined) throw new Error('ingest has no worker processes');
      await killAndWait(victim, 'SIGKILL');
    },
  },
  {
    name: 'persist-kill',
    what: 'one of 3 persist replicas SIGKILL in the middle of batches (the others keep the budget)',
    core: true,
    env: REPLICAS,
    async fault({ pipeline }) {
      const workers = hostWorkers(pipeline.pid('persist'));
      const victim = workers[1];
      if (victim === undefined) throw new Error(`persist has ${workers.length} replicas, not 3`);
      await killAndWait(victim, 'SIGKILL');
      // The host starts another in its place.
      const deadline = Date.now() + 30_000;
      while (hostWorkers(pipeline.pid('persist')).length < 3) {
        if (Date.now() > deadline) throw new Error('the killed persist replica was not replaced');
        await sleep(100);
      }
    },
  },
  {
    name: 'persist-kill-single',
    what: 'persist (one process) SIGKILL in the middle of batches',
    core: false,
    async fault({ pipeline }) {
      const pid = pipeline.pid('persist');
      await killAndWait(pid, 'SIGKILL');
      await pipeline.restarted('persist', pid);
    },
  },
  {
    name: 'relay-kill',
    what: 'relay SIGKILL',
    core: false,
    async fault({ pipeline }) {
      const pid = pipeline.pid('relay');
      await killAndWait(pid, 'SIGKILL');
      await pipeline.restarted('relay', pid);
    },
  },
  {
    name: 'relay-restart',
    what: 'relay graceful restart (its consumer group destroyed, as the source does)',
    core: false,
    async fault({ pipeline }) {
      const pid = pipeline.pid('relay');
      await killAndWait(pid, 'SIGTERM');
      await pipeline.restarted('relay', pid);
    },
  },
  {
    name: 'persist-restart',
    what: 'persist graceful restart while it holds a backlog',
    core: false,
    // A small budget makes persist hold large batches and lets the stream back up.
    env: { DB_WRITE_OPS_PER_SEC: '4', DB_WRITE_OPS_FLOOR: '1' },
    async fault({ pipeline }) {
      const pid = pipeline.pid('persist');
      await killAndWait(pid, 'SIGTERM', 30_000);
      await pipeline.restarted('persist', pid);
    },
  },
  {
    name: 'persist-relay-kill',
    what: 'persist and relay both SIGKILL',
    core: false,
    async fault({ pipeline }) {
      const persist = pipeline.pid('persist');
      const relay = pipeline.pid('relay');
      await Promise.all([killAndWait(persist, 'SIGKILL'), killAndWait(relay, 'SIGKILL')]);
      await Promise.all([
        pipeline.restarted('persist', persist),
        pipeline.restarted('relay', relay),
      ]);
    },
  },
];
