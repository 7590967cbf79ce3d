/**
 * Receipts, end to end on real processes, the real Redis and the real
 * database: every 202 names a status monitor whose answer moves from
 * `accepted` to `persisted`; a dead letter reads `dead` with its reason; a
 * forged receipt, or another tenant's, reads 404; `Prefer: wait` gets 201 for
 * an event committed in time and 202 while the database is stopped; no answer
 * ever claims `persisted` for an event MongoDB does not hold (nor when a dead
 * letter was stored); a status read sends the database no command at all;
 * and a process subscribes to persist's announcements only while requests
 * wait.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReceipt } from '../../functions/ingest/receipts.js';
import { announcementText, deadRecordText } from '../../functions/shared/receipts.js';
import {
  committedChannel,
  deadRecordKey,
  receiptLedgerKey,
} from '../../functions/shared/redis/keys.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  postJson,
  redisClient,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';
import {
  databasePid,
  persistedAtOf,
  readReceipt,
  serverCommands,
  statusBecomes,
  storedEvent,
} from '../support/receipts.js';

const redis = redisClient();
let mongo: MongoClient;
const procs: FunctionProcess[] = [];

beforeAll(async () => {
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  redis.disconnect();
  await mongo.close();
});

/** A pipeline of its own: a stream and a database no other test uses; persist pulls (no relay). */
function pipelineEnv(name: string, extra: Record<string, string> = {}) {
  return {
    STREAM_KEY: unique(`test:${name}`),
    MONGODB_DB: unique(`t_${name}`).replace(/-/g, '_'),
    STALE_AFTER_MS: '0',
    SWEEP_INTERVAL_MS: '100',
    ...extra,
  };
}

async function start(target: 'ingest' | 'persist', env: Record<string, string>) {
  const fn = await startFunction(target, env);
  procs.push(fn);
  return fn;
}

/** Stops a process started here (once). */
async function stop(fn: FunctionProcess, signal: NodeJS.Signals = 'SIGTERM') {
  const at = procs.indexOf(fn);
  if (at < 0) return;
  procs.splice(at, 1);
  await fn.kill(signal);
}

async function cleanUp(env: { STREAM_KEY: string; MONGODB_DB: string }) {
  await redis.del(env.STREAM_KEY);
  await mongo.db(env.MONGODB_DB).dropDatabase();
}

/** Twenty events, every other one with an Idempotency-Key; each 202 with its receipt's Location. */
async function postTwenty(url: string) {
  const posted = [];
  for (let i = 0; i < 20; i++) {
    const key: Record<string, string> = i % 2 === 0 ? { 'idempotency-key': unique('r') } : {};
    const res = await postJson(`${url}/events`, { type: 't', data: { i } }, key);
    expect(res.status).toBe(202);
    const location = res.headers.get('location') as string;
    expect(location).toBe(`/receipts/${res.body.receipt}`);
    expect(res.body.status).toBe('accepted');
    posted.push({ res, key, location });
  }
  return posted;
}

/** HEAD: the GET's status and headers without a body; other methods are refused. */
async function expectHeadAndOthers(url: string, location: string) {
  const get = await fetch(`${url}${location}`);
  const body = await get.text();
  const head = await fetch(`${url}${location}`, { method: 'HEAD' });
  expect(head.status).toBe(200);
  for (const name of ['content-type', 'content-length', 'cache-control'])
    expect(head.headers.get(name), name).toBe(get.headers.get(name));
  expect(Number(head.headers.get('content-length'))).toBe(Buffer.byteLength(body));
  expect(head.headers.get('cache-control')).toMatch(/^private, max-age=\d+, immutable$/);
  expect(await head.text()).toBe('');
  const post = await readReceipt(url, location, {}, 'POST');
  expect([post.status, post.body.error, post.headers.get('allow')]).toEqual([
    405,
    'method_not_allowed',
    'GET, HEAD',
  ]);
}

/** Polls ingest's metrics until `n` requests wait (a wait registered, not a guess at its timing). */
async function waiting(fn: FunctionProcess, n: number): Promise<void> {
  await waitFor(
    async () => new RegExp(`^spillway_ingest_waiters ${n}$`, 'm').test(await metricsOf(fn)),
    10_000,
    async () => `waiters: ${/^spillway_ingest_waiters .*$/m.exec(await metricsOf(fn))?.[0]}`,
  );
}

/**
 * With the database stopped: five posts that prefer to wait 5 s, all at once;
 * each answer, and a status read of each right after it (what they said, and
 * when), and how long the five took.
 */
async function waitsWhileStopped(url: string, db: number) {
  const answers: Array<{ id: string; location: string; state: unknown; at: number }> = [];
  process.kill(db, 'SIGSTOP');
  try {
    const sent = Date.now();
    const waits = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        postJson(`${url}/events`, { type: 't', data: i }, { prefer: 'wait=5' }),
      ),
    );
    const took = Date.now() - sent;
    for (const res of waits) {
      expect([res.status, res.headers.get('preference-applied')]).toEqual([202, 'wait=5']);
      const id = res.body.id as string;
      const location = res.headers.get('location') as string;
      answers.push({ id, location, state: res.body.status, at: Date.now() });
      const read = await readReceipt(url, location);
      answers.push({ id, location, state: read.body.status, at: read.at });
    }
    return { answers, took };
  } finally {
    process.kill(db, 'SIGCONT');
  }
}

describe('receipts', () => {
  it('gives every 202 a Location whose status moves from accepted to persisted, the same receipt on a replay', async () => {
    const env = pipelineEnv('receipts');
    const ingest = await start('ingest', env);
    try {
      const posted = await postTwenty(ingest.url);
      // Nothing persists yet (no persist runs): every status is accepted, and not to be cached.
      for (const { location } of posted) {
        const answer = await readReceipt(ingest.url, location);
        expect([answer.status, answer.body.status]).toEqual([200, 'accepted']);
        expect(answer.headers.get('cache-control')).toBe('no-store');
      }
      // A replay of an Idempotency-Key answers the first answer, the same receipt with it.
      const first = posted[0] as (typeof posted)[number];
      const again = await postJson(
        `${ingest.url}/events`,
        { type: 't', data: { i: 0 } },
        first.key,
      );
      expect(again.headers.get('idempotent-replay')).toBe('true');
      expect(again.headers.get('location')).toBe(first.location);
      expect(again.body).toEqual(first.res.body);

      const persist = await start('persist', env);
      for (const { res, location } of posted) {
        const answer = await statusBecomes(ingest.url, location, 'persisted', 30_000);
        expect(answer.headers.get('cache-control')).toMatch(/^private, max-age=\d+, immutable$/);
        // The claim against the database: the event is there.
        const doc = await storedEvent(
          mongo,
          env.MONGODB_DB,
          '/spillway/ingest',
          res.body.id as string,
        );
        expect(doc, `${location} said persisted`).not.toBeNull();
        expect(persistedAtOf(doc)).toBeLessThanOrEqual(answer.at);
      }
      await expectHeadAndOthers(ingest.url, first.location);
      await stop(persist);
    } finally {
      await stop(ingest);
      await cleanUp(env);
    }
  });

  it("answers 404 to a forged receipt and to another tenant's, 401 without a key", async () => {
    const env = pipelineEnv('tenants', { INGEST_API_KEYS: 'key-a,key-b' });
    const ingest = await start('ingest', env);
    try {
      const a = { authorization: 'Bearer key-a' };
      const b = { authorization: 'Bearer key-b' };
      const res = await postJson(`${ingest.url}/events`, { type: 't', data: 1 }, a);
      expect(res.status).toBe(202);
      const location = res.headers.get('location') as string;
      expect((await readReceipt(ingest.url, location, a)).body.status).toBe('accepted');
      // Another tenant: the MAC is over the client's scope, so the receipt is nobody else's.
      const other = await readReceipt(ingest.url, location, b);
      expect([other.status, other.body.error]).toEqual([404, 'not_found']);
      expect(other.headers.get('cache-control')).toBe('no-store');
      expect((await readReceipt(ingest.url, location)).status).toBe(401);
      // Forged: the same stream id with any other MAC, or not a receipt at all.
      const receipt = res.body.receipt as string;
      const last = receipt.at(-1) === 'A' ? 'B' : 'A';
      for (const forged of [`${receipt.slice(0, -1)}${last}`, 'x', `${receipt}A`, '%00'])
        expect((await readReceipt(ingest.url, `/receipts/${forged}`, a)).status).toBe(404);
      // The real one still reads.
      expect((await readReceipt(ingest.url, location, a)).status).toBe(200);
      const metrics = await metricsOf(ingest);
      expect(metrics).toMatch(/spillway_ingest_status_reads_total\{state="invalid"\} 5/);
      expect(metrics).toMatch(/spillway_ingest_status_reads_total\{state="accepted"\} 2/);
    } finally {
      await stop(ingest);
      await cleanUp(env);
    }
  });

  it("reads dead, with its reason, for an event the database refused, as long as ingest's receipts live", async () => {
    // A body ingest takes (MAX_BODY_BYTES raised) whose document is over MongoDB's
    // 16 MiB: 1.4 million numbers are 2.8 MB of JSON and 17.1 MB of BSON.
    const env = pipelineEnv('dead', { MAX_BODY_BYTES: String(4 * 1024 * 1024) });
    const ingest = await start('ingest', { ...env, IDEMPOTENCY_TTL_SEC: '600' });
    // Persist told a shorter time than ingest (set for ingest alone, say): the record outlives it.
    const persist = await start('persist', { ...env, IDEMPOTENCY_TTL_SEC: '2' });
    try {
      const data = `[${new Array(1_400_000).fill('0').join(',')}]`;
      const fine = await postJson(`${ingest.url}/events`, { type: 'fine', data: 1 });
      // Waiting: the wait ends with the dead letter, answered 202 with its status.
      const big = await postJson(`${ingest.url}/events`, `{"type":"big","data":${data}}`, {
        prefer: 'wait=20',
      });
      expect([fine.status, big.status, big.body.status]).toEqual([202, 202, 'dead']);
      expect(big.body.reason).toMatch(/larger than the maximum/);
      const location = big.headers.get('location') as string;
      const dead = await readReceipt(ingest.url, location);
      expect([dead.status, dead.body.status, dead.body.reason]).toEqual([
        200,
        'dead',
        big.body.reason,
      ]);
      expect(dead.headers.get('cache-control')).toMatch(/^private, max-age=\d+, immutable$/);
      expect(Date.parse(dead.body.deadAt as string)).toBeLessThanOrEqual(dead.at);
      await statusBecomes(ingest.url, fine.headers.get('location') as string, 'persisted', 30_000);
      // What the monitor says is what the database holds.
      const streamId = parseReceipt(big.body.receipt as string)?.streamId;
      const letter = await mongo.db(env.MONGODB_DB).collection('events_dead').findOne({ streamId });
      expect(letter?.reason).toMatch(/larger than the maximum/);
      const id = big.body.id as string;
      expect(await storedEvent(mongo, env.MONGODB_DB, '/spillway/ingest', id)).toBeNull();
      expect(await redis.xlen(env.STREAM_KEY)).toBe(0);
      expect(await metricsOf(ingest)).toMatch(
        /spillway_ingest_wait_outcomes_total\{outcome="dead"\} 1/,
      );
      // Past persist's 2 s, still dead (never persisted), its record kept for ingest's 600 s.
      await new Promise((r) => setTimeout(r, 2500));
      expect((await readReceipt(ingest.url, location)).body.status).toBe('dead');
      const left = await redis.pttl(deadRecordKey(env.STREAM_KEY, streamId as string));
      expect(left).toBeGreaterThan(590_000);
    } finally {
      await stop(persist);
      await stop(ingest);
      await cleanUp(env);
    }
  }, 180_000);

  it('answers Prefer: wait=5 with 201 once the event is committed, and the status monitor too', async () => {
    const env = pipelineEnv('wait');
    const ingest = await start('ingest', env);
    const persist = await start('persist', env);
    try {
      for (let i = 0; i < 10; i++) {
        const sent = Date.now();
        const res = await postJson(
          `${ingest.url}/events`,
          { type: 't', data: i },
          { prefer: 'wait=5' },
        );
        expect(res.status).toBe(201);
        // Within the wait, and its last question at the deadline (slack for a busy machine).
        expect(Date.now() - sent).toBeLessThan(7000);
        expect(res.headers.get('preference-applied')).toBe('wait=5');
        expect(res.headers.get('location')).toBe(`/receipts/${res.body.receipt}`);
        expect(res.body.status).toBe('persisted');
        // The claim, checked at once against the database.
        const doc = await storedEvent(
          mongo,
          env.MONGODB_DB,
          '/spillway/ingest',
          res.body.id as string,
        );
        expect(doc).not.toBeNull();
        expect(Date.parse(res.body.persistedAt as string)).toBe(persistedAtOf(doc));
      }
      // Another preference beside it, and a wait above MAX_WAIT_SEC (20) cut to it.
      const both = await postJson(
        `${ingest.url}/events`,
        { type: 't', data: 'b' },
        { prefer: 'respond-async, wait=600' },
      );
      expect([both.status, both.headers.get('preference-applied')]).toEqual([201, 'wait=20']);
      // A wait it does not understand is ignored (RFC 7240), not refused.
      const odd = await postJson(
        `${ingest.url}/events`,
        { type: 't', data: 'o' },
        { prefer: 'wait=soon' },
      );
      expect([odd.status, odd.headers.get('preference-applied')]).toEqual([202, null]);
      const read = await readReceipt(ingest.url, odd.headers.get('location') as string, {
        prefer: 'wait=5',
      });
      expect([read.status, read.body.status]).toEqual([200, 'persisted']);
      const metrics = await metricsOf(ingest);
      expect(metrics).toMatch(/spillway_ingest_wait_outcomes_total\{outcome="persisted"\} 1[12]/);
    } finally {
      await stop(persist);
      await stop(ingest);
      await cleanUp(env);
    }
  });

  it('answers Prefer: wait=5 with 202 after 5 s while the database is stopped, and never claims persisted before MongoDB holds the event', async () => {
    const env = pipelineEnv('stopped');
    const ingest = await start('ingest', env);
    const persist = await start('persist', env);
    try {
      // Running first: the collection exists, persist has written (the first write may be slow).
      const warm = await postJson(
        `${ingest.url}/events`,
        { type: 't', data: 'w' },
        { prefer: 'wait=20' },
      );
      expect(warm.status).toBe(201);
      const { answers, took } = await waitsWhileStopped(ingest.url, databasePid());
      // Each wait ended at its deadline: not before, and not long after (a busy machine aside).
      expect(took).toBeGreaterThanOrEqual(4900);
      expect(took).toBeLessThan(12_000);
      expect(answers.map((a) => a.state)).toEqual(new Array(10).fill('accepted'));
      // Back: each moves to persisted, and the claim holds against the database.
      for (const { id, location } of answers) {
        const persisted = await statusBecomes(ingest.url, location, 'persisted', 60_000);
        const doc = await storedEvent(mongo, env.MONGODB_DB, '/spillway/ingest', id);
        expect(doc).not.toBeNull();
        expect(persistedAtOf(doc)).toBeLessThanOrEqual(persisted.at);
      }
      const metrics = await metricsOf(ingest);
      expect(metrics).toMatch(/spillway_ingest_wait_outcomes_total\{outcome="timeout"\} 5/);
    } finally {
      await stop(persist);
      await stop(ingest);
      await cleanUp(env);
    }
  }, 180_000);

  it('answers status reads without a single command to the database', async () => {
    const env = pipelineEnv('no-io');
    const ingest = await start('ingest', env);
    const persist = await start('persist', env);
    try {
      const done = await postJson(
        `${ingest.url}/events`,
        { type: 't', data: 1 },
        { prefer: 'wait=5' },
      );
      expect(done.status).toBe(201);
      // Nothing else talks to the database now: persist stopped, the test's own client closed.
      await stop(persist);
      const pending = await postJson(`${ingest.url}/events`, { type: 't', data: 2 });
      await mongo.close();
      const before = await serverCommands(mongo);
      const reads = [];
      for (let i = 0; i < 20; i++) {
        reads.push(await readReceipt(ingest.url, done.headers.get('location') as string));
        reads.push(await readReceipt(ingest.url, pending.headers.get('location') as string));
        reads.push(await readReceipt(ingest.url, `/receipts/${'A'.repeat(44)}`));
      }
      reads.push(
        await readReceipt(ingest.url, pending.headers.get('location') as string, {
          prefer: 'wait=1',
        }),
      );
      const after = await serverCommands(mongo);
      expect(reads.map((r) => r.body.status ?? r.status)).toEqual([
        ...new Array(20).fill(['persisted', 'accepted', 404]).flat(),
        'accepted',
      ]);
      expect(after - before).toBe(0);
      // The count does see a command when one is sent.
      mongo = await new MongoClient(mongoUrl()).connect();
      await mongo.db(env.MONGODB_DB).collection('events').findOne({});
      expect(await serverCommands(mongo)).toBeGreaterThan(after);
    } finally {
      await stop(ingest);
      await cleanUp(env);
    }
  });

  it('waits for at most MAX_WAITERS requests at once: the next is answered at once', async () => {
    const env = pipelineEnv('waiters', { MAX_WAITERS: '1' });
    const ingest = await start('ingest', env);
    try {
      const sent = Date.now();
      const first = postJson(`${ingest.url}/events`, { type: 't', data: 1 }, { prefer: 'wait=2' });
      // The first is waiting (the metric says so) before the second asks.
      await waiting(ingest, 1);
      const second = await postJson(
        `${ingest.url}/events`,
        { type: 't', data: 2 },
        { prefer: 'wait=2' },
      );
      expect([second.status, second.headers.get('preference-applied')]).toEqual([202, null]);
      const firstAnswer = await first;
      expect([firstAnswer.status, firstAnswer.headers.get('preference-applied')]).toEqual([
        202,
        'wait=2',
      ]);
      expect(Date.now() - sent).toBeGreaterThanOrEqual(1900);
      const metrics = await metricsOf(ingest);
      expect(metrics).toMatch(/spillway_ingest_wait_outcomes_total\{outcome="refused"\} 1/);
      expect(metrics).toMatch(/spillway_ingest_wait_outcomes_total\{outcome="timeout"\} 1/);
      expect(metrics).toMatch(/spillway_ingest_waiters 0/);
    } finally {
      await stop(ingest);
      await cleanUp(env);
    }
  });

  it('subscribes to the announcements only while requests wait (and a few seconds after)', async () => {
    const env = pipelineEnv('subscribed');
    const ingest = await start('ingest', env);
    const subscribers = async () => {
      const [, count] = (await redis.pubsub('NUMSUB', committedChannel(env.STREAM_KEY))) as [
        string,
        number,
      ];
      return Number(count);
    };
    try {
      // Events posted without a wait: nothing subscribed.
      expect((await postJson(`${ingest.url}/events`, { type: 't', data: 0 })).status).toBe(202);
      expect(await subscribers()).toBe(0);
      const waited = postJson(`${ingest.url}/events`, { type: 't', data: 1 }, { prefer: 'wait=2' });
      await waiting(ingest, 1);
      expect(await subscribers()).toBe(1);
      expect((await waited).status).toBe(202);
      // Unsubscribed once nobody has waited for a while (LINGER_MS, 5 s).
      await waitFor(
        async () => (await subscribers()) === 0,
        15_000,
        () => 'still subscribed',
      );
    } finally {
      await stop(ingest);
      await cleanUp(env);
    }
  });

  it('never says when a dead letter was stored, even when the batch that took it out held events', async () => {
    const env = pipelineEnv('dead-at');
    const ingest = await start('ingest', env);
    let record = '';
    try {
      const posted = await postJson(`${ingest.url}/events`, { type: 't', data: 1 });
      const location = posted.headers.get('location') as string;
      const streamId = parseReceipt(posted.body.receipt as string)?.streamId as string;
      record = deadRecordKey(env.STREAM_KEY, streamId);
      const read = readReceipt(ingest.url, location, { prefer: 'wait=10' });
      await waiting(ingest, 1);
      // What persist does for a batch of events and this dead letter: the record, the
      // delete, and one announcement with the time the batch's events were stored.
      const deadAt = new Date();
      await redis.set(record, deadRecordText('refused', deadAt), 'PX', 60_000);
      await redis.xdel(env.STREAM_KEY, streamId);
      const announcement = announcementText({ ids: [streamId], persistedAt: Date.now() });
      await redis.publish(committedChannel(env.STREAM_KEY), announcement);
      const answer = await read;
      expect(answer.headers.get('preference-applied')).toBe('wait=10');
      expect(answer.body).toEqual({
        receipt: posted.body.receipt,
        status: 'dead',
        reason: 'refused',
        deadAt: deadAt.toISOString(),
      });
    } finally {
      await stop(ingest);
      if (record) await redis.del(record);
      await cleanUp(env);
    }
  });

  it("keeps the receipts' ledger while it appends (for the dead records' time), and lets it expire after", async () => {
    // Receipts live 2 s: the ledger is checked again at least every second and lives 4 s after.
    const env = pipelineEnv('ledger', { IDEMPOTENCY_TTL_SEC: '2' });
    const ingest = await start('ingest', env);
    const ledger = receiptLedgerKey(env.STREAM_KEY);
    try {
      const until = Date.now() + 7000;
      while (Date.now() < until) {
        expect((await postJson(`${ingest.url}/events`, { type: 't', data: 1 })).status).toBe(202);
        expect(await redis.hget(ledger, 'ttl')).toBe('2000');
        expect(await redis.pttl(ledger)).toBeGreaterThan(0);
        await new Promise((r) => setTimeout(r, 300));
      }
      // Nothing appended any more: gone within twice the receipts' life.
      await waitFor(
        async () => (await redis.exists(ledger)) === 0,
        10_000,
        () => 'still there',
      );
    } finally {
      await stop(ingest);
      await cleanUp(env);
    }
  });
});
