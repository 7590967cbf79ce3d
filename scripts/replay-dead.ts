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
 * Like ingest, it runs receipt-epoch-2.lua before its first XADD (a Redis
 * restored from an older AOF is recorded first; a missing stream is made with
 * its marker). A replayed entry is a new stream entry: the receipt of the one
 * that died keeps answering `dead` (its record stays until it expires).
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import type { DeadDocument } from '../functions/shared/document.js';
import { EntryError, entryFields, parseEntryFields } from '../functions/shared/entry.js';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { DEAD_COLLECTION } from '../functions/shared/names.js';
import { RECEIPT_MARKER_PREFIX } from '../functions/shared/receipts.js';
import { receiptLedgerKey } from '../functions/shared/redis/keys.js';
import { Scripts } from '../functions/shared/redis/scripts.js';
import { readPart } from '../functions/shared/settings.js';
import { ensureServices } from './services-env.js';

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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      apply: { type: 'boolean', default: false },
      reason: { type: 'string' },
      limit: { type: 'string', default: '10000' },
    },
  });
  const settings = readPart('persist', { ...process.env, ...ensureServices() });
  const redis = new Redis(settings.redisUrl, { maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined); // a failed command fails the run
  const mongo = await new MongoClient(settings.mongodbUrl).connect();
  const dead = mongo.db(settings.mongodbDb).collection<DeadLetter>(DEAD_COLLECTION);
  const filter = values.reason ? { reason: { $regex: values.reason } } : {};
  let replayed = 0;
  let kept = 0;
  let epoch: Promise<unknown> | undefined;
  try {
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
      epoch ??= new Scripts(redis).receiptEpoch(
        { stream: settings.streamKey, ledger: receiptLedgerKey(settings.streamKey) },
        {
          prefix: RECEIPT_MARKER_PREFIX,
          nonce: randomBytes(16).toString('hex'),
          ttlMs: settings.idempotencyTtlSec * 1000,
          create: true,
        },
      );
      await epoch;
      const streamId = await redis.xadd(settings.streamKey, '*', ...fields);
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
