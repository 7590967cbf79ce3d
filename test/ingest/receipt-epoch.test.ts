/**
 * The receipts' epoch check (receipt-epoch-2.lua) on the real Redis: it says
 * "restored" only when another run of Redis was recorded for the stream, not
 * for a stream persist made (XGROUP CREATE … MKSTREAM) before ingest's first
 * check; either way the ids up to now are a gap and new ids come after it.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RECEIPT_MARKER_PREFIX } from '../../functions/shared/receipts.js';
import { receiptLedgerKey } from '../../functions/shared/redis/keys.js';
import { Scripts } from '../../functions/shared/redis/scripts.js';
import { redisClient, unique } from '../support/helpers.js';

let redis: Redis;
let scripts: Scripts;

beforeAll(() => {
  redis = redisClient();
  scripts = new Scripts(redis);
});
afterAll(() => redis.quit());

const check = (stream: string) =>
  scripts.receiptEpoch(
    { stream, ledger: receiptLedgerKey(stream) },
    { prefix: RECEIPT_MARKER_PREFIX, markerName: unique('marker'), ttlMs: 60_000, create: false },
  );

describe("the receipts' epoch check", () => {
  it('is not a restart for a stream made before any check, and is one when another run of Redis was recorded', async () => {
    const stream = unique('test:epoch');
    const ledger = receiptLedgerKey(stream);
    try {
      await redis.xgroup('CREATE', stream, 'persist', '$', 'MKSTREAM');
      const first = await check(stream);
      expect(first.restored).toBe(false);
      expect(first.epoch).not.toBe('');
      const run = /run_id:(\w+)/.exec(await redis.info('server'))?.[1];
      expect(await redis.hget(ledger, 'run')).toBe(run);
      expect(JSON.parse((await redis.hget(ledger, 'gaps')) ?? '[]')).toHaveLength(1);

      expect((await check(stream)).restored).toBe(false);

      // As after a restart: the ledger names another run of Redis.
      const before = (await redis.xadd(stream, '*', 'data', 'x')) as string;
      await redis.hset(ledger, 'run', 'an-earlier-run');
      expect((await check(stream)).restored).toBe(true);
      const gaps = JSON.parse((await redis.hget(ledger, 'gaps')) ?? '[]') as string[][];
      expect(gaps).toHaveLength(2);
      expect(gaps[1]?.[0]).toBe(before);
      const after = (await redis.xadd(stream, '*', 'data', 'y')) as string;
      const [afterMs = 0] = after.split('-').map(Number);
      const [gapEndMs = 0] = (gaps[1]?.[1] ?? '').split('-').map(Number);
      expect(afterMs).toBeGreaterThan(gapEndMs);
      expect(await redis.hget(ledger, 'run')).toBe(run);
    } finally {
      await redis.del(stream, ledger);
    }
  });
});
