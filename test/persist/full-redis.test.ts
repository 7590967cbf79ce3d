/**
 * A full Redis is a state the pipeline leaves by itself. Redis at its
 * maxmemory (noeviction) refuses writes; the drain needs writes too (the
 * sweeper's lease, catch-up's cursor, the write budget), and it is what frees
 * memory. Every script the drain runs may write when Redis is out of memory
 * (`#!lua flags=allow-oom`), and ingest refuses new events at
 * MAX_REDIS_MEMORY_PCT of maxmemory, before Redis does.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFields } from '../../functions/shared/entry.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import {
  type FunctionProcess,
  mongoUrl,
  postJson,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';
import { type OwnRedis, startRedisServer } from '../support/redis-server.js';

const STREAM = 'spillway:events';
const BEHIND = 2000; // added before the source's group: only the sweeper takes them
const BEYOND = 3000; // after it, never delivered: catch-up takes them
const DATA = 'x'.repeat(4000);

describe('Redis at its maxmemory', () => {
  let redis: OwnRedis;
  let mongo: MongoClient;
  const dbName = unique('full').replaceAll('-', '_');
  const fns: FunctionProcess[] = [];

  beforeAll(async () => {
    redis = await startRedisServer(['--maxmemory', '40mb', '--maxmemory-policy', 'noeviction']);
    mongo = await new MongoClient(mongoUrl()).connect();
  });

  afterAll(async () => {
    await Promise.all(fns.map((f) => f.kill()));
    await mongo?.db(dbName).dropDatabase();
    await mongo?.close();
    await redis?.stop();
  });

  const add = async (from: number, to: number) => {
    const pipeline = redis.client.pipeline();
    for (let i = from; i < to; i++)
      pipeline.xadd(
        STREAM,
        '*',
        ...entryFields({
          id: `full-${i}`,
          type: 'full.test',
          source: '/full',
          subject: `s${i}`,
          time: new Date().toISOString(),
          seq: 1,
          data: JSON.stringify({ i, pad: DATA }),
        }),
      );
    await pipeline.exec();
  };

  it('is drained to empty, and ingest accepts again, without anyone touching Redis', async () => {
    await add(0, BEHIND);
    await redis.client.xgroup('CREATE', STREAM, CONSUMER_GROUP, '$');
    await add(BEHIND, BEHIND + BEYOND);
    // Fill what is left, as other writers would (the Trigger's dead letters, say).
    // Large values first, then small ones, until even a small write is refused.
    for (const size of [16 * 1024, 512, 16]) {
      for (let i = 0; ; i++) {
        try {
          await redis.client.set(`filler:${size}:${i}`, 'f'.repeat(size));
        } catch (error) {
          expect(String(error)).toContain('OOM');
          break;
        }
      }
    }
    // Full: Redis's memory at its maxmemory (a refused write frees its buffers, so
    // a tiny one may pass a moment later: the drain meets refusals, not every time).
    const memory = await redis.client.info('memory');
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(memory)?.[1]);
    expect(field('used_memory')).toBeGreaterThanOrEqual(field('maxmemory') * 0.99);

    const env = {
      REDIS_URL: redis.url,
      STREAM_KEY: STREAM,
      MONGODB_DB: dbName,
      STALE_AFTER_MS: '1000',
      SWEEP_INTERVAL_MS: '500',
      CATCHUP_BACKLOG: '1000',
      CATCHUP_SKIP_ENTRIES: '0',
    };
    const ingest = await startFunction('ingest', env);
    fns.push(ingest);
    const event = { type: 'full.test', source: '/full', data: { after: true } };
    // Refused before Redis would refuse it: a 503 that says why, with Retry-After.
    await waitFor(
      async () => (await postJson(`${ingest.url}/events`, event)).body.error === 'backlog_full',
      5000,
      () => 'ingest did not refuse events as backlog_full with Redis full',
    );
    const refused = await postJson(`${ingest.url}/events`, event);
    expect(refused.body.error).toBe('backlog_full');
    expect(String(refused.body.detail)).toContain('MAX_REDIS_MEMORY_PCT');
    expect(refused.headers.get('retry-after')).toBe('1');

    fns.push(await startFunction('persist', env));
    await waitFor(
      async () => (await redis.client.xlen(STREAM)) === 0,
      90_000,
      async () => `${await redis.client.xlen(STREAM)} entries still in the stream`,
    );
    const stored = await mongo.db(dbName).collection('events').countDocuments();
    expect(stored).toBe(BEHIND + BEYOND);
    // The stream and its group are still there (never deleted), and Redis has room again.
    expect(await redis.client.exists(STREAM)).toBe(1);
    await waitFor(
      async () => (await postJson(`${ingest.url}/events`, event)).status === 202,
      5000,
      () => 'ingest still refuses events after the drain',
    );
  }, 180_000);
});
