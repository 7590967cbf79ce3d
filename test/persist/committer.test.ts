/**
 * The committer against a real database and a real Redis: a document the
 * database refuses is isolated into events_dead while the rest commit; what
 * arrives while a batch waits for the budget goes into that batch's write; a
 * database that does not answer commits nothing, acks nothing, deletes nothing.
 */
import { MongoClient } from 'mongodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleValue } from '../../bench/prom-text.js';
import { Committer } from '../../functions/persist/committer.js';
import { createPersistMetrics } from '../../functions/persist/metrics.js';
import { SharedBudget } from '../../functions/persist/shared-budget.js';
import { Spacer, type WriteBudget } from '../../functions/persist/spacer.js';
import { entryBytes, type Work, workOf } from '../../functions/persist/work.js';
import type {
  ConflictDocument,
  DeadDocument,
  EventDocument,
} from '../../functions/shared/document.js';
import { entryFields } from '../../functions/shared/entry.js';
import { createLogger } from '../../functions/shared/logger.js';
import { writeBudgetKey } from '../../functions/shared/redis/keys.js';
import { sleep } from '../../functions/shared/time.js';
import { mongoUrl, redisClient, unique, waitFor } from '../support/helpers.js';

const redis = redisClient();
let mongo: MongoClient;
beforeAll(async () => {
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  await mongo.close();
  redis.disconnect();
});

function committerFor(
  client: MongoClient,
  database: string,
  stream: string,
  {
    budget = new Spacer(200) as WriteBudget,
    registry = new Registry(),
    maxBatchDocs = 1000,
    latencyTargetMs = 10_000,
  } = {},
) {
  const db = client.db(database);
  const committer = new Committer({
    events: db.collection<EventDocument>('events'),
    dead: db.collection<DeadDocument>('events_dead'),
    conflicts: db.collection<ConflictDocument>('events_conflicts'),
    redis,
    streamKey: stream,
    consumerGroup: 'spillway-persist',
    budget,
    maxBatchDocs,
    latencyTargetMs,
    maxBatchBytes: 1024 * 1024,
    deliveryDeadlineMs: 20_000,
    maxCommitAttempts: 2,
    parkMs: 60_000,
    deadTtlMs: 60_000,
    ping: () => db.command({ ping: 1 }),
    log: createLogger('test', 'silent'),
    metrics: createPersistMetrics(registry),
  });
  committer.start();
  return committer;
}

/** One replica's view of a write budget shared through Redis (50 writes/s, two replicas). */
const sharedBudget = (key: string, maxBatchDocs: number) =>
  new SharedBudget({
    redis,
    key,
    ceiling: 50,
    floor: 5,
    targetMs: 10_000,
    maxReplicas: 2,
    maxBatchDocs,
    log: createLogger('test', 'silent'),
  });

async function addEntries(stream: string, n: number): Promise<Array<[string, string[]]>> {
  const out: Array<[string, string[]]> = [];
  for (let i = 0; i < n; i++) {
    const fields = entryFields({
      id: unique('ev'),
      type: 't',
      source: '/c',
      subject: '',
      time: new Date().toISOString(),
      seq: i + 1,
      data: JSON.stringify({ i }),
    });
    out.push([(await redis.xadd(stream, '*', ...fields)) as string, fields]);
  }
  return out;
}

describe('the committer', () => {
  it('isolates a document the database refuses: it becomes a dead letter, the batch commits', async () => {
    const stream = unique('test:commit');
    const database = unique('t_commit').replace(/-/g, '_');
    const committer = committerFor(mongo, database, stream);
    try {
      const entries = await addEntries(stream, 6);
      const deliveries = entries.map(([streamId, fields], i) => {
        const work = workOf(streamId, fields) as Extract<Work, { kind: 'event' }>;
        // One document carries a key the server refuses, as if nothing had encoded it.
        if (i === 3) work.doc.data = { 'a.b': 1, $x: 2 };
        return committer.submit(work, streamId, entryBytes(fields));
      });
      await Promise.all(deliveries);
      const db = mongo.db(database);
      expect(await db.collection('events').countDocuments()).toBe(5);
      const dead = await db.collection('events_dead').find({}).toArray();
      if (dead.length === 0) {
        // A server that takes such keys (mongod 5+) stores all six.
        expect(await db.collection('events').countDocuments()).toBe(6);
      } else {
        expect(dead).toHaveLength(1);
        expect(dead[0]).toMatchObject({
          streamId: entries[3]?.[0],
          reason: expect.stringMatching(/refused/),
        });
        expect(JSON.parse(dead[0]?.raw as string)).toEqual(entries[3]?.[1]);
      }
      // Everything committed (events and the dead letter) is gone from the stream.
      expect(await redis.xlen(stream)).toBe(0);
    } finally {
      await committer.stop(5000);
      await redis.del(stream);
      await mongo.db(database).dropDatabase();
    }
  });

  it('writes what was queued while a batch waited for the budget in that same write', async () => {
    const stream = unique('test:topup');
    const database = unique('t_topup').replace(/-/g, '_');
    const registry = new Registry();
    // Two writes a second: the first token comes about 505 ms after the start.
    const committer = committerFor(mongo, database, stream, {
      budget: new Spacer(2),
      registry,
    });
    try {
      const entries = await addEntries(stream, 100);
      const first = entries[0] as [string, string[]];
      const rest = entries.slice(1);
      // One event: its batch of one is formed at once and waits for the token.
      const deliveries = [
        committer.submit(workOf(first[0], first[1]), first[0], entryBytes(first[1])),
      ];
      await sleep(100);
      // Meanwhile 89 events and 10 doorbells arrive, and one doorbell for an entry
      // that is not in the stream (persisted already): answered without a write.
      rest.forEach(([streamId, fields], i) => {
        deliveries.push(
          i < 10
            ? committer.submit({ kind: 'doorbell' }, streamId, 64)
            : committer.submit(workOf(streamId, fields), streamId, entryBytes(fields)),
        );
      });
      deliveries.push(committer.submit({ kind: 'doorbell' }, '1-1', 64));
      await Promise.all(deliveries);
      const text = await registry.metrics();
      // One write of all 100.
      expect(sampleValue(text, 'spillway_persist_batch_docs_count')).toBe(1);
      expect(sampleValue(text, 'spillway_persist_batch_docs_sum')).toBe(100);
      expect(sampleValue(text, 'spillway_persist_absent_entries_total')).toBe(1);
      expect(await mongo.db(database).collection('events').countDocuments()).toBe(100);
      expect(await redis.xlen(stream)).toBe(0);
    } finally {
      await committer.stop(5000);
      await redis.del(stream);
      await mongo.db(database).dropDatabase();
    }
  });

  it('writes no more than the shared largest batch as it is at the grant, and the rest next', async () => {
    const stream = unique('test:trim');
    const database = unique('t_trim').replace(/-/g, '_');
    const key = writeBudgetKey(database);
    const registry = new Registry();
    const shared = (targetMs: number) =>
      new SharedBudget({
        redis,
        key,
        ceiling: 50,
        floor: 5,
        targetMs,
        maxReplicas: 2,
        maxBatchDocs: 100,
        log: createLogger('test', 'silent'),
      });
    // Another replica of the same database holds the budget with a slow write
    // (1.5 × its target, of no known size: halved).
    const other = shared(200);
    let slowStarted!: () => void;
    const started = new Promise<void>((resolve) => {
      slowStarted = resolve;
    });
    const slow = other.run(async () => {
      slowStarted();
      await sleep(300);
    });
    await started;
    const committer = committerFor(mongo, database, stream, {
      budget: shared(10_000),
      registry,
      maxBatchDocs: 100,
    });
    try {
      const entries = await addEntries(stream, 100);
      // A batch of 100 is formed at once and waits for the other replica's write,
      // which halves the largest batch when it is answered (slower than its target).
      await Promise.all(
        entries.map(([streamId, fields]) =>
          committer.submit(workOf(streamId, fields), streamId, entryBytes(fields)),
        ),
      );
      await slow;
      const text = await registry.metrics();
      // Two writes of 50: the batch of 100 went out at the limit of its grant.
      expect(sampleValue(text, 'spillway_persist_batch_docs_count')).toBe(2);
      expect(sampleValue(text, 'spillway_persist_batch_docs_sum')).toBe(100);
      // Halved to 50 by the slow write (of no known size); each of the two fast ones
      // grew it by a quarter, 62 then 77 (the second once its release is answered).
      await waitFor(
        async () => committer.batchLimit === 77,
        2000,
        () => `largest batch ${committer.batchLimit}`,
      );
      expect(await mongo.db(database).collection('events').countDocuments()).toBe(100);
      expect(await redis.xlen(stream)).toBe(0);
    } finally {
      await committer.stop(5000);
      await other.close();
      await redis.del(stream, key);
      await mongo.db(database).dropDatabase();
    }
  });

  it('commits nothing, acks nothing and deletes nothing while the database does not answer', async () => {
    const stream = unique('test:down');
    const down = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 300 });
    const committer = committerFor(down, 'nowhere', stream);
    try {
      const entries = await addEntries(stream, 3);
      const outcomes = await Promise.allSettled(
        entries.map(([streamId, fields]) =>
          committer.submit(workOf(streamId, fields), streamId, entryBytes(fields)),
        ),
      );
      // Each delivery gets 503 once its attempts are spent (the Trigger redelivers) ...
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        expect(String((outcome as PromiseRejectedResult).reason.message)).toMatch(
          /not committed after 2 attempts/,
        );
      }
      // ... and every entry is still in the stream, for later.
      expect(await redis.xlen(stream)).toBe(3);
      for (const [streamId] of entries) expect(committer.isBusy(streamId)).toBe(true);
    } finally {
      await committer.stop(1000);
      await down.close(true);
      await redis.del(stream);
    }
  });
  it("fills a grant with the stream's entries that waited twice the latency target, whoever got their deliveries; the replica that held one answers it without a write", async () => {
    const stream = unique('test:fill');
    const database = unique('t_fill').replace(/-/g, '_');
    const key = writeBudgetKey(database);
    const shared = () => sharedBudget(key, 1000);
    // A third replica holds the one budget while A and B take their deliveries.
    const other = shared();
    let held!: () => void;
    const holding = new Promise<void>((resolve) => {
      held = resolve;
    });
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = other.run(async () => {
      held();
      await released;
    });
    await holding;
    const [registryA, registryB] = [new Registry(), new Registry()];
    const options = { latencyTargetMs: 100, maxBatchDocs: 1000 };
    const a = committerFor(mongo, database, stream, {
      ...options,
      budget: shared(),
      registry: registryA,
    });
    const b = committerFor(mongo, database, stream, {
      ...options,
      budget: shared(),
      registry: registryB,
    });
    try {
      const entries = await addEntries(stream, 300);
      // Entries that waited longer than 2 × 100 ms are behind their deliveries.
      await sleep(250);
      const oldest = entries[0] as [string, string[]];
      const newest = entries[299] as [string, string[]];
      // B holds the oldest entry's delivery, A the newest one's; both wait for the budget.
      const atB = b.submit({ kind: 'doorbell' }, oldest[0], 100);
      const atA = a.submit({ kind: 'doorbell' }, newest[0], 100);
      await sleep(100);
      release();
      await Promise.all([atA, atB, slow]);
      const db = mongo.db(database);
      expect(await db.collection('events').countDocuments()).toBe(300);
      expect(await redis.xlen(stream)).toBe(0);
      // Whichever got the next grant wrote all 300 in one command; the other found its
      // entry gone at its own grant, answered its delivery and sent nothing.
      const [textA, textB] = [await registryA.metrics(), await registryB.metrics()];
      const commands = (text: string) => sampleValue(text, 'spillway_persist_write_commands_total');
      expect([commands(textA), commands(textB)].sort()).toEqual([0, 1]);
      const docs = (text: string) => sampleValue(text, 'spillway_persist_batch_docs_sum') || 0;
      expect(docs(textA) + docs(textB)).toBe(300);
      expect(sampleValue(textA, 'spillway_persist_duplicates_total')).toBe(0);
      expect(sampleValue(textB, 'spillway_persist_duplicates_total')).toBe(0);
      // Entries that have not waited that long are left to their deliveries.
      const young = await addEntries(stream, 5);
      await a.submit({ kind: 'doorbell' }, (young[0] as [string, string[]])[0], 100);
      expect(docs(await registryA.metrics()) + docs(await registryB.metrics())).toBe(301);
      expect(await redis.xlen(stream)).toBe(4);
    } finally {
      release();
      await Promise.all([a.stop(5000), b.stop(5000), other.close()]);
      await redis.del(stream, key);
      await mongo.db(database).dropDatabase();
    }
  });
  it("fills a grant again from the stream's front when another writer committed what it was queueing", async () => {
    const stream = unique('test:refill');
    const database = unique('t_refill').replace(/-/g, '_');
    const key = writeBudgetKey(database);
    // A asks for the budget only when the gate opens: B writes first.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const sharedA = sharedBudget(key, 100);
    const gated: WriteBudget = {
      run: async (write, outcome) => {
        await gate;
        return sharedA.run(write, outcome);
      },
      get batchLimit() {
        return sharedA.batchLimit;
      },
      get singleFlight() {
        return sharedA.singleFlight;
      },
    };
    const [registryA, registryB] = [new Registry(), new Registry()];
    const options = { latencyTargetMs: 100, maxBatchDocs: 100 };
    const a = committerFor(mongo, database, stream, {
      ...options,
      budget: gated,
      registry: registryA,
    });
    const budgetB = sharedBudget(key, 100);
    const b = committerFor(mongo, database, stream, {
      ...options,
      budget: budgetB,
      registry: registryB,
    });
    try {
      const entries = await addEntries(stream, 300);
      // Entries that waited longer than 2 × 100 ms are behind their deliveries.
      await sleep(250);
      // A queues the first 100 as its pull intake would (read before B's write).
      const readAt = a.stamp();
      for (const [id, fields] of entries.slice(0, 100))
        a.enqueue(workOf(id, fields), id, entryBytes(fields), readAt);
      // B's grant: the first entry's delivery, filled with the 99 after it (A's).
      await b.submit({ kind: 'doorbell' }, (entries[0] as [string, string[]])[0], 100);
      expect(await redis.xlen(stream)).toBe(200);
      open();
      // A finds its 100 gone at its grant and writes the next 100 of the front instead.
      await waitFor(
        async () => (await redis.xlen(stream)) === 100,
        10_000,
        async () => `${await redis.xlen(stream)} entries left, 100 expected`,
      );
      const db = mongo.db(database);
      expect(await db.collection('events').countDocuments()).toBe(200);
      const textA = await registryA.metrics();
      expect(sampleValue(textA, 'spillway_persist_write_commands_total')).toBe(1);
      expect(sampleValue(textA, 'spillway_persist_batch_docs_sum')).toBe(100);
      expect(sampleValue(textA, 'spillway_persist_duplicates_total')).toBe(0);
      const oldest = await redis.xrange(stream, '-', '+', 'COUNT', 1);
      expect(oldest[0]?.[0]).toBe((entries[200] as [string, string[]])[0]);
    } finally {
      open();
      await Promise.all([a.stop(5000), b.stop(5000), sharedA.close(), budgetB.close()]);
      await redis.del(stream, key);
      await mongo.db(database).dropDatabase();
    }
  });
});
