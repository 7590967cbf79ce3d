/**
 * The largest batch's rule is one rule: a process alone (BatchLimit) and the
 * budget every replica shares (budget-release-1.lua, given batchRule's figures)
 * give the same largest batch after the same writes. Against a real Redis.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { BatchLimit, batchRule, cut } from '../../functions/persist/batch-limit.js';
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
    rule.stepDocs,
    rule.cooldownMs,
  )) as unknown[];
  expect(reply[0]).toBe(1);
  return Number(reply[3]);
}

describe('the largest batch', () => {
  // Target 100 ms. Within one cooldown: the first slow write (5 × the target) cuts
  // it to a fifth, later ones do not; a write within half the target adds a step,
  // one between half the target and the target (70 ms) leaves it.
  const writes: Array<[number, boolean]> = [
    [20, true],
    [500, true],
    [20, true],
    [30, false],
    [20, true],
    [70, true],
    [20, true],
  ];

  it.each([2000, 20, 1])('follows one rule alone and shared (MAX_BATCH_DOCS %i)', async (max) => {
    const key = writeBudgetKey(unique('batch-rule'));
    const alone = new BatchLimit(max, 100);
    const seen: Array<[number, number]> = [];
    for (const [i, [latencyMs, ok]] of writes.entries()) {
      alone.observe(latencyMs, ok);
      seen.push([alone.docs, await sharedWrite(key, `w${i}`, max, latencyMs, ok)]);
    }
    for (const [own, shared] of seen) expect(shared).toBe(own);
    // The rule did something: a cut, and growth back (unless at the minimum already).
    const docs = seen.map(([own]) => own);
    if (max > 1) expect(Math.min(...docs)).toBeLessThan(max);
    if (max === 2000) expect(docs).toEqual([2000, 400, 440, 440, 480, 480, 520]);
    await redis.del(key);
  });

  it('is cut by the overshoot, at least by half, never below the minimum', () => {
    expect(cut(1000, 150, 100, 10)).toBe(500); // 1.5 × the target: halved
    expect(cut(1000, 400, 100, 10)).toBe(250); // 4 ×: to a quarter
    expect(cut(1000, 0, 100, 10)).toBe(500); // failed at once: halved
    expect(cut(1000, 100_000, 100, 10)).toBe(10);
  });

  it('and the spacing has one slack, the same in the scripts as in the local share', () => {
    for (const op of ['acquire', 'release', 'state'])
      expect(texts.get(`budget-${op}`)).toContain(`local SLACK = ${SLACK_MS}\n`);
  });
});
