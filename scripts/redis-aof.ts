/**
 * Redis's append-only file, from TypeScript: rewriting it on demand, for the
 * benchmark's scenarios and the fault suite, which restart or load a Redis that
 * earlier runs on the same machine wrote to.
 */
import type { Redis } from 'ioredis';
import { sleep } from '../functions/shared/time.js';

/**
 * Rewrites Redis's AOF and resolves once the rewrite is done (at most
 * `timeoutMs`), in seconds; undefined when Redis has no AOF. What follows then
 * starts from a compacted AOF: what earlier runs appended (and deleted) neither
 * makes Redis rewrite it in the middle (a fork and a core for seconds) nor
 * makes a restart replay it (seconds per few hundred MB before Redis answers).
 */
export async function compactAof(redis: Redis, timeoutMs = 120_000): Promise<number | undefined> {
  // INFO persistence, read once per look: its fields by name.
  const persistence = async () => {
    const text = await redis.info('persistence');
    return (name: string) => new RegExp(`^${name}:(\\d+)`, 'm').exec(text)?.[1];
  };
  if ((await persistence())('aof_enabled') !== '1') return undefined;
  const started = performance.now();
  try {
    await redis.bgrewriteaof();
  } catch (error) {
    // One already running (or scheduled) is waited for like ours.
    if (!/in progress|scheduled/i.test(String(error))) throw error;
  }
  while (performance.now() - started < timeoutMs) {
    await sleep(250);
    const field = await persistence();
    if (field('aof_rewrite_in_progress') === '0' && field('aof_rewrite_scheduled') === '0')
      return (performance.now() - started) / 1000;
  }
  throw new Error(`Redis's AOF rewrite did not finish within ${timeoutMs / 1000} s`);
}
