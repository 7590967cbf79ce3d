/**
 * `npm run replay:dead`: dead letters that hold a stream entry go back into the
 * stream unchanged (and leave events_dead only once Redis took them); the rest
 * stay. Without --apply nothing changes. A missing stream is made with its
 * receipts' marker (the epoch check ran before the append), as ingest makes it.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadDocument } from '../../functions/persist/work.js';
import { entryFields } from '../../functions/shared/entry.js';
import { RECEIPT_MARKER_PREFIX } from '../../functions/shared/receipts.js';
import { receiptLedgerKey } from '../../functions/shared/redis/keys.js';
import { spawnEntry } from '../../scripts/processes.js';
import { mongoUrl, redisClient, unique } from '../support/helpers.js';

const stream = unique('test:replay');
const database = unique('t_replay').replace(/-/g, '_');
const redis = redisClient();
let mongo: MongoClient;

beforeAll(async () => {
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  await redis.del(stream, receiptLedgerKey(stream));
  await mongo.db(database).dropDatabase();
  await mongo.close();
  redis.disconnect();
});

async function replay(...args: string[]): Promise<string> {
  const run = spawnEntry('scripts/replay-dead.ts', {
    args,
    env: { STREAM_KEY: stream, MONGODB_DB: database },
    capture: true,
  });
  const { code } = await run.exited;
  expect(code, run.output()).toBe(0);
  return run.output();
}

describe('replay of events_dead', () => {
  it('puts stream entries back (same event id), keeps what holds no entry, and only with --apply', async () => {
    const fields = entryFields({
      id: unique('ev'),
      type: 't',
      source: '/s',
      subject: 'x',
      time: new Date().toISOString(),
      seq: 3,
      data: '{"a.b":1}',
    });
    const dead = mongo.db(database).collection('events_dead');
    await dead.insertMany([
      deadDocument(
        'the database refused the document: 2: invalid key',
        '1-1',
        JSON.stringify(fields),
      ),
      deadDocument(
        'not a RedisStreamSource event: type is "x"',
        null,
        JSON.stringify({ type: 'x' }),
      ),
    ] as never[]);

    const dry = await replay();
    expect(dry).toMatch(/1 would be replayed, 1 kept/);
    expect(await redis.xlen(stream)).toBe(0);
    expect(await dead.countDocuments()).toBe(2);

    const applied = await replay('--apply');
    expect(applied).toMatch(/1 replayed, 1 kept/);
    const entries = await redis.xrange(stream, '-', '+');
    expect(entries).toHaveLength(1);
    expect(entries[0]?.[1]).toEqual(fields);
    expect(await dead.countDocuments()).toBe(1);
    expect(await dead.findOne({})).toMatchObject({ streamId: null });
    // The stream was made with its marker, at an epoch before the replayed entry.
    const groups = (await redis.xinfo('GROUPS', stream)) as string[][];
    const marker = groups.find((g) => String(g[1]).startsWith(RECEIPT_MARKER_PREFIX));
    expect(marker, JSON.stringify(groups)).toBeDefined();
    expect(await redis.hget(receiptLedgerKey(stream), 'run')).toMatch(/^[0-9a-f]{40}$/);
  });
});
