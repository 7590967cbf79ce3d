/**
 * `npm run replay:dead -- [--apply] [--reason REGEX] [--limit N]`: puts dead
 * letters of `events_dead` back into the stream, once their cause is fixed.
 *
 * A dead letter that holds a stream entry (its `raw` is the entry's field list,
 * as ingest appended it) is appended to the stream again, unchanged: the same
 * event id, so persist stores it at most once. The dead letter is deleted only
 * after Redis acknowledged the XADD. A dead letter that holds no stream entry (a
 * CloudEvent that never was one) cannot be replayed and is listed. Without
 * --apply nothing is changed: the run only says what it would do.
 *
 * Like ingest, it appends through a client that never resends a command
 * across a reconnect, and runs the receipts' epoch check on every connection
 * before its first XADD there (functions/shared/redis/receipt-epoch.ts, the
 * helper ingest uses): a Redis restored from an older AOF is recorded first,
 * and a missing stream is made with its marker. A replayed entry is a new
 * stream entry: the receipt of the one that died keeps answering `dead` (its
 * record stays until it expires).
 */
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import type { DeadDocument } from '../functions/shared/document.js';
import { EntryError, entryFields, parseEntryFields } from '../functions/shared/entry.js';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { createLogger } from '../functions/shared/logger.js';
import { DEAD_COLLECTION } from '../functions/shared/names.js';
import { createRedis, waitReady } from '../functions/shared/redis/client.js';
import { APPENDER_OPTIONS, EpochCheck } from '../functions/shared/redis/receipt-epoch.js';
import { Scripts } from '../functions/shared/redis/scripts.js';
import { readPart } from '../functions/shared/settings.js';
import { ensureServices } from './services-env.js';

/** How long one Redis command may take before the run fails. */
const COMMAND_TIMEOUT_MS = 10_000;

type DeadLetter = DeadDocument;

/** The stream entry a dead letter holds, as field/value strings; undefined when none. */
function entryOf(letter: Pick<DeadLetter, 'raw'>): string[] | undefined {
  try {
    const raw = JSON.parse(letter.raw) as unknown;
    if (!Array.isArray(raw)) return undefined;
    return entryFields(parseEntryFields(raw));
  } catch (error) {
    if (error instanceof SyntaxError || error instanceof EntryError) return undefined;
    throw error;
  }
}

/** A stream that does not exist is made (with its marker) before the entry goes in. */
async function append(redis: Redis, epoch: EpochCheck, stream: string, fields: string[]) {
  await epoch.ready();
  let streamId = await redis.xadd(stream, 'NOMKSTREAM', '*', ...fields);
  if (streamId === null) {
    await epoch.create();
    streamId = await redis.xadd(stream, 'NOMKSTREAM', '*', ...fields);
  }
  return streamId;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      apply: { type: 'boolean', default: false },
      reason: { type: 'string' },
      limit: { type: 'string', default: '10000' },
    },
  });
  const settings = readPart('persist', { ...process.env, ...ensureServices() });
  const log = createLogger('replay-dead', settings.logLevel);
  const redis = createRedis(settings.redisUrl, {
    ...APPENDER_OPTIONS,
    commandTimeout: COMMAND_TIMEOUT_MS,
  });
  redis.on('error', () => undefined); // a failed command fails the run
  const epoch = new EpochCheck(redis, new Scripts(redis), {
    streamKey: settings.streamKey,
    ttlMs: settings.idempotencyTtlSec * 1000,
    log,
  });
  const mongo = await new MongoClient(settings.mongodbUrl).connect();
  const dead = mongo.db(settings.mongodbDb).collection<DeadLetter>(DEAD_COLLECTION);
  const filter = values.reason ? { reason: { $regex: values.reason } } : {};
  let replayed = 0;
  let kept = 0;
  try {
    await waitReady(redis, COMMAND_TIMEOUT_MS);
    const letters = await dead
      .find(filter)
      .sort({ deadAt: 1 })
      .limit(Number(values.limit))
      .toArray();
    for (const letter of letters) {
      const fields = entryOf(letter);
      if (!fields) {
        kept++;
        process.stdout.write(`keep   ${letter._id}: holds no stream entry (${letter.reason})\n`);
        continue;
      }
      if (!values.apply) {
        process.stdout.write(
          `would  ${letter._id}: event ${fields[1]} back into ${settings.streamKey}\n`,
        );
        continue;
      }
      const streamId = await append(redis, epoch, settings.streamKey, fields);
      if (!streamId) throw new Error(`XADD of ${letter._id} gave no id; stopping`);
      await dead.deleteOne({ _id: letter._id });
      replayed++;
      process.stdout.write(
        `replay ${letter._id}: event ${fields[1]} is stream entry ${streamId}\n`,
      );
    }
    process.stdout.write(
      values.apply
        ? `${replayed} replayed, ${kept} kept\n`
        : `${letters.length - kept} would be replayed, ${kept} kept (run with --apply to replay)\n`,
    );
  } finally {
    redis.disconnect();
    await mongo.close();
  }
}

runIfEntryPoint(import.meta.url, 'replay:dead', main);
