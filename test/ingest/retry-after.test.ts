/**
 * A Retry-After that tells the truth, on the real database under its real
 * blkio limit: with the disk cut from 100 to 40 IOPS and a backlog over
 * MAX_BACKLOG, the 503's Retry-After (the backlog's excess over the drain
 * persist measured) is within a factor of 2 of the time the backlog really
 * took to get back under the limit; MAX_DRAIN_SEC refuses events when the
 * backlog would take longer than that to drain at the measured rate; and a
 * drain that has just started has no rate (the fallback, MAX_DRAIN_SEC does
 * not judge) until it has one, or until nothing was taken out for a whole
 * window (rate 0).
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRAIN_RATE_WINDOW_SEC } from '../../functions/shared/receipts.js';
import { drainRateKey } from '../../functions/shared/redis/keys.js';
import { Scripts } from '../../functions/shared/redis/scripts.js';
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
import { databasePid } from '../support/receipts.js';

const cgroup = process.env.DB_BLKIO_CGROUP;
let redis: Redis;
let mongo: MongoClient;
const procs: FunctionProcess[] = [];

function setIops(iops: number): void {
  if (!cgroup)
    throw new Error(
      "DB_BLKIO_CGROUP is not set: this test cuts the database's disk to 40 IOPS through the cgroup v1 blkio group scripts/services.sh makes for it (/sys/fs/cgroup/blkio/spillway-db-<port>), and prints as DB_BLKIO_CGROUP when it starts the database; with MONGODB_URL given, set DB_BLKIO_CGROUP to the group holding that database",
    );
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
 * The drain rate persist has measured, from the same buckets ingest reads, by
 * includes/drain-rate.lua's rule (undefined: its complete seconds span fewer
 * than `seconds`, or they are all 0 and span less than the window).
 */
async function measuredRate(stream: string, seconds = 3): Promise<number | undefined> {
  const buckets = await redis.hgetall(drainRateKey(stream));
  const now = Math.floor(Date.now() / 1000);
  const complete = Object.keys(buckets)
    .map(Number)
    .filter((s) => s < now && s >= now - DRAIN_RATE_WINDOW_SEC);
  if (complete.length === 0) return undefined;
  const span = now - Math.min(...complete);
  let sum = 0;
  for (const s of complete) sum += Number(buckets[String(s)]);
  if (span < seconds || (sum === 0 && span < DRAIN_RATE_WINDOW_SEC)) return undefined;
  return sum / span;
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

  it('is known only over at least 3 complete seconds, and 0 only once nothing was taken out for a whole window', async () => {
    const key = drainRateKey(unique('test:drain-rule'));
    const scripts = new Scripts(redis);
    /** The rate the script gives with these buckets (seconds before Redis's now: entries). */
    const rateWith = async (buckets: Record<number, number>) => {
      // Well inside one second of Redis's clock, so that "now" does not move meanwhile.
      let [sec, usec] = (await redis.time()).map(Number) as [number, number];
      if (usec > 700_000) {
        await new Promise((r) => setTimeout(r, (1_000_000 - usec) / 1000 + 20));
        [sec, usec] = (await redis.time()).map(Number) as [number, number];
      }
      await redis.del(key);
      for (const [ago, entries] of Object.entries(buckets))
        await redis.hset(key, String(sec - Number(ago)), entries);
      const rate = await scripts.drainRateReport(key, 0, DRAIN_RATE_WINDOW_SEC);
      expect(Number((await redis.time())[0]), 'the second moved').toBe(sec);
      return rate;
    };
    const zeros = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [i + 1, 0]));
    try {
      expect(await rateWith({ 1: 0 })).toBeUndefined();
      expect(await rateWith({ 2: 50, 1: 50 })).toBeUndefined();
      expect(await rateWith({ 3: 30, 2: 30, 1: 30 })).toBe(30);
      expect(await rateWith({ 3: 0, 2: 0, 1: 60 })).toBe(20);
      expect(await rateWith(zeros(9))).toBeUndefined();
      expect(await rateWith(zeros(10))).toBe(0);
    } finally {
      await redis.del(key);
    }
  });

  it('has no rate while a drain starts against a stopped database (fallback; MAX_DRAIN_SEC accepts), 0 once that lasted the window, a rate once it drains', async () => {
    const env = {
      STREAM_KEY: unique('test:fresh-drain'),
      MONGODB_DB: unique('t_fresh_drain').replace(/-/g, '_'),
      STALE_AFTER_MS: '0',
      SWEEP_INTERVAL_MS: '200',
    };
    const db = databasePid();
    try {
      // Persist starts while the database answers (it connects), on an empty stream.
      // 200 entries/s at most once resumed: the backlog outlasts the first seconds of its rate.
      await start('persist', { ...env, DB_WRITE_OPS_PER_SEC: '2', MAX_BATCH_DOCS: '100' });
      // Two ingest processes on the stream: one refuses over MAX_BACKLOG, one judges by MAX_DRAIN_SEC.
      const limited = await start('ingest', {
        ...env,
        MAX_BACKLOG: '1000',
        BACKLOG_RETRY_AFTER_SEC: '7',
      });
      const judged = await start('ingest', { ...env, MAX_DRAIN_SEC: '3600' });
      const asked = () => askBoth(limited.url, judged.url);
      process.kill(db, 'SIGSTOP');
      try {
        // A flood: persist takes it up and holds it, and takes nothing out of the stream.
        await fill(env.STREAM_KEY, 3000);
        await expectStalledOnlyAfterTheWindow(env.STREAM_KEY, asked);
      } finally {
        process.kill(db, 'SIGCONT');
      }
      // Draining again (slowly: the stalled writes cut the batches), and measured: a
      // backlog well under MAX_DRAIN_SEC's worth at that rate is accepted.
      await waitFor(
        async () =>
          ((await measuredRate(env.STREAM_KEY)) ?? 0) * 3600 >
          2 * (await redis.xlen(env.STREAM_KEY)),
        60_000,
        async () =>
          `drain ${await measuredRate(env.STREAM_KEY)}/s; backlog ${await redis.xlen(env.STREAM_KEY)}`,
      );
      const answer = await asked();
      expect(answer.limited.status).toBe(503);
      const rate = Number(/it drains at ([0-9.]+) events\/s/.exec(answer.limited.detail)?.[1]);
      expect(rate, answer.limited.detail).toBeGreaterThan(0);
      expect(Number(answer.limited.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(answer.limited.retryAfter)).toBeLessThanOrEqual(300);
      expect(answer.judged.status).toBe(202);
    } finally {
      process.kill(db, 'SIGCONT');
      await Promise.all(procs.splice(0).map((p) => p.kill('SIGKILL')));
      await redis.del(env.STREAM_KEY, drainRateKey(env.STREAM_KEY));
      await mongo.db(env.MONGODB_DB).dropDatabase();
    }
  }, 300_000);
});

/**
 * From persist's first report of a drain that takes nothing out: the answers
 * say "unknown" (no rate) until that has lasted the whole window, then
 * "stalled" (rate 0).
 */
async function expectStalledOnlyAfterTheWindow(stream: string, asked: () => Promise<Both>) {
  await waitFor(
    async () => (await redis.hlen(drainRateKey(stream))) > 0,
    30_000,
    () => 'persist reported no drain',
  );
  const startedAt = Date.now();
  const seen = await untilStalled(asked, 40_000);
  const stalledAfter = seen.at(-1)?.at ?? 0;
  // Unknown until zero lasted the whole window: never 300 s, never refused by MAX_DRAIN_SEC before.
  const early = seen.slice(0, -1);
  expect(early.length).toBeGreaterThan(5);
  for (const answer of early) expect(answer.summary).toBe('unknown');
  // The first bucket's second ends up to 1 s after it appeared (and was seen 200 ms later).
  expect(stalledAfter - startedAt).toBeGreaterThanOrEqual((DRAIN_RATE_WINDOW_SEC - 2) * 1000);
  expect(seen.at(-1)?.summary).toBe('stalled');
}

interface Asked {
  status: number;
  retryAfter: string | null;
  detail: string;
}

/** One post to each: the one over MAX_BACKLOG and the one judging by MAX_DRAIN_SEC. */
async function askBoth(limitedUrl: string, judgedUrl: string) {
  const ask = async (url: string): Promise<Asked> => {
    const res = await postJson(`${url}/events`, { type: 't', data: 'probe' });
    const detail = String(res.body.detail ?? '');
    return { status: res.status, retryAfter: res.headers.get('retry-after'), detail };
  };
  const [limited, judged] = await Promise.all([ask(limitedUrl), ask(judgedUrl)]);
  return { limited, judged, at: Date.now() };
}

type Both = Awaited<ReturnType<typeof askBoth>>;

/**
 * What both answers say of the drain rate: unknown (BACKLOG_RETRY_AFTER_SEC,
 * and MAX_DRAIN_SEC does not judge), stalled (rate 0: 300 s, and refused by
 * MAX_DRAIN_SEC), or anything else, spelled out.
 */
function summary({ limited, judged }: Both): string {
  const refused = limited.status === 503;
  if (refused && limited.retryAfter === '7' && judged.status === 202) {
    expect(limited.detail).toContain('no drain rate is known yet');
    return 'unknown';
  }
  if (refused && limited.retryAfter === '300' && judged.status === 503) {
    expect(judged.detail).toContain('MAX_DRAIN_SEC (3600 s)');
    return 'stalled';
  }
  return JSON.stringify({ limited, judged });
}

/** Asks every 500 ms until the answers say the drain stalled (or fails after timeoutMs). */
async function untilStalled(asked: () => Promise<Both>, timeoutMs: number) {
  const seen: Array<Both & { summary: string }> = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await asked();
    seen.push({ ...answer, summary: summary(answer) });
    if (seen.at(-1)?.summary !== 'unknown' || Date.now() > deadline) return seen;
    await new Promise((r) => setTimeout(r, 500));
  }
}
