/**
 * The whole pipeline on one machine, real processes on real sockets: ingest →
 * Redis stream → relay (stand-in for RedisStreamSource + Broker + Trigger) →
 * persist → MongoDB-wire server (FerretDB under its blkio limit, or mongod).
 */
import type { Redis } from 'ioredis';
import { type Db, MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventId } from '../../functions/shared/document.js';
import { entryFields } from '../../functions/shared/entry.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  portsOf,
  postMany,
  redisClient,
  sourceDelivery,
  startFunction,
  startRelay,
  unique,
  waitFor,
} from '../support/helpers.js';

let redis: Redis;
let mongo: MongoClient;
beforeAll(async () => {
  redis = redisClient();
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  await redis.quit();
  await mongo.close();
});

/** A stream and a database of its own for one scenario. */
function scenario(name: string) {
  const stream = unique(`test:${name}`);
  const dbName = unique(`t_${name}`).replace(/-/g, '_');
  const env = { STREAM_KEY: stream, MONGODB_DB: dbName, CONSUMER_GROUP };
  return { stream, dbName, env, db: (): Db => mongo.db(dbName) };
}

async function cleanup(
  s: ReturnType<typeof scenario>,
  ...procs: Array<FunctionProcess | undefined>
) {
  for (const p of procs) await p?.kill('SIGKILL');
  await redis.del(s.stream);
  await s.db().dropDatabase();
}

const count = (db: Db, collection = 'events') => db.collection(collection).countDocuments();

describe('persist: the same CloudEvent twice', () => {
  const s = scenario('twice');
  let persist: FunctionProcess;
  beforeAll(async () => {
    persist = await startFunction('persist', s.env);
  });
  afterAll(() => cleanup(s, persist));

  it('gives one document, and both deliveries 2xx', async () => {
    const fields = entryFields({
      id: unique('ev'),
      type: 't',
      source: '/s',
      subject: 'x',
      time: new Date().toISOString(),
      seq: 1,
      data: '{"a":1}',
    });
    const streamId = await redis.xadd(s.stream, '*', ...fields);
    const first = await fetch(persist.url, sourceDelivery(streamId as string, fields));
    const second = await fetch(persist.url, sourceDelivery(streamId as string, fields));
    expect([first.status, second.status]).toEqual([204, 204]);
    expect(await count(s.db())).toBe(1);
    const doc = await s.db().collection('events').findOne({});
    expect(doc).toMatchObject({
      _id: { source: '/s', id: fields[1] },
      type: 't',
      subject: 'x',
      seq: 1,
      data: { a: 1 },
      streamId,
    });
    expect(doc?.time).toBeInstanceOf(Date);
    expect(doc?.persistedAt).toBeInstanceOf(Date);
    // Committed entries are gone from the stream: it holds only what is not persisted.
    expect(await redis.xlen(s.stream)).toBe(0);
  });

  it('refuses CloudEvents not made by the source (400, nothing written), dead-letters bad entries, and keeps flowing', async () => {
    const junk = [
      sourceDelivery('1-2', [], { type: 'com.example.other' }),
      sourceDelivery('not-a-stream-id', ['id', 'x']),
    ];
    for (const delivery of junk) {
      const res = await fetch(persist.url, delivery);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_cloudevent');
    }
    // A doorbell for an entry that is not in the stream writes nothing and is answered.
    expect((await fetch(persist.url, sourceDelivery('1-1', { not: 'an array' }))).status).toBe(204);
    expect(await s.db().collection('events_dead').countDocuments()).toBe(0);
    // A malformed entry in the stream itself, delivered by the source: dead-lettered and removed.
    const badId = (await redis.xadd(s.stream, '*', 'id', 'only-an-id')) as string;
    const res = await fetch(persist.url, sourceDelivery(badId, ['id', 'only-an-id']));
    expect(res.status).toBe(204);
    expect(await s.db().collection('events_dead').findOne({ streamId: badId })).toMatchObject({
      reason: expect.stringMatching(/missing/),
    });
    expect(await redis.xlen(s.stream)).toBe(0);
    // And the next good event still goes through.
    const fields = entryFields({
      id: unique('ev'),
      type: 't',
      source: '/s',
      subject: 'y',
      time: new Date().toISOString(),
      seq: 1,
      data: '2',
    });
    const good = await redis.xadd(s.stream, '*', ...fields);
    expect((await fetch(persist.url, sourceDelivery(good as string, fields))).status).toBe(204);
    expect(await count(s.db())).toBe(2);
  });

  it('writes what the stream holds, never what a forged CloudEvent says', async () => {
    const real = entryFields({
      id: unique('ev'),
      type: 'real',
      source: '/bank',
      subject: 'acct',
      time: new Date().toISOString(),
      seq: 1,
      data: '{"amount":10}',
    });
    const streamId = (await redis.xadd(s.stream, '*', ...real)) as string;
    const forged = [...real];
    forged[forged.indexOf('data') + 1] = '{"amount":1000000}';
    forged[forged.indexOf('type') + 1] = 'forged';
    expect((await fetch(persist.url, sourceDelivery(streamId, forged))).status).toBe(204);
    const doc = await s
      .db()
      .collection('events')
      .findOne({ _id: { source: '/bank', id: real[1] } as never });
    expect(doc).toMatchObject({ type: 'real', data: { amount: 10 }, streamId });
    // A forged id that names no pending entry writes and deletes nothing.
    const before = await count(s.db());
    expect((await fetch(persist.url, sourceDelivery('1-9', forged))).status).toBe(204);
    expect(await count(s.db())).toBe(before);
  });

  it('answers 400 to a request that is no CloudEvent at all', async () => {
    const res = await fetch(persist.url, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_cloudevent');
  });
});

describe('pipeline: 10,000 events through ingest, relay and persist', () => {
  const s = scenario('tenk');
  let ingest: FunctionProcess;
  let persist: FunctionProcess;
  let relay: FunctionProcess;
  beforeAll(async () => {
    persist = await startFunction('persist', s.env);
    ingest = await startFunction('ingest', s.env);
    relay = await startRelay({ ...s.env, PERSIST_URL: `${persist.url}/`, RELAY_CONSUMERS: '200' });
  });
  afterAll(() => cleanup(s, relay, ingest, persist));

  it('ends as exactly 10,000 documents: every 202 id once, fields as posted', async () => {
    const n = 10_000;
    const answers = await postMany(ingest.url, n, 64, (i) => ({
      type: 'test.tenk',
      source: '/tenk',
      subject: `s-${i % 100}`,
      data: { i, tag: 'x'.repeat(i % 50) },
    }));
    await waitFor(
      async () => (await count(s.db())) >= n,
      120_000,
      async () => `${await count(s.db())} documents, stream ${await redis.xlen(s.stream)}`,
    );
    const docs = await s.db().collection('events').find({}).toArray();
    expect(docs).toHaveLength(n);
    const byId = new Map(docs.map((d) => [(d._id as unknown as EventId).id, d]));
    expect(byId.size).toBe(n);
    answers.forEach((answer, i) => {
      const doc = byId.get(answer.id);
      expect(doc, `event ${i}`).toBeDefined();
      expect(doc).toMatchObject({
        _id: { source: '/tenk', id: answer.id },
        type: 'test.tenk',
        subject: `s-${i % 100}`,
        seq: answer.seq,
        data: { i, tag: 'x'.repeat(i % 50) },
      });
    });
    await waitFor(
      async () => (await redis.xlen(s.stream)) === 0,
      30_000,
      async () => `stream ${await redis.xlen(s.stream)}`,
    );
    const metrics = await metricsOf(persist);
    const batches = Number(/spillway_persist_batch_docs_count (\d+)/.exec(metrics)?.[1]);
    // Group commit: far fewer write commands than events.
    expect(batches).toBeLessThan(n / 5);
  });
});

describe('pipeline: persist down during a burst', () => {
  const s = scenario('down');
  let persist: FunctionProcess | undefined;
  let ingest: FunctionProcess;
  let relay: FunctionProcess;
  afterAll(() => cleanup(s, relay, ingest, persist));

  it('the relay drops what it cannot send (acking it), and the sweeper persists every acknowledged event', async () => {
    const env = { ...s.env, STALE_AFTER_MS: '2000', SWEEP_INTERVAL_MS: '500' };
    persist = await startFunction('persist', env);
    const persistPorts = portsOf(persist);
    ingest = await startFunction('ingest', env);
    // As many consumers as config-redis's default numConsumers.
    relay = await startRelay({ ...env, PERSIST_URL: `${persist.url}/`, RELAY_CONSUMERS: '500' });
    const before = await postMany(ingest.url, 500, 16, (i) => ({
      type: 't',
      data: { phase: 'before', i },
    }));
    await waitFor(
      async () => (await count(s.db())) === 500,
      60_000,
      async () => `${await count(s.db())} documents`,
    );
    await persist.kill('SIGTERM');
    persist = undefined;
    const during = await postMany(ingest.url, 1500, 32, (i) => ({
      type: 't',
      data: { phase: 'during', i },
    }));
    // The relay tries each delivery 6 times over ~1.6 s, then acks it anyway.
    await waitFor(
      async () => relay.output().includes('acknowledging it anyway'),
      30_000,
      () => relay.output().slice(-2000),
    );
    await waitFor(
      async () => {
        const pending = (await redis.xpending(s.stream, CONSUMER_GROUP)) as [number, ...unknown[]];
        return pending[0] === 0;
      },
      60_000,
      async () => JSON.stringify(await redis.xpending(s.stream, CONSUMER_GROUP)),
    );
    // Acked by the source, yet still in the stream: only persist deletes.
    expect(await redis.xlen(s.stream)).toBe(1500);
    persist = await startFunction('persist', { ...env, ...persistPorts });
    await waitFor(
      async () => (await count(s.db())) === 2000,
      120_000,
      async () => `${await count(s.db())} documents, stream ${await redis.xlen(s.stream)}`,
    );
    const ids = new Set(
      (
        await s
          .db()
          .collection('events')
          .find({}, { projection: { _id: 1 } })
          .toArray()
      ).map((d) => (d._id as unknown as EventId).id),
    );
    for (const a of [...before, ...during]) expect(ids.has(a.id)).toBe(true);
    expect(await redis.xlen(s.stream)).toBe(0);
  });
});

describe('pipeline: persist killed with SIGKILL in the middle of a batch', () => {
  const s = scenario('kill');
  let persist: FunctionProcess | undefined;
  let ingest: FunctionProcess;
  let relay: FunctionProcess;
  afterAll(() => cleanup(s, relay, ingest, persist));

  it('loses nothing acknowledged and duplicates nothing after a restart', async () => {
    const env = { ...s.env, STALE_AFTER_MS: '3000', SWEEP_INTERVAL_MS: '500' };
    persist = await startFunction('persist', env);
    const persistPorts = portsOf(persist);
    ingest = await startFunction('ingest', env);
    relay = await startRelay({ ...env, PERSIST_URL: `${persist.url}/`, RELAY_CONSUMERS: '200' });
    const posting = postMany(ingest.url, 8000, 64, (i) => ({
      type: 't',
      subject: `k-${i % 10}`,
      data: { i },
    }));
    // Kill once batches are being written.
    await waitFor(
      async () => (await count(s.db())) > 500,
      60_000,
      async () => `${await count(s.db())} documents`,
    );
    await persist.kill('SIGKILL');
    const answers = await posting;
    persist = await startFunction('persist', { ...env, ...persistPorts, LOG_LEVEL: 'info' });
    await waitFor(
      async () => (await count(s.db())) >= 8000,
      180_000,
      async () => `${await count(s.db())} documents, stream ${await redis.xlen(s.stream)}`,
    );
    await waitFor(
      async () => (await redis.xlen(s.stream)) === 0,
      60_000,
      async () => `stream ${await redis.xlen(s.stream)}`,
    );
    const docs = await s
      .db()
      .collection('events')
      .find({}, { projection: { _id: 1, seq: 1, subject: 1 } })
      .toArray();
    expect(docs).toHaveLength(8000);
    const ids = new Set(docs.map((d) => (d._id as unknown as EventId).id));
    expect(ids.size).toBe(8000);
    for (const a of answers) expect(ids.has(a.id)).toBe(true);
  });
});

describe('pipeline: relay killed and restarted during a burst', () => {
  const s = scenario('relay');
  let persist: FunctionProcess;
  let ingest: FunctionProcess;
  let relay: FunctionProcess | undefined;
  afterAll(() => cleanup(s, relay, ingest, persist));

  it('leaves no pending entry that is gone from the stream, and persists everything', async () => {
    const env = { ...s.env, STALE_AFTER_MS: '3000', SWEEP_INTERVAL_MS: '500' };
    persist = await startFunction('persist', env);
    ingest = await startFunction('ingest', env);
    const relayEnv = {
      ...env,
      PERSIST_URL: `${persist.url}/`,
      RELAY_CONSUMERS: '100',
      RELAY_CONSUMER_NAME: 'relay-test',
    };
    relay = await startRelay(relayEnv);
    const posting = postMany(ingest.url, 5000, 64, (i) => ({ type: 't', data: { i } }));
    await waitFor(
      async () => (await count(s.db())) > 300,
      60_000,
      async () => `${await count(s.db())} documents`,
    );
    await relay.kill('SIGKILL');
    // Entries the relay read but never acked stay pending for its consumer name;
    // the restarted relay re-reads them first.
    relay = await startRelay(relayEnv);
    const answers = await posting;
    await waitFor(
      async () => (await count(s.db())) >= 5000,
      120_000,
      async () => `${await count(s.db())} documents`,
    );
    // Every pending entry of the group still exists in the stream.
    const pending = (await redis.xpending(s.stream, CONSUMER_GROUP, '-', '+', 10_000)) as Array<
      [string]
    >;
    for (const [id] of pending) expect((await redis.xrange(s.stream, id, id)).length, id).toBe(1);
    expect(relay.output()).not.toMatch(/pending entry was deleted/);
    const ids = new Set(
      (
        await s
          .db()
          .collection('events')
          .find({}, { projection: { _id: 1 } })
          .toArray()
      ).map((d) => (d._id as unknown as EventId).id),
    );
    expect(ids.size).toBe(5000);
    for (const a of answers) expect(ids.has(a.id)).toBe(true);
  });
});
