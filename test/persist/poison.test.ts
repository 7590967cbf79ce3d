/**
 * Events whose keys a database would refuse are stored exactly (functions/shared/
 * data.ts), nothing waits behind them, and the pipeline still stops on SIGINT.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sameJson, storedDataText } from '../../functions/shared/data.js';
import { eventId } from '../../functions/shared/document.js';
import { mongoUrl, postJson, redisClient, redisUrl, unique, waitFor } from '../support/helpers.js';
import { PipelineRun } from '../support/pipeline-harness.js';

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

  it('stores keys a database refuses (dotted, $, NUL) exactly, persists every event after them, and stops on SIGINT', async () => {
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
    const awkward = [
      '{"a.b":1}',
      '{"$where":"x"}',
      '{"nested":{"k8s.io/name":"web","a\\u0000b":2,"100%":3}}',
    ];
    const posted = new Map<string, string>();
    const fine: string[] = [];
    for (const data of awkward) {
      const res = await postJson(
        `${pipeline.ingestUrl}/events`,
        `{"type":"awkward","data":${data}}`,
      );
      expect(res.status).toBe(202);
      posted.set(res.body.id as string, data);
      for (let i = 0; i < 20; i++) {
        const ok = await postJson(`${pipeline.ingestUrl}/events`, { type: 'fine', data: { i } });
        expect(ok.status).toBe(202);
        fine.push(ok.body.id as string);
      }
    }
    const events = mongo.db(database).collection('events');
    const all = [...posted.keys(), ...fine].map((id) => eventId('/spillway/ingest', id));
    await waitFor(
      async () => (await events.countDocuments({ _id: { $in: all as never[] } })) === all.length,
      30_000,
      async () => `${await events.countDocuments()} of ${all.length} stored`,
    );
    await waitFor(
      async () => (await redis.xlen(stream)) === 0,
      30_000,
      async () => `stream ${await redis.xlen(stream)}`,
    );
    // Stored as posted: read back through the documented mapping, key for key.
    for (const [id, data] of posted) {
      const doc = await events.findOne({ _id: eventId('/spillway/ingest', id) as never });
      expect(storedDataText(doc?.data), data).toSatisfy((text: string) => sameJson(text, data));
    }
    expect(await mongo.db(database).collection('events_dead').countDocuments()).toBe(0);
    const stop = await pipeline.interrupt(30_000);
    pipeline = undefined;
    expect(stop.code).toBe(0);
    expect(stop.elapsedMs).toBeLessThan(20_000);
  });
});
