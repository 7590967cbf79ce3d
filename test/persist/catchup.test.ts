/**
 * With the relay stopped (its group destroyed, as the source does on a graceful
 * stop), a backlog of 200,000 entries drains through catch-up: each event exactly
 * once, the stream empty at the end.
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventId } from '../../functions/shared/document.js';
import { appendEntries } from '../../scripts/stream-fill.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  redisClient,
  startFunction,
  startRelay,
  unique,
  waitFor,
} from '../support/helpers.js';

describe('catch-up drains a backlog with the relay stopped', () => {
  const stream = unique('test:catchup');
  const dbName = unique('t_catchup').replace(/-/g, '_');
  const env = { STREAM_KEY: stream, MONGODB_DB: dbName };
  let redis: Redis;
  let mongo: MongoClient;
  let persist: FunctionProcess | undefined;
  beforeAll(async () => {
    redis = redisClient();
    mongo = await new MongoClient(mongoUrl()).connect();
  });
  afterAll(async () => {
    await persist?.kill('SIGKILL');
    await redis.del(stream);
    await mongo.db(dbName).dropDatabase();
    await redis.quit();
    await mongo.close();
  });

  it('persists 200,000 entries exactly once and leaves the stream empty', async () => {
    // The relay runs, then stops gracefully: the consumer group is gone.
    const relay = await startRelay({ ...env, PERSIST_URL: 'http://127.0.0.1:9/' });
    expect(await relay.kill('SIGTERM')).toBe(0);
    expect(await redis.exists(stream)).toBe(1);
    expect(await redis.xinfo('GROUPS', stream)).toEqual([]);

    const n = 200_000;
    const time = new Date().toISOString();
    await appendEntries(
      redis,
      stream,
      0,
      n,
      (i) => ({
        id: `ev-${i}`,
        type: 'backlog',
        source: '/fill',
        subject: `s-${i % 100}`,
        time,
        seq: Math.floor(i / 100) + 1,
        data: JSON.stringify({ i }),
      }),
      5000,
    );
    expect(await redis.xlen(stream)).toBe(n);

    persist = await startFunction('persist', env);
    const events = mongo.db(dbName).collection('events');
    await waitFor(
      async () => (await redis.xlen(stream)) === 0,
      600_000,
      async () => `stream ${await redis.xlen(stream)}, documents ${await events.countDocuments()}`,
    );
    expect(await events.countDocuments()).toBe(n);
    // _id is the event's identity (source, id) and unique: n documents made from n
    // distinct ids are each event exactly once. A sample across the whole backlog is present.
    const sample = Array.from({ length: 200 }, (_, k) => eventId('/fill', `ev-${k * 997}`));
    expect(await events.countDocuments({ _id: { $in: sample as never[] } })).toBe(sample.length);
    expect(await events.findOne({ _id: eventId('/fill', 'ev-123456') as never })).toMatchObject({
      type: 'backlog',
      subject: 's-56',
      data: { i: 123456 },
    });
    const metrics = await metricsOf(persist);
    expect(Number(/spillway_persist_events_total\{intake="pull"\} (\d+)/.exec(metrics)?.[1])).toBe(
      n,
    );
    expect(await redis.exists(stream)).toBe(1);
  }, 900_000);
});
