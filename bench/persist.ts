/**
 * `npm run bench:persist`: persist against the IOPS-limited database, in one run.
 *
 *   (a)  one insertOne per event (and a′: one request = 5 reads + 5 writes
 *        straight to MongoDB): the failing baselines
 *   (b)  a raw loop of maximal insertMany batches: the ceiling
 *   (c)  the push path: the relay delivers one event per HTTP request to persist
 *   (d)  catch-up: persist drains a pre-filled backlog with no consumer group
 *   lag  565 events/s offered through ingest, push path: stream add → commit
 *
 * For each: docs/s, write commands/s at the server (sliding one-second maximum),
 * and the IOPS the database actually consumed (blkio io_serviced of its group).
 * Flags: --seconds N (a, a′, b; default 15), --push N (c; default 40000),
 * --backlog N (d; default 1000000), --lag-seconds N (default 30).
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { entryFields } from '../functions/shared/entry.js';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { maxWritesPerSecond, sampleServerWrites } from '../scripts/db-writes.js';
import { spawnEntry, stopProcess, waitHttpReady } from '../scripts/processes.js';
import { ensureServices } from '../scripts/services-env.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const SECONDS = flag('seconds', 15);
const PUSH_EVENTS = flag('push', 40_000);
const BACKLOG = flag('backlog', 1_000_000);
const LAG_SECONDS = flag('lag-seconds', 30);
const LAG_RATE = 565;

async function main(): Promise<void> {
  const env = ensureServices();
  if (!env.DB_BLKIO_CGROUP)
    process.stderr.write(
      '\nWARNING: the database is NOT under a blkio IOPS limit: figures are not the 100 IOPS case\n\n',
    );
  const redis = new Redis(env.REDIS_URL as string);
  redis.on('error', () => undefined); // a failed command fails the run
  const mongo = await new MongoClient(env.MONGODB_URL as string).connect();
  const runId = Date.now().toString(36);

  function ioServiced(): number {
    if (!env.DB_BLKIO_CGROUP) return Number.NaN;
    const text = readFileSync(`${env.DB_BLKIO_CGROUP}/blkio.throttle.io_serviced`, 'utf8');
    return Number(/^Total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  }

  interface Row {
    name: string;
    docs: number;
    seconds: number;
    docsPerSec: number;
    writesPerSec: number;
    maxWritesInOneSecond: number;
    iops: number;
    note?: string;
  }
  const rows: Row[] = [];

  /** Runs fn while sampling the server's write commands and the device's I/O. */
  async function measure(name: string, fn: () => Promise<number>, note?: string): Promise<Row> {
    process.stdout.write(`running ${name} …\n`);
    const sampler = sampleServerWrites({
      mongodbUrl: env.MONGODB_URL as string,
      metricsUrl: env.DB_METRICS_URL,
      intervalMs: 50,
    });
    const io0 = ioServiced();
    const t0 = performance.now();
    const docs = await fn();
    const seconds = (performance.now() - t0) / 1000;
    const io1 = ioServiced();
    const samples = await sampler.stop();
    const writes = (samples.at(-1)?.writes ?? 0) - (samples[0]?.writes ?? 0);
    const row: Row = {
      name,
      docs,
      seconds,
      docsPerSec: docs / seconds,
      writesPerSec: writes / seconds,
      maxWritesInOneSecond: maxWritesPerSecond(samples),
      iops: (io1 - io0) / seconds,
      ...(note ? { note } : {}),
    };
    rows.push(row);
    process.stdout.write(`  ${JSON.stringify(row)}\n`);
    return row;
  }

  const sampleDoc = (i: number, prefix: string) => ({
    _id: `${prefix}-${i}`,
    type: 'bench.event',
    source: '/bench',
    subject: `s-${i % 1000}`,
    seq: i,
    time: new Date(),
    data: { i, payload: 'x'.repeat(64) },
    streamId: `${Date.now()}-${i}`,
    persistedAt: new Date(),
  });

  function spawnNode(script: string, extra: Record<string, string>): ChildProcess {
    return spawnEntry(script, { env: { ...env, LOG_LEVEL: 'warn', ...extra } }).proc;
  }

  const stopChild = (child: ChildProcess) => stopProcess(child, { timeoutMs: 60_000 });
  const waitReady = (url: string) => waitHttpReady(url, { timeoutMs: 60_000 });

  async function fill(stream: string, n: number, prefix: string): Promise<void> {
    const time = new Date().toISOString();
    for (let start = 0; start < n; start += 5000) {
      const pipeline = redis.pipeline();
      for (let i = start; i < Math.min(n, start + 5000); i++) {
        pipeline.xadd(
          stream,
          '*',
          ...entryFields({
            id: `${prefix}-${i}`,
            type: 'bench.event',
            source: '/bench',
            subject: `s-${i % 1000}`,
            time,
            seq: i + 1,
            data: JSON.stringify({ i, payload: 'x'.repeat(64) }),
          }),
        );
      }
      await pipeline.exec();
    }
  }

  async function drained(stream: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await redis.xlen(stream)) > 0) {
      if (Date.now() > deadline)
        throw new Error(
          `${stream} not drained in ${timeoutMs} ms (${await redis.xlen(stream)} left)`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const db = mongo.db(`bench_${runId}`);
  try {
    // (a) one insertOne per event.
    const a = db.collection<{ _id: string }>('a_insert_one');
    await measure('(a) insertOne per event', async () => {
      let n = 0;
      const end = performance.now() + SECONDS * 1000;
      while (performance.now() < end)
        await a.insertOne(sampleDoc(n++, 'a'), { writeConcern: { w: 1, j: true } });
      return n;
    });

    // (a′) the synchronous design: each request does 5 reads + 5 writes in MongoDB.
    const sync = db.collection<{ _id: string; n?: number }>('a_sync_request');
    await measure(
      '(a′) request = 5 reads + 5 writes',
      async () => {
        let n = 0;
        const end = performance.now() + SECONDS * 1000;
        while (performance.now() < end) {
          const key = `k-${n % 100}`;
          for (let r = 0; r < 5; r++) await sync.findOne({ _id: `${key}-${r}` });
          for (let w = 0; w < 5; w++) {
            await sync.updateOne(
              { _id: `${key}-${w}` as never },
              { $inc: { n: 1 } },
              { upsert: true, writeConcern: { w: 1, j: true } },
            );
          }
          n++;
        }
        return n;
      },
      'requests, not documents',
    );

    // (b) the ceiling: maximal insertMany batches back to back.
    const b = db.collection<{ _id: string }>('b_insert_many');
    await measure('(b) insertMany ×10000 loop', async () => {
      let n = 0;
      const end = performance.now() + SECONDS * 1000;
      while (performance.now() < end) {
        const batch = Array.from({ length: 10_000 }, (_, i) => sampleDoc(n + i, 'b'));
        await b.insertMany(batch, { ordered: false, writeConcern: { w: 1, j: true } });
        n += batch.length;
      }
      return n;
    });

    // (c) the push path: relay → persist, one event per HTTP request.
    {
      const stream = `bench:push:${runId}`;
      const common = {
        STREAM_KEY: stream,
        MONGODB_DB: `bench_${runId}_c`,
        CATCHUP_BACKLOG: '100000000',
        STALE_AFTER_MS: '600000',
      };
      const persist = spawnNode('dist/functions/host/main.js', {
        ...common,
        FUNCTION_TARGET: 'persist',
        PORT: '18981',
        METRICS_PORT: '19981',
      });
      await waitReady('http://127.0.0.1:18981/readyz');
      const relay = spawnNode('dist/eventing/relay/main.js', {
        ...common,
        PERSIST_URL: 'http://127.0.0.1:18981/',
        RELAY_CONSUMERS: '500',
      });
      for (let i = 0; i < 100 && (await redis.exists(stream)) === 0; i++)
        await new Promise((r) => setTimeout(r, 100));
      // Entries added after the relay made its group at `$`; the relay delivers them as they come.
      await measure(
        '(c) push path (relay → persist)',
        async () => {
          await fill(stream, PUSH_EVENTS, 'c');
          await drained(stream, 600_000);
          return PUSH_EVENTS;
        },
        `${PUSH_EVENTS} events, 500 deliveries in flight, catch-up off`,
      );
      await stopChild(relay);
      await stopChild(persist);
      await redis.del(stream);
      await mongo.db(`bench_${runId}_c`).dropDatabase();
    }

    // lag: 565 events/s through ingest, push path.
    let lag: { p50: number; p99: number; max: number; offered: number } | undefined;
    {
      const stream = `bench:lag:${runId}`;
      const dbName = `bench_${runId}_lag`;
      const common = { STREAM_KEY: stream, MONGODB_DB: dbName };
      const persist = spawnNode('dist/functions/host/main.js', {
        ...common,
        FUNCTION_TARGET: 'persist',
        PORT: '18982',
        METRICS_PORT: '19982',
      });
      await waitReady('http://127.0.0.1:18982/readyz');
      const relay = spawnNode('dist/eventing/relay/main.js', {
        ...common,
        PERSIST_URL: 'http://127.0.0.1:18982/',
        RELAY_CONSUMERS: '500',
      });
      const ingest = spawnNode('dist/functions/host/main.js', {
        ...common,
        FUNCTION_TARGET: 'ingest',
        PORT: '18983',
        METRICS_PORT: '19983',
      });
      await waitReady('http://127.0.0.1:18983/readyz');
      const body = JSON.stringify({
        type: 'bench.lag',
        source: '/bench',
        subject: 'lag',
        data: { payload: 'x'.repeat(64) },
      });
      const post = () =>
        new Promise<void>((resolve) => {
          const req = request(
            'http://127.0.0.1:18983/events',
            {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'content-length': body.length },
            },
            (res) => {
              res.resume();
              res.on('end', resolve);
            },
          );
          req.on('error', () => resolve());
          req.end(body);
        });
      let offered = 0;
      await measure(`lag: ${LAG_RATE} events/s through ingest`, async () => {
        const t0 = performance.now();
        const pending: Promise<void>[] = [];
        while (performance.now() - t0 < LAG_SECONDS * 1000) {
          const due = Math.floor(((performance.now() - t0) / 1000) * LAG_RATE);
          while (offered < due) {
            pending.push(post());
            offered++;
          }
          await new Promise((r) => setTimeout(r, 2));
        }
        await Promise.all(pending);
        await drained(stream, 120_000);
        return offered;
      });
      const docs = await mongo
        .db(dbName)
        .collection('events')
        .find({}, { projection: { streamId: 1, persistedAt: 1 } })
        .toArray();
      const lags = docs
        .map((d) => (d.persistedAt as Date).getTime() - Number(String(d.streamId).split('-')[0]))
        .sort((x, y) => x - y);
      const q = (p: number) =>
        lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] ?? Number.NaN;
      lag = { p50: q(0.5), p99: q(0.99), max: lags.at(-1) ?? Number.NaN, offered };
      process.stdout.write(
        `  ack→persisted lag over ${lags.length} events: p50 ${lag.p50} ms, p99 ${lag.p99} ms, max ${lag.max} ms\n`,
      );
      await stopChild(ingest);
      await stopChild(relay);
      await stopChild(persist);
      await redis.del(stream);
      await mongo.db(dbName).dropDatabase();
    }

    // (d) catch-up: a pre-filled backlog, no consumer group (the source stopped).
    {
      const stream = `bench:catchup:${runId}`;
      const dbName = `bench_${runId}_d`;
      process.stdout.write(`filling ${BACKLOG} entries …\n`);
      await fill(stream, BACKLOG, 'd');
      const persist = spawnNode('dist/functions/host/main.js', {
        STREAM_KEY: stream,
        MONGODB_DB: dbName,
        FUNCTION_TARGET: 'persist',
        PORT: '18984',
        METRICS_PORT: '19984',
      });
      await measure(
        '(d) catch-up of a backlog',
        async () => {
          await drained(stream, 3_600_000);
          return BACKLOG;
        },
        `${BACKLOG} entries`,
      );
      const count = await mongo.db(dbName).collection('events').estimatedDocumentCount();
      if (count !== BACKLOG)
        process.stdout.write(`  MISMATCH: ${count} documents for ${BACKLOG} entries\n`);
      await stopChild(persist);
      await redis.del(stream);
      await mongo.db(dbName).dropDatabase();
    }

    const by = (prefix: string) => rows.find((r) => r.name.startsWith(prefix)) as Row;
    const [ra, rb, rc, rd] = [by('(a)'), by('(b)'), by('(c)'), by('(d)')];
    process.stdout.write(
      '\n| run | docs | s | docs/s | write cmds/s | max write cmds in 1 s | IOPS (blkio) |\n|---|---|---|---|---|---|---|\n',
    );
    for (const r of rows) {
      process.stdout.write(
        `| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.docs} | ${r.seconds.toFixed(1)} | ${r.docsPerSec.toFixed(0)} | ${r.writesPerSec.toFixed(1)} | ${r.maxWritesInOneSecond} | ${r.iops.toFixed(0)} |\n`,
      );
    }
    process.stdout.write(
      [
        '',
        `(d)/(a) = ${(rd.docsPerSec / ra.docsPerSec).toFixed(1)}   (target ≥ 100)`,
        `(d)/(b) = ${(rd.docsPerSec / rb.docsPerSec).toFixed(2)}   (target ≥ 0.8)`,
        `(d) = ${rd.docsPerSec.toFixed(0)} docs/s   (target ≥ 10,000)`,
        `(c) = ${rc.docsPerSec.toFixed(0)} events/s   (target ≥ 1,700)`,
        `lag p50 ${lag?.p50} ms, p99 ${lag?.p99} ms at ${LAG_RATE} events/s   (target p99 ≤ 500 ms)`,
        `persist's write commands in any one second: max ${Math.max(rc.maxWritesInOneSecond, rd.maxWritesInOneSecond, by('lag').maxWritesInOneSecond)}   (budget 100)`,
        '',
      ].join('\n'),
    );
  } finally {
    await db.dropDatabase().catch(() => undefined);
    redis.disconnect();
    await mongo.close();
  }
}

runIfEntryPoint(import.meta.url, 'bench:persist', main);
