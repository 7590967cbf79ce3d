/**
 * Appends many entries to a stream through Redis pipelines, as fast as Redis
 * takes them: how the benchmarks and the tests fill a stream.
 */
import type { Redis } from 'ioredis';
import { entryFields, type StreamEntry } from '../functions/shared/entry.js';

/**
 * Appends `entryOf(i)` for i = `from` … `from + count - 1` to `stream` (ids
 * chosen by Redis, `*`), in order, `perPipeline` entries to a pipeline, each
 * pipeline sent once the previous one has been answered.
 */
export async function appendEntries(
  redis: Redis,
  stream: string,
  from: number,
  count: number,
  entryOf: (i: number) => StreamEntry,
  perPipeline: number,
): Promise<void> {
  if (!(perPipeline >= 1)) throw new RangeError('perPipeline must be at least 1');
  const end = from + count;
  for (let start = from; start < end; start += perPipeline) {
    const pipeline = redis.pipeline();
    for (let i = start; i < Math.min(end, start + perPipeline); i++)
      pipeline.xadd(stream, '*', ...entryFields(entryOf(i)));
    await pipeline.exec();
  }
}
