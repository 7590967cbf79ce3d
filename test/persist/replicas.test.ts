/**
 * One write budget for the whole database, real processes on real sockets:
 * three persist replicas (PERSIST_WORKERS=3) share a budget of 30 write commands
 * a second through Redis. Under a 30,000-event burst, which the one holding the
 * pull lease catches up on, the server never sees more than 30 write commands in
 * any one second, the burst is written in stream order, and the three drain at
 * least 0.9 × as fast as one process alone at the same budget (both warmed up by
 * a smaller burst first, as long-running replicas are). (The push path with
 * three replicas under faults: test/chaos.)
 */

import type { Redis } from 'ioredis';
import { type Collection, MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleValue } from '../../bench/prom-text.js';
import type { EventDocument } from '../../functions/shared/document.js';
import { catchupCursorKey } from '../../functions/shared/redis/keys.js';
import { busiestSecond } from '../../scripts/db-writes.js';
import { appendEntries } from '../../scripts/stream-fill.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  redisClient,
  sampleDbWrites,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';
import { hostWorkers } from '../support/pipeline-harness.js';

const BUDGET = 30;
const EVENTS = 30_000;
const WARM_UP = 12_000;
let redis: Redis;
let mongo: MongoClient;
beforeAll(async () => {
  redis = redisClient();
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  redis.disconnect();
  await mongo.close();
});

/** Appends `n` events to the stream, as fast as Redis takes them (2,000 per pipeline). */
async function burst(stream: string, n: number, prefix: string): Promise<void> {
  const time = new Date().toISOString();
  await appendEntries(
    redis,
    stream,
    0,
    n,
    (i) => ({
      id: `${prefix}-${i}`,
      type: 'burst',
      source: '/replicas',
      subject: `s-${i % 100}`,
      time,
      seq: i + 1,
      data: JSON.stringify({ i }),
    }),
    2000,
  );
}

/**
 * The burst's events written before an event that precedes them in the stream:
 * pairs of neighbours in stream order (by seq) whose later one was stored first.
 */
async function outOfOrder(events: Collection<EventDocument>, prefix: string): Promise<number> {
  const docs = await events.find({}, { projection: { seq: 1, persistedAt: 1 } }).toArray();
  const burst = docs
    .filter((doc) => doc._id.id.startsWith(`${prefix}-`))
    .filter((doc) => !doc._id.id.startsWith(`${prefix}-warm-`))
    .sort((a, b) => a.seq - b.seq);
  let pairs = 0;
  for (let i = 1; i < burst.length; i++)
    if ((burst[i]?.persistedAt ?? 0) < (burst[i - 1]?.persistedAt ?? 0)) pairs++;
  return pairs;
}

/**
 * Persist with `workers` replicas, started and serving, then a burst of EVENTS
 * appended at once with no source reading the stream: the replica holding the
 * pull lease catches up, the writes under the one budget.
 */
async function drain(workers: number) {
  const stream = unique('test:replicas');
  const database = unique('t_replicas').replace(/-/g, '_');
  const env = {
    STREAM_KEY: stream,
    MONGODB_DB: database,
    DB_WRITE_OPS_PER_SEC: String(BUDGET),
    PERSIST_WORKERS: String(workers),
    PERSIST_MAX_REPLICAS: '3',
    // Batches of one size for one replica or three: the comparison is of the
    // sharing, not of batch sizes. Writes of 2,000 documents take 0.5-1.2 s on
    // this disk, across the default latency target (1 s), where one slow write
    // more or less halves the batches at random; the target is set above them
    // (that three replicas adapt their batches as one process does is
    // shared-budget.test.ts's, the adaptation itself adaptive.test.ts's).
    PULL_CHUNK_ENTRIES: '2000',
    MAX_BATCH_DOCS: '2000',
    DB_LATENCY_TARGET_MS: '3000',
    LOG_LEVEL: 'info',
  };
  let persist: FunctionProcess | undefined;
  const sampler = sampleDbWrites(25);
  try {
    persist = await startFunction('persist', env);
    const running = persist;
    // Every replica serving (each logs it once) before the burst.
    await waitFor(
      async () => (running.output().match(/"msg":"serving"/g) ?? []).length >= workers,
      60_000,
      () => running.output().slice(-2000),
    );
    // Each replica makes its collections first (two write commands, under the
    // same budget): the burst comes after, so the drain is all that is timed.
    await waitFor(
      async () =>
        sampleValue(await metricsOf(running), 'spillway_persist_write_latency_seconds_count') >=
        2 * workers,
      30_000,
      () => running.output().slice(-2000),
    );
    const workerPids = hostWorkers(running.proc.pid as number);
    const events = mongo.db(database).collection<EventDocument>('events');
    const drained = () =>
      waitFor(
        async () => (await redis.xlen(stream)) === 0,
        300_000,
        async () => `stream ${await redis.xlen(stream)}, ${await events.countDocuments()} stored`,
      );
    // Replicas run for long: a first, smaller burst warms every process up (its
    // first writes cost it more), for one process and three alike.
    await burst(stream, WARM_UP, `${stream}-warm`);
    await drained();
    const before = await metricsOf(running);
    const started = performance.now();
    await burst(stream, EVENTS, stream);
    await drained();
    const seconds = (performance.now() - started) / 1000;
    const stored = (await events.countDocuments()) - WARM_UP;
    const unordered = await outOfOrder(events, stream);
    const metrics = await metricsOf(running);
    const value = (name: string) => sampleValue(metrics, name) - sampleValue(before, name);
    const batches = {
      writes: value('spillway_persist_batch_docs_count'),
      meanDocs:
        value('spillway_persist_batch_docs_sum') / value('spillway_persist_batch_docs_count'),
      writeSeconds: value('spillway_persist_write_latency_seconds_sum'),
    };
    return { seconds, stored, unordered, workerPids, batches, samples: await sampler.stop() };
  } finally {
    await sampler.stop();
    await persist?.kill('SIGKILL');
    await redis.del(stream, catchupCursorKey(stream));
    await mongo.db(database).dropDatabase();
  }
}

describe('one write budget shared by three persist replicas', () => {
  it(`keeps the server at ${BUDGET} write commands a second and drains as fast as one process`, async () => {
    // Alternated, best of four each: the machine's noise falls on both alike (a
    // burst drains in 15 writes of 0.5-1 s on this disk, whose latency varies by
    // a few hundred ms from one write to the next).
    const ones: Awaited<ReturnType<typeof drain>>[] = [];
    const threes: Awaited<ReturnType<typeof drain>>[] = [];
    for (let round = 0; round < 4; round++) {
      ones.push(await drain(1));
      threes.push(await drain(3));
    }
    const fastest = <T extends { seconds: number }>(runs: T[]) =>
      runs.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
    const one = fastest(ones);
    const three = fastest(threes);
    const ratio = one.seconds / three.seconds;
    const busiest = busiestSecond(three.samples);
    console.log(
      `replicas: runs one ${ones.map((r) => r.seconds.toFixed(1)).join(', ')} s, three ${threes.map((r) => r.seconds.toFixed(1)).join(', ')} s; one process drained ${EVENTS} in ${one.seconds.toFixed(1)} s, three in ${three.seconds.toFixed(1)} s (ratio ${ratio.toFixed(2)}); out of stream order one ${ones.map((r) => r.unordered).join(', ')}, three ${threes.map((r) => r.unordered).join(', ')}; busiest second at the server ${busiest.writes} (one: ${busiestSecond(one.samples).writes}); batches one ${JSON.stringify(one.batches)} three ${JSON.stringify(three.batches)}`,
    );
    for (const run of [...ones, ...threes]) expect(run.stored).toBe(EVENTS);
    // Written in stream order, with three replicas as with one: the order of a
    // backlog's writes is what the database's _id index pays for (pull.ts).
    expect([...ones, ...threes].map((run) => run.unordered)).toEqual(Array(8).fill(0));
    // Three replicas (worker processes behind one port) against one.
    expect(three.workerPids).toHaveLength(3);
    expect(one.workerPids).toHaveLength(0);
    expect(three.samples.length).toBeGreaterThan(20);
    for (const run of [...ones, ...threes])
      expect(busiestSecond(run.samples).writes).toBeLessThanOrEqual(BUDGET);
    expect(ratio).toBeGreaterThanOrEqual(0.9);
  }, 600_000);
});
