/**
 * One event the database refuses must not stop anything: the events posted
 * after it are persisted, and the pipeline still stops on SIGINT.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineRun } from '../chaos/harness.js';
import { mongoUrl, postJson, redisClient, redisUrl, unique, waitFor } from '../helpers.js';

describe('the whole pipeline with events the database refuses', () => {
  const stream = unique('test:poison');
  const database = unique('t_poison').replace(/-/g, '_');
  const redis = redisClient();
  let mongo: MongoClient;
  let pipeline: PipelineRun | undefined;
  beforeAll(async () => {
    mongo = await new MongoClient(mongoUrl()).connect();
  });
  afterAll(async () => {
    await pipeline?.interrupt().catch(() => undefined);
    await redis.del(stream);
    await mongo.db(database).dropDatabase();
    await mongo.close();
    redis.disconnect();
  });

  it('persists every event after a dotted or $ key, and stops on SIGINT', async () => {
    pipeline = await PipelineRun.start(
      {
        REDIS_URL: redisUrl(),
        MONGODB_URL: mongoUrl(),
        STREAM_KEY: stream,
        MONGODB_DB: database,
        LOG_LEVEL: 'warn',
        INGEST_WORKERS: '1',
      },
      19_300 + (process.pid % 50) * 4,
    );
    const poison = [{ 'a.b': 1 }, { $where: 'x' }, { nested: { 'k8s.io/name': 'web' } }];
    const good: string[] = [];
    for (const data of poison) {
      const res = await postJson(`${pipeline.ingestUrl}/events`, { type: 'poison', data });
      expect(res.status).toBe(202);
      for (let i = 0; i < 20; i++) {
        const ok = await postJson(`${pipeline.ingestUrl}/events`, { type: 'fine', data: { i } });
        expect(ok.status).toBe(202);
        good.push(ok.body.id as string);
      }
    }
    const events = mongo.db(database).collection('events');
    await waitFor(
      async () => (await events.countDocuments({ _id: { $in: good as never[] } })) === good.length,
      30_000,
      async () => `${await events.countDocuments()} of ${good.length} stored`,
    );
    // Nothing waits behind the refused events: the stream drains.
    await waitFor(
      async () => (await redis.xlen(stream)) === 0,
      30_000,
      async () => `stream ${await redis.xlen(stream)}`,
    );
    // The refused ones are dead letters, kept as text with the database's reason.
    const dead = await mongo.db(database).collection('events_dead').find({}).toArray();
    expect(dead).toHaveLength(poison.length);
    for (const letter of dead) {
      expect(letter.reason).toMatch(/refused/);
      expect(typeof letter.raw).toBe('string');
      expect(JSON.parse(letter.raw as string)).toContain('poison');
    }
    const stop = await pipeline.interrupt(30_000);
    pipeline = undefined;
    expect(stop.code).toBe(0);
    expect(stop.elapsedMs).toBeLessThan(20_000);
  });
});
