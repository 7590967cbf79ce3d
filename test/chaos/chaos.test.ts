/**
 * Nothing acknowledged is lost, under every fault. Each scenario starts clean,
 * runs the whole pipeline as `npm start` does, drives paced load with a unique
 * Idempotency-Key per request, injects one fault into a real process, waits for
 * the stream to drain, stops the pipeline with SIGINT, and checks:
 *   - every event answered 202 is in `events` exactly once, with the posted fields;
 *   - nothing is in `events_dead`; the stream is empty and still exists;
 *   - every pending entry of the consumer group still exists in the stream;
 *   - the database never saw more write commands in a second than the budget.
 *
 * `npm test` runs the core scenarios with short faults; `npm run chaos` runs all
 * of them with long ones (CHAOS_SCENARIOS=all, or a comma-separated list).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_KEY } from '../../functions/shared/names.js';
import { compactAof } from '../../scripts/redis-aof.js';
import {
  ChaosServices,
  falseClaims,
  PipelineRun,
  paceLoad,
  pollReceipts,
  type ReceiptAnswer,
  sampleWrites,
  sleep,
  verify,
} from '../support/pipeline-harness.js';
import { SCENARIOS } from './scenarios.js';

const selection = process.env.CHAOS_SCENARIOS ?? 'core';
const long = selection !== 'core';
const selected = SCENARIOS.filter((s) =>
  selection === 'core' ? s.core : selection === 'all' || selection.split(',').includes(s.name),
);
const RATE = Number(process.env.CHAOS_RATE ?? (long ? 400 : 300));
const SECONDS = Number(process.env.CHAOS_SECONDS ?? (long ? 30 : 20));
const FAULT_AT_MS = long ? 10_000 : 5000;
const BUDGET = 100;

const services = new ChaosServices();
let redis: Redis;
let mongo: MongoClient;

beforeAll(() => {
  services.up();
  redis = new Redis(services.urls.REDIS_URL as string, { maxRetriesPerRequest: 3 });
  redis.on('error', () => undefined);
  mongo = new MongoClient(services.urls.MONGODB_URL as string, {
    serverSelectionTimeoutMS: 60_000,
  });
});
afterAll(async () => {
  redis?.disconnect();
  await mongo?.close(true);
  services.stop();
});

describe.sequential(`fault suite (${selection}: ${selected.map((s) => s.name).join(', ')})`, () => {
  for (const [n, scenario] of selected.entries()) {
    it(`${scenario.name}: ${scenario.what}: nothing acknowledged is lost`, async () => {
      // Each scenario starts clean: its services up, Redis empty (its AOF too: a
      // restart replays this scenario's writes only), a database of its own.
      services.up();
      await redis.flushall();
      await compactAof(redis);
      const database = `chaos_${scenario.name.replace(/-/g, '_')}`;
      await mongo.db(database).dropDatabase();
      const port = 19_100 + n * 10;
      const pipelineEnv = {
        REDIS_URL: services.urls.REDIS_URL as string,
        MONGODB_URL: services.urls.MONGODB_URL as string,
        DB_METRICS_URL: services.urls.DB_METRICS_URL ?? '',
        MONGODB_DB: database,
        LOG_LEVEL: 'warn',
        INGEST_WORKERS: '2',
        RELAY_CONSUMERS: '100',
        DB_WRITE_OPS_PER_SEC: String(BUDGET),
        STALE_AFTER_MS: '5000',
        SWEEP_INTERVAL_MS: '1000',
        ...scenario.env,
      };
      let pipeline = await PipelineRun.start(pipelineEnv, port);
      const writes = sampleWrites(
        services.urls.MONGODB_URL as string,
        services.urls.DB_METRICS_URL,
      );
      let stopped = false;
      try {
        const loadStarted = Date.now();
        const loadStartedEpoch = performance.timeOrigin + performance.now();
        const seconds = scenario.seconds ?? SECONDS;
        const locations = new Map<string, string>();
        const load = paceLoad({
          url: pipeline.ingestUrl,
          ratePerSec: RATE,
          seconds,
          connections: 200,
          run: `${scenario.name}-${loadStarted}`,
          ...(scenario.receipts ? { preferWaitEvery: 10, locations } : {}),
        });
        const reads: Promise<ReceiptAnswer[]> = scenario.receipts
          ? pollReceipts({ url: pipeline.ingestUrl, locations, stop: load, everyMs: 200, each: 20 })
          : Promise.resolve([]);
        await sleep(FAULT_AT_MS);
        const faultStarted = Date.now() - loadStarted;
        await scenario.fault({
          services,
          pipeline,
          long,
          stopPipeline: () => pipeline.interrupt(60_000),
          async startPipeline() {
            pipeline = await PipelineRun.start(pipelineEnv, port);
          },
        });
        const faultEnded = Date.now() - loadStarted;
        const result = await load;
        const loadEnded = Date.now();

        // Drained: the stream empty, and every acknowledged event stored, or nothing
        // stored for 15 s (three sweeps) with the stream empty: what is missing then is lost.
        const events = mongo.db(database).collection('events');
        const deadline = Date.now() + 240_000;
        let still = { stored: -1, since: Date.now() };
        for (;;) {
          const [stored, backlog] = await Promise.all([
            events.countDocuments().catch(() => -1),
            redis.xlen(STREAM_KEY).catch(() => -1),
          ]);
          if (backlog === 0 && stored >= result.accepted.size) break;
          if (stored !== still.stored) still = { stored, since: Date.now() };
          if (backlog === 0 && Date.now() - still.since > 15_000) break;
          if (Date.now() > deadline)
            throw new Error(
              `not drained after 240 s: ${stored} of ${result.accepted.size} stored, backlog ${backlog}\n${pipeline.output().slice(-4000)}`,
            );
          await sleep(250);
        }
        const drainedAfterMs = Date.now() - loadEnded;
        const stop = await pipeline.interrupt(60_000);
        stopped = true;
        const budget = await writes.stop();
        const verdict = await verify({
          mongo,
          database,
          redis,
          stream: STREAM_KEY,
          accepted: result.accepted,
        });
        const receipts = receiptsVerdict(await reads, result, [
          loadStarted + faultStarted,
          loadStarted + faultEnded,
        ]);
        const failureTimes = result.failures.map((f) => f.atMs);
        const report = {
          scenario: scenario.name,
          what: scenario.what,
          long,
          ratePerSec: RATE,
          seconds,
          sent: result.sent,
          accepted: result.accepted.size,
          statuses: result.statuses,
          faultMs: [faultStarted, faultEnded],
          failedFromMs: failureTimes.length ? Math.min(...failureTimes) : null,
          failedUntilMs: failureTimes.length ? Math.max(...failureTimes) : null,
          acceptedAfterFault: result.acceptedAtMs.filter((at) => at > faultEnded).length,
          drainedAfterMs,
          stopMs: stop.elapsedMs,
          lost: verdict.missing.length,
          duplicated: verdict.documents - (verdict.accepted - verdict.missing.length),
          mismatched: verdict.mismatched.length,
          deadLetters: verdict.deadLetters,
          maxWritesPerSec: budget.maxPerSecond,
          busiestSecondAtMs: Math.round(budget.busiestAtMs - loadStartedEpoch),
          budget: Number(scenario.env?.DB_WRITE_OPS_PER_SEC ?? BUDGET),
          ...(scenario.receipts ? { receipts: receipts.report } : {}),
        };
        mkdirSync(services.dataDir, { recursive: true });
        appendFileSync(
          join(services.dataDir, 'report.jsonl'),
          `${JSON.stringify({ at: new Date().toISOString(), ...report })}\n`,
        );
        console.log(`chaos ${JSON.stringify(report)}`);

        expect(result.accepted.size, 'some events were acknowledged').toBeGreaterThan(RATE * 5);
        expect(verdict.missing, 'acknowledged but missing from events').toEqual([]);
        expect(verdict.mismatched, 'stored differently from what was posted').toEqual([]);
        expect(verdict.documents, 'documents beyond the acknowledged events').toBe(
          verdict.accepted,
        );
        expect(verdict.deadLetters, 'dead letters').toBe(0);
        expect(verdict.streamLength).toBe(0);
        expect(verdict.streamExists, 'the stream key still exists').toBe(true);
        expect(verdict.pendingMissing, 'pending entries gone from the stream').toEqual([]);
        // every 50 ms while the database is up (a scenario may keep it down a while)
        const upSeconds = seconds - (faultEnded - faultStarted) / 1000;
        expect(budget.samples.length, 'the server was sampled').toBeGreaterThan(
          Math.min(seconds * 5, upSeconds * 4),
        );
        if (scenario.acceptsAfter !== undefined)
          expect(
            report.acceptedAfterFault,
            `202s after the fault ended (at least ${scenario.acceptsAfter} s of the load)`,
          ).toBeGreaterThanOrEqual(RATE * scenario.acceptsAfter);
        expect(stop.code, `pipeline exit code\n${pipeline.output().slice(-3000)}`).toBe(0);
        if (scenario.receipts) {
          // The claims were there to check, and the fault was seen as such.
          expect(receipts.report.claims, 'persisted or 201 answers').toBeGreaterThan(RATE);
          expect(
            receipts.report.duringFault.accepted ?? 0,
            'accepted read during the fault',
          ).toBeGreaterThan(0);
          const wrong = await falseClaims({
            mongo,
            database,
            accepted: result.accepted,
            claims: receipts.claims,
          });
          expect(wrong, 'said committed before MongoDB held it').toEqual([]);
        }
      } finally {
        if (!stopped) {
          await writes.stop();
          await pipeline.interrupt(60_000).catch(() => undefined);
        }
        // Back to scripts/services.sh's limit, for the next scenario.
        await redis.config('SET', 'maxmemory', '4gb').catch(() => undefined);
      }
    }, 600_000);
  }
});

/** What the clients were told of their events' status, counted by state (overall and during the fault). */
function receiptsVerdict(
  reads: ReceiptAnswer[],
  result: { created: ReceiptAnswer[] },
  fault: [number, number],
) {
  const count = (answers: ReceiptAnswer[]) => {
    const out: Record<string, number> = {};
    for (const a of answers) out[a.state] = (out[a.state] ?? 0) + 1;
    return out;
  };
  const claims = [...reads.filter((a) => a.state === 'persisted'), ...result.created];
  return {
    claims,
    report: {
      reads: count(reads),
      duringFault: count(reads.filter((a) => a.atMs >= fault[0] && a.atMs <= fault[1])),
      created: result.created.length,
      claims: claims.length,
    },
  };
}
