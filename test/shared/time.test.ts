/**
 * A deadline counts only the time the process could have seen the answer: a
 * process busy past its deadline (a large batch converted, a collection) still
 * reads the answer that arrived meanwhile before it gives up. Against a real
 * Redis, with the event loop blocked on purpose.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { deadline, within } from '../../functions/shared/time.js';
import { redisClient } from '../support/helpers.js';

const redis = redisClient();
afterAll(() => redis.disconnect());

const other = redisClient();
afterAll(() => other.disconnect());

/** Blocks the event loop for `ms`. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // the process is busy
  }
}

/**
 * Starts `wait` from the handling of another connection's answer (I/O), then
 * keeps the process busy past its deadline: the answer `wait` waits for comes
 * meanwhile, and the deadline's timer falls due before the process reads it.
 */
async function busyAfterStarting<T>(wait: () => Promise<T>, ms: number): Promise<T> {
  await redis.ping();
  await other.ping();
  return new Promise<Promise<T>>((resolve) => {
    void other.echo('busy').then(() => {
      const started = wait();
      busy(ms);
      resolve(started);
    });
  });
}

/** Blocks the event loop for `ms`, from a timer's callback. */
function busyFromTimer(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setTimeout(() => {
      busy(ms);
      resolve();
    }, 5),
  );
}

describe('a deadline', () => {
  it('is met by an answer that arrived while the process was busy past it', async () => {
    const late = () => new Error('late');
    await expect(
      busyAfterStarting(() => deadline(() => redis.ping(), 50, late), 300),
    ).resolves.toBe('PONG');
    await expect(busyAfterStarting(() => within(redis.ping(), 50), 300)).resolves.toBe(true);
  });

  it('still runs out when no answer comes', async () => {
    const started = performance.now();
    await expect(
      deadline(
        () => new Promise<never>(() => {}),
        100,
        () => new Error('late'),
      ),
    ).rejects.toThrow('late');
    expect(performance.now() - started).toBeGreaterThanOrEqual(99);
    expect(await within(new Promise(() => {}), 50)).toBe(false);
    // A busy process with no answer waiting gives up too.
    const never = within(new Promise(() => {}), 20);
    await busyFromTimer(100);
    expect(await never).toBe(false);
  });
});
