/**
 * The committer against a real database and a real Redis: a document the
 * database refuses is isolated into events_dead while the rest commit; a
 * database that does not answer commits nothing, acks nothing, deletes nothing.
 */
import { MongoClient } from 'mongodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenBucket } from '../../functions/persist/bucket.js';
import { Committer } from '../../functions/persist/committer.js';
import { createPersistMetrics } from '../../functions/persist/metrics.js';
import { type DeadDocument, entryBytes, type Work, workOf } from '../../functions/persist/work.js';
import type { EventDocument } from '../../functions/shared/document.js';
import { entryFields } from '../../functions/shared/entry.js';
import { createLogger } from '../../functions/shared/logger.js';
import { mongoUrl, redisClient, unique } from '../helpers.js';

const redis = redisClient();
let mongo: MongoClient;
beforeAll(async () => {
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  await mongo.close();
  redis.disconnect();
});

function committerFor(client: MongoClient, database: string, stream: string) {
  const db = client.db(database);
  const committer = new Committer({
    events: db.collection<EventDocument>('events'),
    dead: db.collection<DeadDocument>('events_dead'),
    redis,
    streamKey: stream,
    consumerGroup: 'spillway-persist',
    budget: new TokenBucket(200),
    maxBatchDocs: 1000,
    latencyTargetMs: 10_000,
    maxBatchBytes: 1024 * 1024,
    deliveryDeadlineMs: 20_000,
    maxCommitAttempts: 2,
    parkMs: 60_000,
    ping: () => db.command({ ping: 1 }),
    log: createLogger('test', 'silent'),
    metrics: createPersistMetrics(new Registry()),
  });
  committer.start();
  return committer;
}

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
});
