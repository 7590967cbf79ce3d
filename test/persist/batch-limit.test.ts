/**
 * The largest batch's rule is one rule: a process alone (BatchLimit) and the
 * budget every replica shares (budget-release-1.lua, given batchRule's figures)
 * give the same largest batch after the same writes. Against a real Redis.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { adapt, BatchLimit, batchRule } from '../../functions/persist/batch-limit.js';
import { SLACK_MS } from '../../functions/persist/spacer.js';
import { writeBudgetKey } from '../../functions/shared/redis/keys.js';
import { scriptTexts } from '../../functions/shared/redis/scripts.js';
import { redisClient, unique } from '../support/helpers.js';

const redis = redisClient();
afterAll(() => redis.disconnect());
const texts = scriptTexts();

/** One write through the shared budget's scripts: acquire (until granted), then release. */
async function sharedWrite(
  key: string,
  owner: string,
  max: number,
  latencyMs: number,
  ok: boolean,
  docs: number,
) {
  const acquire = texts.get('budget-acquire') ?? '';
  for (;;) {
    const grant = (await redis.eval(acquire, 1, key, owner, 1000, 1000, 10, max)) as unknown[];
    if (grant[0] === 1) break;
    await new Promise((resolve) => setTimeout(resolve, Number(grant[2])));
  }
  const rule = batchRule(max);
  const reply = (await redis.eval(
    texts.get('budget-release') ?? '',
    1,
    key,
    owner,
    latencyMs,
    ok ? 1 : 0,
    100,
    1000,
    10,
    max,
    rule.minBatch,
    docs,
    rule.cooldownMs,
    rule.aim,
    rule.growth,
  )) as unknown[];
  expect(reply[0]).toBe(1);
  return Number(reply[3]);
}

describe('the largest batch', () => {
  // Target 100 ms; each write holds this share of the largest batch as it is.
  // Within one cooldown the first slow write (5 × the target) cuts it to what its
  // speed writes in 0.85 × the target, the failed one after it does not; a fast
  // write grows it by at most a quarter; one near the target (95 ms) leaves it;
  // a fast write of a quarter of the batch says nothing of a full one.
  const writes: Array<[number, boolean, number]> = [
    [20, true, 1],
    [500, true, 1],
    [20, true, 1],
    [30, false, 1],
    [20, true, 1],
    [95, true, 1],
    [20, true, 0.25],
    [20, true, 1],
  ];

  it.each([2000, 20, 1])('follows one rule alone and shared (MAX_BATCH_DOCS %i)', async (max) => {
    const key = writeBudgetKey(unique('batch-rule'));
    const alone = new BatchLimit(max, 100);
    const seen: Array<[number, number]> = [];
    for (const [i, [latencyMs, ok, share]] of writes.entries()) {
      const docs = Math.max(1, Math.floor(alone.docs * share));
      alone.observe({ latencyMs, ok, docs });
      seen.push([alone.docs, await sharedWrite(key, `w${i}`, max, latencyMs, ok, docs)]);
    }
    for (const [own, shared] of seen) expect(shared).toBe(own);
    // The rule did something: a cut, and growth back (unless at the minimum already).
    const docs = seen.map(([own]) => own);
    if (max > 1) expect(Math.min(...docs)).toBeLessThan(max);
    if (max === 2000) expect(docs).toEqual([2000, 340, 425, 425, 531, 531, 531, 663]);
    await redis.del(key);
  });

  it("aims at what the write's speed writes in 0.85 × the target, within its bounds", () => {
    const rule = batchRule(10_000);
    const at = (batch: number, latencyMs: number, ok: boolean, docs: number, mayCut = true) =>
      adapt(batch, { latencyMs, ok, docs }, 1000, rule, 10_000, mayCut);
    expect(at(4000, 2000, true, 4000)).toBe(1700); // slow: 4,000 in 2 s → 1,700 in 0.85 s
    expect(at(4000, 2000, true, 4000, false)).toBe(4000); // slow within the cooldown: no cut
    expect(at(4000, 10, false, 4000)).toBe(2000); // not answered: halved
    expect(at(4000, 1_000_000, true, 4000)).toBe(10); // never below the minimum
    expect(at(1000, 400, true, 1000)).toBe(1250); // fast: a quarter more at most
    expect(at(1000, 800, true, 1000)).toBe(1062); // to what fits, if that is less
    expect(at(1000, 900, true, 1000)).toBe(1000); // within the target: never cut
    expect(at(1000, 100, true, 400)).toBe(1000); // under half the batch: no growth
    expect(at(9000, 10, true, 9000)).toBe(10_000); // never above MAX_BATCH_DOCS
  });

  it('and the spacing has one slack, the same in the scripts as in the local share', () => {
    for (const op of ['acquire', 'release', 'state'])
      expect(texts.get(`budget-${op}`)).toContain(`local SLACK = ${SLACK_MS}\n`);
  });
});
