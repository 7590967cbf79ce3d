/**
 * The status monitor under the faults that make its rule false ("not in the
 * stream, and not after its last id, is committed"), on real processes: the
 * stream key deleted (and made again, by ingest or by someone else, as the
 * event source does with XGROUP CREATE … MKSTREAM), and Redis restarted from
 * a copy of an older AOF. Events acknowledged and then lost with Redis's
 * memory are not in MongoDB; none of them may ever read `persisted`, however
 * far the stream's ids move past them, and every `persisted` is checked
 * against MongoDB.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import {
  type FunctionProcess,
  mongoUrl,
  postJson,
  redisClient,
  startFunction,
  unique,
} from '../support/helpers.js';
import { readReceipt, statusBecomes, storedEvent } from '../support/receipts.js';

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
        // The old stream's receipts are keyed to its marker, gone with it: 404.
        expect(answers.before).toEqual(all(5, '404 no such receipt'));
        expect(answers.lost).toEqual(all(5, '404 no such receipt'));
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

/** A redis-server of the test's own with AOF (appendfsync always), restartable on its port and dir. */
class AofRedis {
  readonly port = 22_000 + (process.pid % 2000);
  readonly dir = mkdtempSync(join(tmpdir(), 'spillway-aof-'));
  private proc: ChildProcess | undefined;

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
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
