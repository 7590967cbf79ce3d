/**
 * The sweeper always gets its turn. Entries behind the source's group cursor
 * (delivered and dropped by the source, or added while no group existed) are
 * the sweeper's alone; catch-up reads only past the cursor. With a group made
 * at `$` (as the source makes it) Redis 7 gives no `lag`, and a backlog count
 * that took the stranded entries for entries past the cursor kept every
 * replica in catch-up, so the sweeper never ran while events kept coming. Under
 * continuing load, the oldest entry's age must stay bounded.
 */
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
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

const STALE_AFTER_MS = 2000;
const STRANDED = 3000;

describe('the sweeper under catch-up', () => {
  const stream = unique('test:sweeper');
  const dbName = unique('t_sweeper').replace(/-/g, '_');
  let redis: Redis;
  let mongo: MongoClient;
  const fns: FunctionProcess[] = [];
  beforeAll(async () => {
    redis = redisClient();
    mongo = await new MongoClient(mongoUrl()).connect();
  });
  afterAll(async () => {
    await Promise.all(fns.map((f) => f.kill('SIGKILL')));
    await redis.del(stream);
    await mongo.db(dbName).dropDatabase();
    await redis.quit();
    await mongo.close();
  });

  it("keeps the oldest entry's age bounded while a stranded backlog waits behind the cursor", async () => {
    const time = new Date().toISOString();
    await appendEntries(
      redis,
      stream,
      0,
      STRANDED,
      (i) => ({
        id: `stranded-${i}`,
        type: 't',
        source: '/sweep',
        subject: '',
        time,
        seq: 1,
        data: `{"i":${i}}`,
      }),
      1000,
    );
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '$');
    const env = {
      STREAM_KEY: stream,
      MONGODB_DB: dbName,
      STALE_AFTER_MS: String(STALE_AFTER_MS),
      SWEEP_INTERVAL_MS: '500',
      CATCHUP_BACKLOG: '1000',
      PULL_CHUNK_ENTRIES: '500',
      MAX_BATCH_DOCS: '500',
    };
    const ingest = await startFunction('ingest', env);
    fns.push(ingest, await startFunction('persist', env));

    // Events keep coming (no source delivers them: they pile up past the cursor).
    let posting = true;
    const load = (async () => {
      for (let i = 0; posting; i++) {
        const res = await postJson(`${ingest.url}/events`, {
          type: 'live',
          source: '/sweep',
          data: { i },
        });
        expect(res.status).toBe(202);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const ages: number[] = [];
    for (let s = 0; s < 20; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      const [oldest] = await redis.xrange(stream, '-', '+', 'COUNT', 1);
      ages.push(oldest ? Date.now() - Number(oldest[0].split('-')[0]) : 0);
    }
    posting = false;
    await load;
    const stranded = await mongo
      .db(dbName)
      .collection('events')
      .countDocuments({ '_id.id': { $regex: '^stranded-' } });
    expect(stranded, `oldest entry's age each second: ${ages.join(', ')} ms`).toBe(STRANDED);
    // the last ten seconds: every entry in the stream is younger than the stale age plus a bound
    expect(Math.max(...ages.slice(10)), ages.join(', ')).toBeLessThan(STALE_AFTER_MS + 8000);
    await waitFor(
      async () => (await redis.xlen(stream)) === 0,
      60_000,
      async () => `${await redis.xlen(stream)} entries left`,
    );
  }, 180_000);
});
