/**
 * The end-to-end verdict on a real cluster (.github/workflows/e2e.yaml), after the
 * k6 spike: every event ingest accepted reached MongoDB, and the database never
 * saw more write commands in a second than its budget.
 *
 *   node --import tsx scripts/e2e-verify.ts --k6-summary k6-summary.json --writes writes.jsonl
 *
 * The budget is persist-config's DB_WRITE_OPS_PER_SEC (knative/config.yaml).
 *
 * REDIS_URL and MONGODB_URL say where the stream and the database are (a
 * port-forward and the MongoDB container's address). It waits for the stream to
 * drain, then compares k6's count of 202 answers with the events stored from the
 * spike's source, and reads the server's write counter samples that
 * `scripts/db-writes.ts sample` wrote while k6 ran.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { parseAllDocuments } from 'yaml';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import {
  DATABASE,
  DEAD_COLLECTION,
  EVENTS_COLLECTION,
  STREAM_KEY,
} from '../functions/shared/names.js';
import { busiestSecond, type WriteSample } from './db-writes.js';

const profile = JSON.parse(
  readFileSync(new URL('../k6/spike-profile.json', import.meta.url), 'utf8'),
) as { event: { source: string } };

/** The database's write budget as deployed: persist-config's DB_WRITE_OPS_PER_SEC. */
export function deployedBudget(): number {
  const text = readFileSync(new URL('../knative/config.yaml', import.meta.url), 'utf8');
  for (const doc of parseAllDocuments(text)) {
    const manifest = doc.toJSON() as {
      metadata?: { name?: string };
      data?: Record<string, string>;
    };
    if (manifest?.metadata?.name === 'persist-config') {
      const budget = Number(manifest.data?.DB_WRITE_OPS_PER_SEC);
      if (budget > 0) return budget;
    }
  }
  throw new Error('knative/config.yaml has no persist-config DB_WRITE_OPS_PER_SEC');
}

/** k6's --summary-export: how many requests passed the "accepted (202)" check. */
export function acceptedBy(summary: unknown): number {
  const checks = (summary as { root_group?: { checks?: Record<string, { passes?: number }> } })
    .root_group?.checks;
  const passes = checks?.['accepted (202)']?.passes;
  if (typeof passes !== 'number') throw new Error('the k6 summary has no "accepted (202)" check');
  return passes;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'k6-summary': { type: 'string' },
      writes: { type: 'string' },
      budget: { type: 'string' },
      'drain-timeout-sec': { type: 'string', default: '600' },
    },
  });
  if (!values['k6-summary'] || !values.writes)
    throw new Error('usage: e2e-verify --k6-summary FILE --writes FILE [--budget N]');
  const accepted = acceptedBy(JSON.parse(readFileSync(values['k6-summary'], 'utf8')));
  const samples = readFileSync(values.writes, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as WriteSample);
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
    maxRetriesPerRequest: 3,
  });
  redis.on('error', () => undefined); // a failed command fails the run
  const mongo = await new MongoClient(
    process.env.MONGODB_URL ?? 'mongodb://127.0.0.1:27017/',
  ).connect();
  try {
    const deadline = Date.now() + Number(values['drain-timeout-sec']) * 1000;
    while ((await redis.xlen(STREAM_KEY)) > 0) {
      if (Date.now() > deadline)
        throw new Error(`the stream did not drain: ${await redis.xlen(STREAM_KEY)} left`);
      await new Promise((r) => setTimeout(r, 2000));
    }
    const db = mongo.db(DATABASE);
    const stored = await db
      .collection(EVENTS_COLLECTION)
      .countDocuments({ '_id.source': profile.event.source });
    const dead = await db.collection(DEAD_COLLECTION).countDocuments();
    const busiest = busiestSecond(samples);
    const budget = Number(values.budget ?? deployedBudget());
    const verdict = {
      accepted,
      stored,
      deadLetters: dead,
      serverSamples: samples.length,
      busiestSecond: busiest.writes,
      budget,
    };
    process.stdout.write(`${JSON.stringify(verdict)}\n`);
    const failures = [
      stored !== accepted && `${accepted} events accepted, ${stored} stored`,
      dead > 0 && `${dead} dead letters`,
      samples.length < 10 && `only ${samples.length} samples of the server's write counter`,
      busiest.writes > budget &&
        `${busiest.writes} write commands in one second (budget ${budget})`,
    ].filter(Boolean);
    if (failures.length > 0) throw new Error(failures.join('; '));
  } finally {
    redis.disconnect();
    await mongo.close();
  }
}

runIfEntryPoint(import.meta.url, 'e2e-verify', main);
