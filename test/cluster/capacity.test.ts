/**
 * The cluster's capacity numbers agree (knative/config.yaml says the
 * arithmetic): MAX_BACKLOG reference events fit in the share of Redis's
 * maxmemory the stream may use, measured on a real Redis with entries as
 * ingest writes them.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { entryFields } from '../../functions/shared/entry.js';
import { redisClient, unique } from '../support/helpers.js';
import { container, find, read } from './support.js';

const redis = redisClient();
afterAll(() => redis.disconnect());

/** "1536mb" → bytes, as Redis reads a memory argument. */
function bytes(text: string): number {
  const m = /^(\d+)(b|kb|mb|gb)?$/i.exec(text);
  if (!m) throw new Error(`not a Redis memory size: ${text}`);
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase()] ?? 1;
  return Number(m[1]) * unit;
}

describe("the cluster's Redis holds MAX_BACKLOG reference events", () => {
  it('with room for the dead-letter copies and the drain', async () => {
    const args: string[] = container(find('StatefulSet', 'redis')).args;
    const maxmemory = bytes(args[args.indexOf('--maxmemory') + 1] as string);
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    const ingest = find('ConfigMap', 'ingest-config').data;
    const maxBacklog = Number(ingest.MAX_BACKLOG);
    const pct = Number(ingest.MAX_REDIS_MEMORY_PCT);
    expect(pct).toBeGreaterThan(0);
    expect(pct).toBeLessThan(100);

    // Entries as ingest writes them for the reference spike.
    const profile = JSON.parse(read('k6/spike-profile.json'));
    const stream = unique('capacity:events');
    const n = 20_000;
    const pipeline = redis.pipeline();
    for (let i = 0; i < n; i++) {
      const time = new Date().toISOString();
      pipeline.xadd(
        stream,
        '*',
        ...entryFields({
          id: '0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
          type: profile.event.type,
          source: profile.event.source,
          subject: `${profile.event.subjectPrefix}${i % 10_000}`,
          time,
          seq: 1 + Math.floor(i / 10_000),
          data: JSON.stringify({ vu: i % 10_000, iteration: i, sentAt: time }),
        }),
      );
    }
    await pipeline.exec();
    const perEntry = Number(await redis.memory('USAGE', stream, 'SAMPLES', 0)) / n;
    await redis.del(stream);
    // the stream's share: half of what admission allows (the other half for dead letters)
    const streamShare = (maxmemory * pct) / 100 / 2;
    expect(perEntry).toBeGreaterThan(50);
    expect(maxBacklog * perEntry, `${perEntry.toFixed(0)} B an entry`).toBeLessThanOrEqual(
      streamShare,
    );
  });
});
