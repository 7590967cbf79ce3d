import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../functions/persist/bucket.js';

describe('TokenBucket', () => {
  it('never gives more than perSec tokens in any one-second window', () => {
    let now = 0;
    const bucket = new TokenBucket(100, () => now);
    const taken: number[] = [];
    for (now = 0; now < 5000; now += 0.25) if (bucket.tryTake()) taken.push(now);
    for (let i = 0; i < taken.length; i++) {
      const inWindow = taken.filter(
        (t) => t >= (taken[i] as number) && t < (taken[i] as number) + 1000,
      ).length;
      expect(inWindow).toBeLessThanOrEqual(100);
    }
    // Spent continuously, the budget is used almost fully.
    expect(taken.length).toBeGreaterThanOrEqual(480);
  });

  it('does not save up unused tokens for a burst', () => {
    let now = 0;
    const bucket = new TokenBucket(10, () => now);
    expect(bucket.tryTake()).toBe(true);
    now = 60_000;
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
    expect(bucket.waitMs()).toBeCloseTo(101, 0);
  });
});
