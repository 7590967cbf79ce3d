/**
 * Persist started while its database is unreachable, a real process on real
 * servers: its first connect fails (no server within serverSelectionTimeoutMS),
 * and once the database is there, the deliveries it holds and new ones are
 * committed within a bounded time, with no restart. The database is a server
 * of the test's own (test/support/database-server.ts): absent (nothing on its
 * port) and started late, or frozen (SIGSTOP: connections accepted, nothing
 * answered) and resumed.
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFields } from '../../functions/shared/entry.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import { DatabaseServer } from '../support/database-server.js';
import {
  type FunctionProcess,
  redisClient,
  sourceDelivery,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';

/** From the database's return to every event committed and answered. */
const RECOVERY_BOUND_MS = 20_000;
const EVENTS = 20;

let redis: Redis;
beforeAll(() => {
  redis = redisClient();
});
afterAll(async () => {
  await redis.quit();
});

/** Adds an entry to the stream and delivers it as the source would; resolves with the answer's status. */
async function deliverNew(persist: FunctionProcess, stream: string, i: number) {
  const fields = entryFields({
    id: unique('ev'),
    type: 't',
    source: '/down-at-start',
    subject: `s-${i}`,
    time: new Date().toISOString(),
    seq: 1,
    data: JSON.stringify({ i }),
  });
  const streamId = (await redis.xadd(stream, '*', ...fields)) as string;
  return (await fetch(persist.url, sourceDelivery(streamId, fields))).status;
}

/**
 * Starts persist on `server`'s URL while it is unreachable, delivers EVENTS events,
 * waits until persist's first connect has failed, calls `back`, and returns how
 * long after it every event was committed and answered.
 */
async function startWhileDown(server: DatabaseServer, back: () => void) {
  const stream = unique('test:down-at-start');
  const dbName = unique('t_down').replace(/-/g, '_');
  let persist: FunctionProcess | undefined;
  const mongo = new MongoClient(server.url, { serverSelectionTimeoutMS: 2000 });
  try {
    persist = await startFunction(
      'persist',
      {
        MONGODB_URL: server.url,
        STREAM_KEY: stream,
        MONGODB_DB: dbName,
        CONSUMER_GROUP,
        LOG_LEVEL: 'info',
        // Deliveries wait for their commit however long the database is away:
        // what is measured is when the client comes back, not the parking.
        DELIVERY_DEADLINE_MS: '120000',
        MAX_COMMIT_ATTEMPTS: '100',
      },
      // Not ready while the database does not answer: the process only has to run.
      '/healthz',
    );
    const held = persist;
    const answers = Array.from({ length: EVENTS }, (_, i) =>
      deliverNew(held, stream, i).catch(String),
    );
    // The first connect found no server: the condition under test.
    await waitFor(
      async () => held.output().includes('database not reachable yet'),
      30_000,
      () => held.output().slice(-3000),
    );
    // Write attempts meet the failed connect's client meanwhile.
    await new Promise((r) => setTimeout(r, 2000));
    back();
    const backAt = Date.now();
    // connect() first: this client, too, would be left closed by a failed first connect.
    const stored = () =>
      mongo
        .connect()
        .then(() => mongo.db(dbName).collection('events').countDocuments())
        .catch(String);
    await waitFor(
      async () => (await stored()) === EVENTS,
      RECOVERY_BOUND_MS,
      async () =>
        `${await stored()} of ${EVENTS} documents, stream ${await redis.xlen(stream)}:\n${held.output().slice(-3000)}`,
    );
    const statuses = await Promise.all(answers);
    const recoveredMs = Date.now() - backAt;
    // And a new event goes straight through.
    const fresh = await deliverNew(held, stream, EVENTS);
    return { statuses, recoveredMs, fresh, left: await redis.xlen(stream) };
  } finally {
    await persist?.kill('SIGKILL');
    await redis.del(stream);
    await mongo
      .db(dbName)
      .dropDatabase()
      .catch(() => undefined);
    await mongo.close(true);
  }
}

describe('persist started while the database is unreachable', () => {
  let server: DatabaseServer;
  beforeAll(async () => {
    server = await DatabaseServer.create();
  });
  afterAll(() => server?.remove());

  it('absent (nothing on its port): commits what it holds once the database starts, without a restart', async () => {
    const result = await startWhileDown(server, () => server.start());
    console.log('database started late:', { recoveredMs: result.recoveredMs });
    expect(result.statuses).toEqual(Array(EVENTS).fill(204));
    expect(result.recoveredMs).toBeLessThan(RECOVERY_BOUND_MS);
    expect(result.fresh).toBe(204);
    expect(result.left).toBe(0);
  });

  it('frozen (SIGSTOP: connections accepted, nothing answered): commits once it resumes', async () => {
    server.start();
    server.freeze();
    let frozen = true;
    try {
      const result = await startWhileDown(server, () => {
        server.thaw();
        frozen = false;
      });
      console.log('database resumed:', { recoveredMs: result.recoveredMs });
      expect(result.statuses).toEqual(Array(EVENTS).fill(204));
      expect(result.recoveredMs).toBeLessThan(RECOVERY_BOUND_MS);
      expect(result.fresh).toBe(204);
      expect(result.left).toBe(0);
    } finally {
      if (frozen) server.thaw();
    }
  });
});
