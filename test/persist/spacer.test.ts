import { describe, expect, it } from 'vitest';
import { Spacer } from '../../functions/persist/spacer.js';

describe('Spacer', () => {
  it('never gives more than perSec tokens in any one-second window', () => {
    let now = 0;
    const spacer = new Spacer(100, () => now);
    const taken: number[] = [];
    for (now = 0; now < 5000; now += 0.25) if (spacer.tryTake()) taken.push(now);
    for (let i = 0; i < taken.length; i++) {
      const inWindow = taken.filter(
        (t) => t >= (taken[i] as number) && t < (taken[i] as number) + 1000,
      ).length;
      expect(inWindow).toBeLessThanOrEqual(100);
    }
    // Spent continuously, the budget is used almost fully.
    expect(taken.length).toBeGreaterThanOrEqual(480);
  });

  it('gives its first token one spacing after it is made, so a restart cannot double up', () => {
    let now = 5000;
    const spacer = new Spacer(4, () => now);
    expect(spacer.tryTake()).toBe(false);
    expect(spacer.waitMs()).toBeCloseTo(252.5, 1);
    now += 252.5;
    expect(spacer.tryTake()).toBe(true);
  });

  it('does not save up unused tokens for a burst', () => {
    let now = 0;
    const spacer = new Spacer(10, () => now);
    now = 101;
    expect(spacer.tryTake()).toBe(true);
    now = 60_000;
    expect(spacer.tryTake()).toBe(true);
    expect(spacer.tryTake()).toBe(false);
    expect(spacer.waitMs()).toBeCloseTo(101, 0);
  });

  it('spaces the next token from the answer of the previous write, not its start', () => {
    let now = 0;
    const spacer = new Spacer(10, () => now);
    now = 101;
    expect(spacer.tryTake()).toBe(true);
    // The write took 80 ms: the next token is one spacing after its answer.
    now = 181;
    spacer.completed();
    now = 202;
    expect(spacer.tryTake()).toBe(false);
    expect(spacer.waitMs()).toBeCloseTo(80, 0);
    now = 282;
    expect(spacer.tryTake()).toBe(true);
  });

  it('runs one write at a time, each spaced from the answer of the one before', async () => {
    const spacer = new Spacer(200);
    const spans: Array<[number, number]> = [];
    const write = async () => {
      const start = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 20));
      spans.push([start, performance.now()]);
    };
    await Promise.all([spacer.run(write), spacer.run(write), spacer.run(write)]);
    expect(spans).toHaveLength(3);
    for (let i = 1; i < spans.length; i++) {
      const [start] = spans[i] as [number, number];
      const [, previousEnd] = spans[i - 1] as [number, number];
      // 1010 / 200 = 5.05 ms after the previous answer, never overlapping it.
      expect(start - previousEnd).toBeGreaterThanOrEqual(5);
    }
  });
});
