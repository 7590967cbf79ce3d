/**
 * Redis state is bounded: 100,000 events, each with its own subject, source and
 * Idempotency-Key, leave Redis as it was once they are persisted and the time to
 * live of what ingest wrote has passed (shortened here): the stream (empty),
 * persist's own few keys (lease, catch-up cursor, write budget), which expire
 * too, and the receipts' secret ingest made in Redis (RECEIPT_SECRET is not
 * set here), the one key that never expires: every receipt given depends on
 * it (docs/architecture.md, "The secret"). A few hundred bytes between them.
 */
import { Agent, request } from 'node:http';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  catchupCursorKey,
  pullLeaseKey,
  RECEIPT_SECRET_KEY,
  writeBudgetKey,
} from '../../functions/shared/redis/keys.js';
import {
  type FunctionProcess,
  mongoUrl,
  redisClient,
  redisUrl,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';

const N = Number(process.env.BOUNDED_EVENTS ?? 100_000);
const DB = 12;
const redis = redisClient();
const stream = unique('test:bounded');
const database = unique('t_bounded').replace(/-/g, '_');
let ingest: FunctionProcess;
let persist: FunctionProcess;

beforeAll(async () => {
  await redis.select(DB);
  await redis.flushdb();
  const env = {
    REDIS_URL: `${redisUrl()}/${DB}`,
    STREAM_KEY: stream,
    MONGODB_DB: database,
    SEQ_TTL_SEC: '2',
    COUNTERS_TTL_SEC: '3',
    IDEMPOTENCY_TTL_SEC: '2',
    STALE_AFTER_MS: '0',
    RECEIPT_SECRET: '',
  };
  ingest = await startFunction('ingest', env);
  persist = await startFunction('persist', env);
});
afterAll(async () => {
  await ingest?.kill('SIGKILL');
  await persist?.kill('SIGKILL');
  await redis.flushdb();
  redis.disconnect();
  const mongo = await new MongoClient(mongoUrl()).connect();
  await mongo.db(database).dropDatabase();
  await mongo.close();
});

const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);

async function postAll(url: string, n: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let next = 0;
  let accepted = 0;
  const one = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({
        type: 't',
        source: `/src-${i}`,
        subject: `subj-${i}`,
        data: i,
      });
      const req = request(
        `${url}/events`,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'idempotency-key': `key-${i}`,
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 202) accepted++;
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < n) await one(next++);
    }),
  );
  agent.destroy();
  return accepted;
}

describe('bounded Redis state', () => {
  it(`returns to a handful of keys after ${N} events with distinct subjects and sources`, async () => {
    const memoryBefore = await usedMemory();
    // While they flow, Redis holds a sequence and an idempotency record for each
    // event of the last seconds: the most keys seen is well above the end state.
    let mostKeys = 0;
    const sampler = setInterval(() => {
      redis.dbsize().then(
        (n) => (mostKeys = Math.max(mostKeys, n)),
        () => undefined,
      );
    }, 200);
    try {
      expect(await postAll(ingest.url, N)).toBe(N);
    } finally {
      clearInterval(sampler);
    }
    expect(mostKeys).toBeGreaterThan(1000);
    await waitFor(
      async () => (await redis.xlen(stream)) === 0,
      300_000,
      async () => `stream ${await redis.xlen(stream)}`,
    );
    // Once persisted and past the time to live of everything ingest wrote: the
    // stream (empty, kept), the receipts' secret (kept), and persist's own few
    // keys, each of which expires.
    const kept = [stream, RECEIPT_SECRET_KEY];
    const persistKeys = [pullLeaseKey(stream), catchupCursorKey(stream), writeBudgetKey(database)];
    await waitFor(
      async () => (await redis.dbsize()) <= kept.length + persistKeys.length,
      30_000,
      async () =>
        `${await redis.dbsize()} keys: ${(await redis.keys('*')).slice(0, 10).join(', ')}`,
    );
    const left = (await redis.keys('*')).sort();
    expect(left.filter((key) => !kept.includes(key) && !persistKeys.includes(key))).toEqual([]);
    expect(left).toEqual(expect.arrayContaining(kept));
    expect(await redis.pttl(RECEIPT_SECRET_KEY), 'the secret never expires').toBe(-1);
    for (const key of left.filter((k) => !kept.includes(k)))
      expect(await redis.pttl(key), `${key} expires`).toBeGreaterThan(0);
    expect(await redis.xlen(stream)).toBe(0);
    // What is left is small: the keys' own memory, measured key by key (the
    // server's used_memory also counts whatever other tests hold in the same Redis).
    let leftBytes = 0;
    for (const key of left) leftBytes += Number(await redis.memory('USAGE', key, 'SAMPLES', 0));
    console.log(
      `bounded: ${left.length} keys left, ${leftBytes} bytes; server used_memory ${(await usedMemory()) - memoryBefore} bytes above the start`,
    );
    expect(leftBytes).toBeLessThan(64 * 1024);
  }, 600_000);
});
