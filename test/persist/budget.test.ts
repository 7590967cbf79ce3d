/**
 * The I/O budget, counted at the database server: during a burst of 20,000
 * events, write commands in any one-second window never exceed
 * DB_WRITE_OPS_PER_SEC, while batches grow above one document.
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxWritesPerSecond } from '../../scripts/db-writes.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  postMany,
  redisClient,
  sampleDbWrites,
  startFunction,
  startRelay,
  unique,
  waitFor,
} from '../support/helpers.js';

describe('persist keeps to its write budget during a burst', () => {
  const stream = unique('test:budget');
  const dbName = unique('t_budget').replace(/-/g, '_');
  const budget = 20;
  const env = {
    STREAM_KEY: stream,
    MONGODB_DB: dbName,
    DB_WRITE_OPS_PER_SEC: String(budget),
    CATCHUP_BACKLOG: '5000',
  };
  let redis: Redis;
  let mongo: MongoClient;
  const procs: FunctionProcess[] = [];
  beforeAll(async () => {
    redis = redisClient();
    mongo = await new MongoClient(mongoUrl()).connect();
  });
  afterAll(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await redis.del(stream);
    await mongo.db(dbName).dropDatabase();
    await redis.quit();
    await mongo.close();
  });

  it(`never sends more than ${budget} write commands in a second, and batches grow`, async () => {
    const persist = await startFunction('persist', env);
    procs.push(persist);
    const ingest = await startFunction('ingest', env);
    procs.push(ingest);
    procs.push(
      await startRelay({ ...env, PERSIST_URL: `${persist.url}/`, RELAY_CONSUMERS: '300' }),
    );
    const sampler = sampleDbWrites(25);
    const n = 20_000;
    await postMany(ingest.url, n, 128, (i) => ({
      type: 'burst',
      subject: `b-${i % 1000}`,
      data: { i },
    }));
    const events = mongo.db(dbName).collection('events');
    await waitFor(
      async () => (await events.countDocuments()) >= n,
      240_000,
      async () => `${await events.countDocuments()} documents`,
    );
    const samples = await sampler.stop();
    const sliding = maxWritesPerSecond(samples);
    // The server was sampled densely enough for one-second windows to mean something.
    const gaps = samples
      .slice(1)
      .map((s, i) => s.fromMs - (samples[i] as { fromMs: number }).fromMs)
      .sort((a, b) => a - b);
    expect(gaps[Math.floor(gaps.length / 2)]).toBeLessThan(200);
    expect((samples.at(-1)?.writes ?? 0) - (samples[0]?.writes ?? 0)).toBeGreaterThan(budget);
    expect(sliding).toBeLessThanOrEqual(budget);
    const metrics = await metricsOf(persist);
    const batches = Number(/spillway_persist_batch_docs_count (\d+)/.exec(metrics)?.[1]);
    const docs = Number(/spillway_persist_batch_docs_sum (\d+)/.exec(metrics)?.[1]);
    expect(docs).toBeGreaterThanOrEqual(n);
    // Batches grew: on average far above one document each.
    expect(docs / batches).toBeGreaterThan(10);
    expect(await events.countDocuments()).toBe(n);
  });
});
