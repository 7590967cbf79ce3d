/**
 * A Retry-After that tells the truth, on the real database under its real
 * blkio limit: with the disk cut from 100 to 40 IOPS and a backlog over
 * MAX_BACKLOG, the 503's Retry-After (the backlog's excess over the drain
 * persist measured) is within a factor of 2 of the time the backlog really
 * took to get back under the limit; and MAX_DRAIN_SEC refuses events when the
 * backlog would take longer than that to drain at the measured rate.
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainRateKey } from '../../functions/shared/redis/keys.js';
import { setBlkioIops } from '../../scripts/services-env.js';
import { appendEntries } from '../../scripts/stream-fill.js';
import {
  type FunctionProcess,
  mongoUrl,
  postJson,
  redisClient,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';

const cgroup = process.env.DB_BLKIO_CGROUP;
let redis: Redis;
let mongo: MongoClient;
const procs: FunctionProcess[] = [];

function setIops(iops: number): void {
  if (!cgroup) throw new Error('the database runs without a blkio group (DB_BLKIO_CGROUP)');
  setBlkioIops(cgroup, iops);
}

beforeAll(async () => {
  redis = redisClient();
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  if (cgroup) setIops(100);
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  redis.disconnect();
  await mongo.close();
});

async function start(target: 'ingest' | 'persist', env: Record<string, string>) {
  const fn = await startFunction(target, env);
  procs.push(fn);
  return fn;
}

/** A backlog of `n` entries, as a flood would leave it. */
async function fill(stream: string, n: number): Promise<void> {
  const time = new Date().toISOString();
  await appendEntries(
    redis,
    stream,
    0,
    n,
    (i) => ({
      id: `ra-${i}`,
      type: 't',
      source: '/retry-after',
      subject: '',
      time,
      seq: i + 1,
      data: JSON.stringify({ i, pad: 'x'.repeat(200) }),
    }),
    1000,
  );
}

/**
 * The drain rate persist has measured, from the same buckets ingest reads
 * (undefined: fewer than `seconds` complete seconds of them yet).
 */
async function measuredRate(stream: string, seconds = 3): Promise<number | undefined> {
  const buckets = await redis.hgetall(drainRateKey(stream));
  const now = Math.floor(Date.now() / 1000);
  const complete = Object.keys(buckets)
    .map(Number)
    .filter((s) => s < now && s >= now - 10);
  if (complete.length < seconds) return undefined;
  let sum = 0;
  for (const s of complete) sum += Number(buckets[String(s)]);
  return sum / (now - Math.min(...complete));
}

describe('Retry-After from the measured drain', () => {
  it('predicts, within a factor of 2, when a backlog over MAX_BACKLOG drains under it with the disk cut', async () => {
    const limit = 4000;
    const env = {
      STREAM_KEY: unique('test:retry-after'),
      MONGODB_DB: unique('t_retry_after').replace(/-/g, '_'),
      STALE_AFTER_MS: '0',
      SWEEP_INTERVAL_MS: '200',
      MAX_BACKLOG: String(limit),
      // Writes of at most 500 documents: the disk, not the budget, sets the pace.
      MAX_BATCH_DOCS: '500',
    };
    try {
      await fill(env.STREAM_KEY, limit * 7);
      setIops(40);
      const ingest = await start('ingest', env);
      await start('persist', env);
      // Until persist has measured its drain over most of the window (10 s).
      await waitFor(
        async () => (await measuredRate(env.STREAM_KEY, 8)) !== undefined,
        120_000,
        async () => `no drain measured; backlog ${await redis.xlen(env.STREAM_KEY)}`,
      );
      const backlog = await redis.xlen(env.STREAM_KEY);
      const res = await postJson(`${ingest.url}/events`, { type: 't', data: 1 });
      const refusedAt = Date.now();
      expect([res.status, res.body.error]).toEqual([503, 'backlog_full']);
      const retryAfter = Number(res.headers.get('retry-after'));
      const rate = await measuredRate(env.STREAM_KEY);
      await waitFor(
        async () => (await redis.xlen(env.STREAM_KEY)) < limit,
        300_000,
        async () => `backlog ${await redis.xlen(env.STREAM_KEY)}`,
      );
      const tookSec = (Date.now() - refusedAt) / 1000;
      console.log(
        `retry-after: backlog ${backlog} (limit ${limit}), drain ${rate?.toFixed(0)}/s: Retry-After ${retryAfter} s, took ${tookSec.toFixed(1)} s`,
      );
      // Computed, not the constant (BACKLOG_RETRY_AFTER_SEC 1), and not the cap.
      expect(retryAfter).toBeGreaterThanOrEqual(5);
      expect(retryAfter).toBeLessThan(300);
      expect(tookSec).toBeGreaterThanOrEqual(retryAfter / 2);
      expect(tookSec).toBeLessThanOrEqual(retryAfter * 2);
      // Under the limit again: accepted.
      expect((await postJson(`${ingest.url}/events`, { type: 't', data: 2 })).status).toBe(202);
    } finally {
      setIops(100);
      await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
      await redis.del(env.STREAM_KEY, drainRateKey(env.STREAM_KEY));
      await mongo.db(env.MONGODB_DB).dropDatabase();
    }
  }, 400_000);

  it('refuses events under MAX_DRAIN_SEC once the backlog would take longer to drain, and only then', async () => {
    const env = {
      STREAM_KEY: unique('test:max-drain'),
      MONGODB_DB: unique('t_max_drain').replace(/-/g, '_'),
      STALE_AFTER_MS: '0',
      SWEEP_INTERVAL_MS: '200',
      MAX_DRAIN_SEC: '2',
      DB_WRITE_OPS_PER_SEC: '2',
      MAX_BATCH_DOCS: '200',
    };
    try {
      await fill(env.STREAM_KEY, 6000);
      const ingest = await start('ingest', env);
      // No drain measured yet (no persist): MAX_DRAIN_SEC cannot judge, MAX_BACKLOG alone applies.
      expect((await postJson(`${ingest.url}/events`, { type: 't', data: 0 })).status).toBe(202);
      await start('persist', env);
      await waitFor(
        async () => (await measuredRate(env.STREAM_KEY)) !== undefined,
        60_000,
        () => 'no drain measured',
      );
      // At about 400 entries/s, 6000 entries are many more than 2 s of work.
      const res = await postJson(`${ingest.url}/events`, { type: 't', data: 1 });
      const backlog = await redis.xlen(env.STREAM_KEY);
      const rate = (await measuredRate(env.STREAM_KEY)) as number;
      expect([res.status, res.body.error]).toEqual([503, 'backlog_full']);
      expect(String(res.body.detail)).toContain('MAX_DRAIN_SEC (2 s)');
      const retryAfter = Number(res.headers.get('retry-after'));
      // The time until what is left is 2 s of work, at the measured rate.
      const expected = backlog / rate - 2;
      expect(retryAfter).toBeGreaterThanOrEqual(Math.max(1, expected / 2));
      expect(retryAfter).toBeLessThanOrEqual(expected * 2 + 1);
      // Once drained: accepted again.
      await waitFor(
        async () => (await postJson(`${ingest.url}/events`, { type: 't', data: 2 })).status === 202,
        120_000,
        async () => `backlog ${await redis.xlen(env.STREAM_KEY)}`,
      );
    } finally {
      await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
      await redis.del(env.STREAM_KEY, drainRateKey(env.STREAM_KEY));
      await mongo.db(env.MONGODB_DB).dropDatabase();
    }
  }, 300_000);
});
