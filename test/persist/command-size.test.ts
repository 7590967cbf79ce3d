/**
 * One grant, one command: what one insert command holds, by the driver's split
 * rule (mongodb lib/bulk/unordered.js), and the committer held to it against a
 * real database, counting the server's insert commands against the budget's
 * grants for documents whose BSON outgrows their stream entry's characters.
 */
import { MongoClient } from 'mongodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandLimits, limitsOf, oneCommand } from '../../functions/persist/command-size.js';
import { Committer } from '../../functions/persist/committer.js';
import { createPersistMetrics } from '../../functions/persist/metrics.js';
import { Spacer, type WriteBudget } from '../../functions/persist/spacer.js';
import { entryBytes, workOf } from '../../functions/persist/work.js';
import type {
  ConflictDocument,
  DeadDocument,
  EventDocument,
} from '../../functions/shared/document.js';
import { entryFields } from '../../functions/shared/entry.js';
import { createLogger } from '../../functions/shared/logger.js';
import { serverWriteCommands } from '../../scripts/db-writes.js';
import { mongoUrl, redisClient, unique, waitFor } from '../support/helpers.js';

const MIB = 1024 * 1024;

describe('oneCommand (the driver split rule)', () => {
  const limits: CommandLimits = { maxBsonObjectSize: 1000, maxWriteBatchSize: 100 };
  // a document costs its size plus its array key, "99".length + 2 = 4 bytes
  it.each([
    ['nothing', [], 0],
    ['one document, whatever its size', [5000], 1],
    ['documents until their sum reaches the limit', [300, 300, 300, 300], 3],
    ['just under the limit', [495, 495], 2],
    ['reaching it', [496, 496], 1],
    ['a large one after small ones', [10, 10, 990], 2],
    ['count: maxWriteBatchSize − 1 documents at most', Array(200).fill(1), 99],
  ])('%s', (_what, sizes, expected) => {
    expect(oneCommand(sizes as number[], limits)).toBe(expected);
  });

  it("reads the server's hello, and the driver's defaults where it says nothing", () => {
    expect(limitsOf({ maxBsonObjectSize: 16 * MIB, maxWriteBatchSize: 100_000 })).toEqual({
      maxBsonObjectSize: 16 * MIB,
      maxWriteBatchSize: 100_000,
    });
    expect(limitsOf({})).toEqual({ maxBsonObjectSize: 16 * MIB, maxWriteBatchSize: 1000 });
  });
});

describe('the committer writes one command per grant', () => {
  const redis = redisClient();
  let mongo: MongoClient;
  beforeAll(async () => {
    mongo = await new MongoClient(mongoUrl()).connect();
  });
  afterAll(async () => {
    await mongo.close();
    redis.disconnect();
  });

  const kinds: Array<[string, number, (i: number) => unknown, number]> = [
    // [what, how many, data, MAX_BATCH_BYTES]: every batch's characters within MAX_BATCH_BYTES,
    // its BSON past the 16 MiB one command holds
    ['large documents', 30, (i) => ({ i, text: 'a'.repeat(600_000) }), 46 * MIB],
    [
      'CJK text (3 bytes a character in BSON)',
      2000,
      (i) => ({ i, text: '漢'.repeat(3000) }),
      16 * MIB,
    ],
    [
      'arrays of numbers (9 bytes a one-digit number in BSON, 2 characters in JSON)',
      2400,
      (i) => ({ i, values: Array.from({ length: 1000 }, (_, k) => k % 10) }),
      16 * MIB,
    ],
  ];

  it.each(kinds)(
    '%s',
    async (_what, n, data, maxBatchBytes) => {
      const stream = unique('test:command');
      const database = unique('t_command').replace(/-/g, '_');
      const db = mongo.db(database);
      await db.createCollection('events');
      let grants = 0;
      const bucket = new Spacer(100);
      const budget: WriteBudget = {
        singleFlight: true,
        run: (write) => {
          grants++;
          return bucket.run(write);
        },
      };
      const committer = new Committer({
        events: db.collection<EventDocument>('events'),
        dead: db.collection<DeadDocument>('events_dead'),
        conflicts: db.collection<ConflictDocument>('events_conflicts'),
        redis,
        streamKey: stream,
        consumerGroup: 'spillway-persist',
        budget,
        maxBatchDocs: 10_000,
        latencyTargetMs: 60_000,
        maxBatchBytes,
        deliveryDeadlineMs: 120_000,
        maxCommitAttempts: 3,
        parkMs: 60_000,
        deadTtlMs: 60_000,
        ping: () => db.command({ ping: 1 }),
        log: createLogger('test', 'silent'),
        metrics: createPersistMetrics(new Registry()),
      });
      committer.setCommandLimits(limitsOf(await db.command({ hello: 1 })));
      const pipeline = redis.pipeline();
      const all: string[][] = [];
      for (let i = 0; i < n; i++) {
        const fields = entryFields({
          id: `c-${i}`,
          type: 't',
          source: '/cmd',
          subject: '',
          time: new Date().toISOString(),
          seq: 1,
          data: JSON.stringify(data(i)),
        });
        all.push(fields);
        pipeline.xadd(stream, '*', ...fields);
      }
      const ids = ((await pipeline.exec()) ?? []).map(([, id]) => id as string);
      // The server's counter, read again while the database is too busy to answer in time.
      const serverCount = async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await serverWriteCommands(mongo);
          } catch (error) {
            if (attempt === 10) throw error;
          }
        }
      };
      const serverBefore = await serverCount();
      // Everything queued before the committer starts: one batch under MAX_BATCH_BYTES.
      ids.forEach((id, i) => {
        committer.enqueue(workOf(id, all[i] as string[]), id, entryBytes(all[i] as string[]));
      });
      committer.start();
      try {
        await waitFor(
          async () => (await db.collection('events').countDocuments()) === n,
          180_000,
          async () => `${await db.collection('events').countDocuments()} of ${n} stored`,
        );
      } finally {
        await committer.stop(10_000);
      }
      const inserts = (await serverCount()) - serverBefore;
      expect(grants).toBeGreaterThanOrEqual(2);
      expect(inserts, `${grants} grants`).toBe(grants);
      await redis.del(stream);
      await db.dropDatabase();
    },
    300_000,
  );
});
