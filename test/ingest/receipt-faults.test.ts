/**
 * The status monitor under the faults that make its rule false ("not in the
 * stream, and not after its last id, is committed"), on real processes: the
 * stream key deleted (and made again, by ingest or by someone else, as the
 * event source does with XGROUP CREATE … MKSTREAM; with two ingest processes
 * on it, each finding out in its own time), and Redis restarted from a copy
 * of an older AOF (with a request in flight across it). Events acknowledged
 * and then lost with Redis's memory are not in MongoDB; none of them may ever
 * read `persisted`, however far the stream's ids move past them, and every
 * `persisted` is checked against MongoDB.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/common.js';
import { createLogger } from '../../functions/shared/logger.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import { createRedis, waitReady } from '../../functions/shared/redis/client.js';
import { receiptLedgerKey } from '../../functions/shared/redis/keys.js';
import { APPENDER_OPTIONS, EpochCheck } from '../../functions/shared/redis/receipt-epoch.js';
import { Scripts } from '../../functions/shared/redis/scripts.js';
import {
  type FunctionProcess,
  mongoUrl,
  postJson,
  redisClient,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';
import { readReceipt, statusBecomes, storedEvent } from '../support/receipts.js';
import { TcpProxy } from '../support/tcp-proxy.js';

let mongo: MongoClient;
const procs: FunctionProcess[] = [];

beforeAll(async () => {
  mongo = await new MongoClient(mongoUrl()).connect();
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await mongo.close();
});

async function start(target: 'ingest' | 'persist', env: Record<string, string>) {
  const fn = await startFunction(target, env);
  procs.push(fn);
  return fn;
}

async function kill(fn: FunctionProcess) {
  const at = procs.indexOf(fn);
  if (at < 0) return;
  procs.splice(at, 1);
  await fn.kill('SIGKILL');
}

interface Posted {
  id: string;
  location: string;
}

async function post(url: string, n: number, headers: Record<string, string> = {}) {
  const out: Posted[] = [];
  for (let i = 0; i < n; i++) {
    const res = await postJson(`${url}/events`, { type: 't', data: i }, headers);
    expect([202, 201]).toContain(res.status);
    out.push({ id: res.body.id as string, location: res.headers.get('location') as string });
  }
  return out;
}

/**
 * Reads every receipt; each `persisted` is checked against MongoDB at once.
 * Returns the answers by group: the state, or the 404's detail.
 */
async function readAll(url: string, database: string, groups: Record<string, Posted[]>) {
  const out: Record<string, string[]> = {};
  for (const [name, posted] of Object.entries(groups)) {
    out[name] = [];
    for (const { id, location } of posted) {
      const answer = await readReceipt(url, location);
      if (answer.body.status === 'persisted') {
        const doc = await storedEvent(mongo, database, '/spillway/ingest', id);
        expect(doc, `${name} ${location} read persisted`).not.toBeNull();
      }
      out[name].push(String(answer.body.status ?? `${answer.status} ${answer.body.detail}`));
    }
  }
  return out;
}

const all = (n: number, what: string) => new Array(n).fill(what);

describe('the status monitor when the stream key is deleted', () => {
  for (const remade of ['by ingest', 'by someone else (XGROUP CREATE … MKSTREAM)'])
    it(`never reads persisted for an event lost with the stream (made again ${remade})`, async () => {
      const redis = redisClient();
      const env = {
        STREAM_KEY: unique('test:deleted'),
        MONGODB_DB: unique('t_deleted').replace(/-/g, '_'),
        STALE_AFTER_MS: '0',
        SWEEP_INTERVAL_MS: '100',
      };
      const ingest = await start('ingest', env);
      let persist = await start('persist', env);
      try {
        const before = await post(ingest.url, 5, { prefer: 'wait=5' });
        await kill(persist);
        // Acknowledged, then lost with the stream: never stored.
        const lost = await post(ingest.url, 5);
        await redis.del(env.STREAM_KEY);
        if (remade !== 'by ingest')
          await redis.xgroup('CREATE', env.STREAM_KEY, CONSUMER_GROUP, '$', 'MKSTREAM');
        const during = await post(ingest.url, 5);
        // A status read finds the stream without its marker: ingest marks it.
        await readReceipt(ingest.url, (during[0] as Posted).location);
        const after = await post(ingest.url, 5);
        persist = await start('persist', env);
        for (const { location } of after)
          await statusBecomes(ingest.url, location, 'persisted', 30_000);
        const answers = await readAll(ingest.url, env.MONGODB_DB, { before, lost, during, after });
        for (const { id } of lost)
          expect(await storedEvent(mongo, env.MONGODB_DB, '/spillway/ingest', id)).toBeNull();
        // The old stream's ids are at or before the new stream's epoch: 404.
        const old = '404 no status for this receipt: generated before the stream was made again';
        expect(answers.before).toEqual(all(5, old));
        expect(answers.lost).toEqual(all(5, old));
        expect(answers.after).toEqual(all(5, 'persisted'));
        if (remade === 'by ingest') expect(answers.during).toEqual(all(5, 'persisted'));
        // Appended to a stream someone else made, before ingest marked it: not vouched for.
        else expect(answers.during?.every((a) => a.startsWith('404'))).toBe(true);
      } finally {
        await kill(persist);
        await kill(ingest);
        await redis.del(env.STREAM_KEY);
        redis.disconnect();
        await mongo.db(env.MONGODB_DB).dropDatabase();
      }
    });
});

describe('receipts of two ingest processes when one of them makes the stream again', () => {
  it('are vouched for by both: every receipt of the new stream reads persisted through either, and a replay on the other answers the same receipt', async () => {
    const redis = redisClient();
    const env = {
      STREAM_KEY: unique('test:two-ingest'),
      MONGODB_DB: unique('t_two_ingest').replace(/-/g, '_'),
      STALE_AFTER_MS: '0',
      SWEEP_INTERVAL_MS: '100',
    };
    const a = await start('ingest', env);
    const b = await start('ingest', env);
    let persist: FunctionProcess | undefined;
    try {
      // Both have appended to the stream before it goes.
      const before = [...(await post(a.url, 2)), ...(await post(b.url, 2))];
      await redis.del(env.STREAM_KEY);
      // a finds it gone and makes it again; b then appends to the new one as it finds it.
      const viaA = await post(a.url, 3);
      const viaB = await post(b.url, 3);
      const replays = await replayedOnTheOther(a.url, b.url);
      persist = await start('persist', env);
      for (const { location } of [...viaA, ...viaB, ...replays])
        for (const url of [a.url, b.url]) await statusBecomes(url, location, 'persisted', 30_000);
      const fromA = await readAll(a.url, env.MONGODB_DB, { viaA, viaB, before });
      const fromB = await readAll(b.url, env.MONGODB_DB, { viaA, viaB, before });
      const old = '404 no status for this receipt: generated before the stream was made again';
      for (const answers of [fromA, fromB])
        expect(answers).toEqual({
          viaA: all(3, 'persisted'),
          viaB: all(3, 'persisted'),
          before: all(4, old),
        });
    } finally {
      if (persist) await kill(persist);
      await kill(a);
      await kill(b);
      await redis.del(env.STREAM_KEY);
      redis.disconnect();
      await mongo.db(env.MONGODB_DB).dropDatabase();
    }
  });
});

/**
 * An Idempotency-Key posted to each process and replayed on the other: the
 * replay answers the first answer, the same receipt with it. Returns the two.
 */
async function replayedOnTheOther(first: string, second: string): Promise<Posted[]> {
  const out: Posted[] = [];
  for (const [to, again] of [
    [first, second],
    [second, first],
  ] as const) {
    const key = { 'idempotency-key': unique('k') };
    const event = { type: 't', data: `keyed ${out.length}` };
    const res = await postJson(`${to}/events`, event, key);
    const replay = await postJson(`${again}/events`, event, key);
    expect([res.status, replay.status]).toEqual([202, 202]);
    expect(replay.headers.get('idempotent-replay')).toBe('true');
    expect(replay.headers.get('location')).toBe(res.headers.get('location'));
    expect(replay.body.receipt).toBe(res.body.receipt);
    out.push({ id: res.body.id as string, location: res.headers.get('location') as string });
  }
  return out;
}

/** A redis-server of the test's own with AOF (appendfsync always), restartable on its port and dir. */
class AofRedis {
  /** A free port, taken at the first start and kept across restarts. */
  port = 0;
  readonly dir = mkdtempSync(join(tmpdir(), 'spillway-aof-'));
  private proc: ChildProcess | undefined;

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir];
    args.push('--appendonly', 'yes', '--appendfsync', 'always', '--save', '');
    this.proc = spawn('redis-server', args, { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (!(await this.listening())) {
      if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not start`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
  }

  /** A copy of the append-only files as they are now. */
  snapshot(): string {
    const copy = mkdtempSync(join(tmpdir(), 'spillway-aof-copy-'));
    cpSync(join(this.dir, 'appendonlydir'), join(copy, 'appendonlydir'), { recursive: true });
    return copy;
  }

  /** Puts a copy back in place of the current files (Redis stopped). */
  restore(copy: string): void {
    rmSync(join(this.dir, 'appendonlydir'), { recursive: true, force: true });
    cpSync(join(copy, 'appendonlydir'), join(this.dir, 'appendonlydir'), { recursive: true });
  }

  private listening(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(this.port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  }
}

describe('the status monitor when Redis restarts from an older AOF', () => {
  it('never reads persisted for an event acknowledged after the copy, however far new ids go past it', async () => {
    const redis = new AofRedis();
    await redis.start();
    const env = {
      REDIS_URL: redis.url,
      STREAM_KEY: unique('test:restore'),
      MONGODB_DB: unique('t_restore').replace(/-/g, '_'),
      STALE_AFTER_MS: '0',
      SWEEP_INTERVAL_MS: '100',
    };
    const ingest = await start('ingest', env);
    let persist = await start('persist', env);
    let copy = '';
    try {
      const before = await post(ingest.url, 5, { prefer: 'wait=5' });
      await kill(persist);
      copy = redis.snapshot();
      // Acknowledged after the copy: lost when Redis comes back from it, never stored.
      const lost = await post(ingest.url, 5);
      await redis.kill();
      redis.restore(copy);
      await redis.start();
      persist = await start('persist', env);
      // New events: the stream's ids move well past the lost ones.
      await new Promise((r) => setTimeout(r, 100));
      const after = await post(ingest.url, 5, { prefer: 'wait=10' });
      for (const { location } of after)
        await statusBecomes(ingest.url, location, 'persisted', 30_000);
      const answers = await readAll(ingest.url, env.MONGODB_DB, { before, lost, after });
      for (const { id } of lost)
        expect(await storedEvent(mongo, env.MONGODB_DB, '/spillway/ingest', id)).toBeNull();
      expect(answers.before).toEqual(all(5, 'persisted'));
      expect(answers.lost).toEqual(
        all(5, '404 no status for this receipt: in a range a restore of Redis may have lost'),
      );
      expect(answers.after).toEqual(all(5, 'persisted'));
    } finally {
      await kill(persist);
      await kill(ingest);
      await redis.kill();
      rmSync(redis.dir, { recursive: true, force: true });
      if (copy) rmSync(copy, { recursive: true, force: true });
      await mongo.db(env.MONGODB_DB).dropDatabase();
    }
  });
});

describe('the status monitor when a request is in flight across a restore of Redis', () => {
  it('sends the restored Redis nothing it had in flight: the epoch check comes first, and what was lost never reads persisted', async () => {
    const redis = new AofRedis();
    await redis.start();
    // Ingest reaches Redis through a relay that accepts its reconnection at once, as a platform's proxy does.
    const proxy = new TcpProxy({ host: '127.0.0.1', port: redis.port });
    await proxy.listen();
    const direct = new Redis(redis.url, { maxRetriesPerRequest: 2, lazyConnect: true });
    direct.on('error', () => undefined);
    const env = {
      REDIS_URL: proxy.url,
      STREAM_KEY: unique('test:in-flight'),
      MONGODB_DB: unique('t_in_flight').replace(/-/g, '_'),
    };
    const ingest = await start('ingest', env);
    let copy = '';
    try {
      const kept = await post(ingest.url, 3);
      copy = redis.snapshot();
      const lost = await post(ingest.url, 5);
      // One event in flight: its script sent, never answered (503 at REDIS_TIMEOUT_MS).
      const inFlight = async () => {
        const res = await postJson(`${ingest.url}/events`, { type: 't', data: 'in flight' });
        expect([res.status, res.body.error]).toEqual([503, 'unavailable']);
      };
      // Both of ingest's connections (commands, announcements) come back and wait.
      await restoreWithOneInFlight(redis, proxy, copy, { inFlight, connections: 2 });
      await waitFor(
        async () => (await fetch(`${ingest.url}/readyz`)).ok,
        10_000,
        () => 'ingest not ready after the restore',
      );
      // No command this process had sent before reached the restored Redis: its stream
      // is the copy's, and what comes after the check.
      const after = await post(ingest.url, 3);
      const entries = await direct.xrange(env.STREAM_KEY, '-', '+');
      const data = entries.map(([, fields]) => fields[fields.indexOf('data') + 1]);
      expect(data).toEqual(['0', '1', '2', '0', '1', '2']);
      const answers = await readAll(ingest.url, env.MONGODB_DB, { kept, lost, after });
      expect(answers.kept).toEqual(all(3, 'accepted'));
      expect(answers.lost).toEqual(
        all(5, '404 no status for this receipt: in a range a restore of Redis may have lost'),
      );
      expect(answers.after).toEqual(all(3, 'accepted'));
    } finally {
      await kill(ingest);
      direct.disconnect();
      await proxy.close();
      await redis.kill();
      rmSync(redis.dir, { recursive: true, force: true });
      if (copy) rmSync(copy, { recursive: true, force: true });
    }
  });
});

/**
 * Holds what the client sends, has it send one command that is never answered
 * (`inFlight`, which must fail), cuts its connections, restarts Redis from
 * `copy` while its reconnections (`connections` of them) wait in the relay,
 * then lets them through.
 */
async function restoreWithOneInFlight(
  redis: AofRedis,
  proxy: TcpProxy,
  copy: string,
  client: { inFlight: () => Promise<void>; connections: number },
) {
  proxy.hold();
  await client.inFlight();
  proxy.cutAndClose();
  await waitFor(
    async () => proxy.waiting >= client.connections,
    10_000,
    () => `${proxy.waiting} waiting`,
  );
  await redis.kill();
  redis.restore(copy);
  await redis.start();
  proxy.reopen();
}

/** a < b, as stream ids order. */
function idLess(a: string, b: string): boolean {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am < bm || (am === bm && as < bs);
}

describe("the dead-letter replay's client (the helper ingest uses) across a restore of Redis", () => {
  it('resends nothing, and checks the epoch on the new connection before its next append', async () => {
    const redis = new AofRedis();
    await redis.start();
    const proxy = new TcpProxy({ host: '127.0.0.1', port: redis.port });
    await proxy.listen();
    const stream = unique('test:appender');
    const client = createRedis(proxy.url, { ...APPENDER_OPTIONS, commandTimeout: 1000 });
    client.on('error', () => undefined);
    const direct = new Redis(redis.url, { maxRetriesPerRequest: 2, lazyConnect: true });
    direct.on('error', () => undefined);
    const log = createLogger('test', 'silent');
    const epoch = new EpochCheck(client, new Scripts(client), {
      streamKey: stream,
      ttlMs: 60_000,
      log,
    });
    const append = async (data: string) => {
      await epoch.ready();
      return (await client.xadd(stream, 'NOMKSTREAM', '*', 'data', data)) as string;
    };
    let copy = '';
    try {
      await waitReady(client, 10_000);
      await epoch.create();
      await append('kept');
      copy = redis.snapshot();
      const lost = await append('lost');
      const inFlight = async () => {
        await expect(append('in flight')).rejects.toThrow(/timed out/);
      };
      await restoreWithOneInFlight(redis, proxy, copy, { inFlight, connections: 1 });
      await waitReady(client, 10_000);
      await append('after');
      const entries = await direct.xrange(stream, '-', '+');
      expect(entries.map(([, fields]) => fields[1])).toEqual(['kept', 'after']);
      // The restore is recorded before the append: the lost id is in a gap.
      const gaps = JSON.parse((await direct.hget(receiptLedgerKey(stream), 'gaps')) ?? '[]');
      expect(gaps).toHaveLength(1);
      const [from, to] = gaps[0] as [string, string];
      expect(idLess(from, lost) && !idLess(to, lost), `${lost} in (${from}, ${to}]`).toBe(true);
    } finally {
      client.disconnect();
      direct.disconnect();
      await proxy.close();
      await redis.kill();
      rmSync(redis.dir, { recursive: true, force: true });
      if (copy) rmSync(copy, { recursive: true, force: true });
    }
  });
});
