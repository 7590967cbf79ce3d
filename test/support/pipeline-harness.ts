/**
 * The fault suite's harness: services of its own (scripts/services.sh with their
 * own data dir and ports, so that killing them disturbs no other test), the
 * whole pipeline as users run it (scripts/pipeline.ts under its supervisor),
 * paced load that records every acknowledged event, faults on the real
 * processes, and the checks that nothing acknowledged was lost.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { MongoClient } from 'mongodb';
import { sameJson, storedDataText } from '../../functions/shared/data.js';
import { type EventId, eventId } from '../../functions/shared/document.js';
import {
  CONSUMER_GROUP,
  DEAD_COLLECTION,
  EVENTS_COLLECTION,
} from '../../functions/shared/names.js';
import { readStatus } from '../../functions/shared/status.js';
import { busiestSecond, sampleServerWrites } from '../../scripts/db-writes.js';
import { hasExited, spawnEntry } from '../../scripts/processes.js';
import { setBlkioIops } from '../../scripts/services-env.js';

const ROOT = join(import.meta.dirname, '..', '..');
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Services of the fault suite: Redis and the database on ports of their own. */
export class ChaosServices {
  readonly dataDir = join(ROOT, '.data', 'chaos');
  readonly redisPort = 6391;
  readonly dbPort = 27032;
  private readonly env = {
    SPILLWAY_DATA_DIR: this.dataDir,
    SPILLWAY_BIN_DIR: join(ROOT, '.data', 'bin'),
    SPILLWAY_REDIS_PORT: String(this.redisPort),
    SPILLWAY_DB_PORT: String(this.dbPort),
    SPILLWAY_DB_DEBUG_PORT: String(this.dbPort + 1),
  };
  urls: Record<string, string> = {};

  private run(command: 'up' | 'stop'): string {
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.env };
    delete env.REDIS_URL;
    delete env.MONGODB_URL;
    return execFileSync('bash', [join(ROOT, 'scripts/services.sh'), command], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /** Starts whatever is not running (both at first; a killed one after a fault). */
  up(): Record<string, string> {
    const out = this.run('up');
    for (const line of out.split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m?.[1] && m[2] !== undefined) this.urls[m[1]] = m[2];
    }
    return this.urls;
  }

  stop(): void {
    this.run('stop');
  }

  private pidFrom(file: string): number {
    return Number(readFileSync(join(this.dataDir, file), 'utf8').trim());
  }

  dbPid(): number {
    return this.pidFrom('db.pid');
  }

  redisPid(): number {
    return this.pidFrom('redis/redis.pid');
  }

  /** Sets the database's blkio read and write IOPS limit (the cgroup services.sh made). */
  setDbIops(iops: number): void {
    const cgroup = this.urls.DB_BLKIO_CGROUP;
    if (!cgroup) throw new Error('the database runs without a blkio group: cannot change its IOPS');
    setBlkioIops(cgroup, iops);
  }
}

/** Sends a signal and waits until the process is gone (or the timeout passes). */
export async function killAndWait(pid: number, signal: NodeJS.Signals, timeoutMs = 15_000) {
  process.kill(pid, signal);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(50);
  }
  throw new Error(`pid ${pid} still alive ${timeoutMs} ms after ${signal}`);
}

/** The worker processes of a host started with <TARGET>_WORKERS (forks of the same entry point). */
export function hostWorkers(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid), '-f', 'functions/host/main'], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** `scripts/pipeline.ts` in a child process, as `npm start` runs it. */
export class PipelineRun {
  private text = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly proc: ChildProcess,
    readonly ingestUrl: string,
    /** Where the pipeline writes its status (STATUS_FILE): readiness and pids, as data. */
    private readonly statusFile: string,
  ) {
    proc.stdout?.on('data', (chunk) => (this.text += chunk));
    proc.stderr?.on('data', (chunk) => (this.text += chunk));
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  static async start(env: Record<string, string>, port: number): Promise<PipelineRun> {
    const statusFile = join(tmpdir(), `spillway-pipeline-${port}-${randomUUID().slice(0, 8)}.json`);
    const { proc } = spawnEntry(join(ROOT, 'scripts/pipeline.ts'), {
      cwd: ROOT,
      env: {
        ...env,
        PORT: String(port),
        METRICS_PORT: String(port + 1000),
        STATUS_FILE: statusFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run = new PipelineRun(proc, `http://127.0.0.1:${port}`, statusFile);
    const deadline = Date.now() + 90_000;
    while (readStatus(statusFile)?.ready !== true) {
      if (hasExited(proc)) throw new Error(`pipeline exited early:\n${run.text}`);
      if (Date.now() > deadline) throw new Error(`pipeline not up after 90 s:\n${run.text}`);
      await sleep(100);
    }
    return run;
  }

  output(): string {
    return this.text;
  }

  /** The pid the pipeline last reported for a child (its STATUS_FILE). */
  pid(name: 'ingest' | 'relay' | 'persist'): number {
    const pid = readStatus(this.statusFile)?.children?.[name]?.pid;
    if (!pid) throw new Error(`no pid reported for ${name}:\n${this.text}`);
    return pid;
  }

  /** Waits until the supervisor reports a new pid for `name` (it restarted it). */
  async restarted(name: 'ingest' | 'relay' | 'persist', oldPid: number, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    while (this.pid(name) === oldPid) {
      if (Date.now() > deadline)
        throw new Error(`${name} not restarted:\n${this.text.slice(-3000)}`);
      await sleep(100);
    }
  }

  /** SIGINT, as Ctrl-C; resolves with how it ended and how long it took. */
  async interrupt(timeoutMs = 60_000) {
    const started = Date.now();
    this.proc.kill('SIGINT');
    const result = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)]);
    if (!result) {
      this.proc.kill('SIGKILL');
      for (const name of ['ingest', 'relay', 'persist'] as const) {
        try {
          process.kill(this.pid(name), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      throw new Error(
        `pipeline still running ${timeoutMs} ms after SIGINT:\n${this.text.slice(-3000)}`,
      );
    }
    return { ...result, elapsedMs: Date.now() - started };
  }
}

export interface PostedEvent {
  type: string;
  source: string;
  subject: string;
  data: { run: string; i: number; pad: string };
}

export interface LoadResult {
  /** Event id → what was posted, for every 202 (and 201, when it asked to wait). */
  accepted: Map<string, PostedEvent>;
  /** Event id → its receipt's Location, for every 2xx that gave one. */
  locations: Map<string, string>;
  /** Every 201 (committed, said ingest to a request that asked to wait): the id and when it came. */
  created: ReceiptAnswer[];
  statuses: Record<string, number>;
  /** Answers that were not 202, with when they came (ms since the load started). */
  failures: Array<{ atMs: number; status: string }>;
  /** When each 202 came (ms since the load started). */
  acceptedAtMs: number[];
  sent: number;
}

/** What the pipeline said of one event's status, and when (ms since the epoch, on arrival). */
export interface ReceiptAnswer {
  id: string;
  /** accepted, persisted, dead, or the HTTP status of anything else (404, 503, an error code). */
  state: string;
  atMs: number;
}

/**
 * Open-loop paced load: request i is due at i / ratePerSec, sent on one of
 * `connections` keep-alive connections (it waits for a free one). Every request
 * has its own Idempotency-Key; nothing is retried, so a failure stays a failure.
 * With `preferWaitEvery` = k, every k-th request asks to wait for the database
 * (`Prefer: wait=2`): a 201 is acknowledged too, and recorded.
 */
export async function paceLoad(options: {
  url: string;
  ratePerSec: number;
  seconds: number;
  connections: number;
  run: string;
  preferWaitEvery?: number;
  /** Where the Locations go as they come (a status poller reads it while the load runs). */
  locations?: Map<string, string>;
}): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const result: LoadResult = {
    accepted: new Map(),
    locations: options.locations ?? new Map(),
    created: [],
    statuses: {},
    failures: [],
    acceptedAtMs: [],
    sent: 0,
  };
  const total = Math.round(options.ratePerSec * options.seconds);
  const started = performance.now();
  const target = new URL('/events', options.url);
  const inFlight = new Set<Promise<void>>();

  const post = (i: number): Promise<void> => {
    const event: PostedEvent = {
      type: 'chaos.tick',
      source: '/chaos',
      subject: `s-${i % 50}`,
      data: { run: options.run, i, pad: 'x'.repeat(i % 64) },
    };
    const body = JSON.stringify(event);
    const waits = options.preferWaitEvery !== undefined && i % options.preferWaitEvery === 0;
    return new Promise<void>((resolve) => {
      const done = (status: string, id?: string, location?: string) => {
        result.statuses[status] = (result.statuses[status] ?? 0) + 1;
        if ((status === '202' || status === '201') && id) {
          result.accepted.set(id, event);
          result.acceptedAtMs.push(performance.now() - started);
          if (location) result.locations.set(id, location);
          if (status === '201') result.created.push({ id, state: 'persisted', atMs: Date.now() });
        } else result.failures.push({ atMs: performance.now() - started, status });
        resolve();
      };
      const req = request(
        target,
        {
          method: 'POST',
          agent,
          timeout: 15_000,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'idempotency-key': `${options.run}-${i}`,
            ...(waits ? { prefer: 'wait=2' } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => {
            let id: string | undefined;
            try {
              id = (JSON.parse(text) as { id?: string }).id;
            } catch {
              // not JSON: counted by status
            }
            const location = res.headers.location;
            done(String(res.statusCode), id, typeof location === 'string' ? location : undefined);
          });
          res.on('error', () => done('response-error'));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
      req.end(body);
    });
  };

  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / options.ratePerSec;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    while (inFlight.size >= options.connections) await Promise.race(inFlight);
    const p = post(i).finally(() => inFlight.delete(p));
    inFlight.add(p);
    result.sent++;
  }
  await Promise.all(inFlight);
  agent.destroy();
  return result;
}

/** Samples the server's write commands until stopped (scripts/db-writes.ts). */
export function sampleWrites(mongodbUrl: string, metricsUrl: string | undefined) {
  const sampler = sampleServerWrites({ mongodbUrl, metricsUrl, intervalMs: 50 });
  return {
    async stop() {
      const samples = await sampler.stop();
      const busiest = busiestSecond(samples);
      return { samples, maxPerSecond: busiest.writes, busiestAtMs: busiest.atMs };
    },
  };
}

export interface Verdict {
  accepted: number;
  documents: number;
  missing: string[];
  mismatched: string[];
  deadLetters: number;
  streamLength: number;
  streamExists: boolean;
  pendingMissing: string[];
}

/** Every acknowledged event in `events` exactly once, as posted; nothing else anywhere. */
export async function verify(options: {
  mongo: MongoClient;
  database: string;
  redis: Redis;
  stream: string;
  accepted: Map<string, PostedEvent>;
}): Promise<Verdict> {
  const db = options.mongo.db(options.database);
  const events = db.collection<{ _id: EventId } & Record<string, unknown>>(EVENTS_COLLECTION);
  const ids = [...options.accepted.keys()];
  const found = new Map<string, Record<string, unknown>>();
  for (let i = 0; i < ids.length; i += 2000) {
    const chunk = ids
      .slice(i, i + 2000)
      .map((id) => eventId((options.accepted.get(id) as PostedEvent).source, id));
    for (const doc of await events.find({ _id: { $in: chunk } }).toArray())
      found.set(doc._id.id, doc);
  }
  const missing = ids.filter((id) => !found.has(id));
  const mismatched: string[] = [];
  for (const [id, posted] of options.accepted) {
    const doc = found.get(id);
    if (!doc) continue;
    const same =
      doc.type === posted.type &&
      (doc._id as EventId).source === posted.source &&
      doc.subject === posted.subject &&
      sameJson(storedDataText(doc.data), JSON.stringify(posted.data));
    if (!same) mismatched.push(id);
  }
  const pending = (await options.redis
    .xpending(options.stream, CONSUMER_GROUP, '-', '+', 100_000)
    .catch(() => [])) as Array<[string]>;
  const pendingMissing: string[] = [];
  for (const [id] of pending) {
    if ((await options.redis.xrange(options.stream, id, id)).length === 0) pendingMissing.push(id);
  }
  return {
    accepted: ids.length,
    documents: await events.countDocuments(),
    missing,
    mismatched,
    deadLetters: await db.collection(DEAD_COLLECTION).countDocuments(),
    streamLength: await options.redis.xlen(options.stream),
    streamExists: (await options.redis.exists(options.stream)) === 1,
    pendingMissing,
  };
}

/**
 * Reads receipts while the load runs: every `everyMs`, the Location of `each`
 * events acknowledged so far (the newest first, then at random), recording
 * every answer, until `stop` resolves.
 */
export async function pollReceipts(options: {
  url: string;
  locations: Map<string, string>;
  stop: Promise<unknown>;
  everyMs: number;
  each: number;
}): Promise<ReceiptAnswer[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.each });
  const answers: ReceiptAnswer[] = [];
  let stopped = false;
  void options.stop.finally(() => {
    stopped = true;
  });
  const read = (id: string, location: string) =>
    new Promise<void>((resolve) => {
      const req = request(new URL(location, options.url), { agent, timeout: 10_000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => {
          let state = String(res.statusCode);
          if (res.statusCode === 200)
            state = String((JSON.parse(text) as { status?: string }).status);
          answers.push({ id, state, atMs: Date.now() });
          resolve();
        });
        res.on('error', () => resolve());
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (error: NodeJS.ErrnoException) => {
        answers.push({ id, state: error.code ?? 'error', atMs: Date.now() });
        resolve();
      });
      req.end();
    });
  while (!stopped) {
    const known = [...options.locations];
    const picked = known.slice(-Math.ceil(options.each / 2));
    for (let k = 0; k < options.each - picked.length && known.length > 0; k++)
      picked.push(known[Math.floor(Math.random() * known.length)] as [string, string]);
    await Promise.all(picked.map(([id, location]) => read(id, location)));
    await sleep(options.everyMs);
  }
  agent.destroy();
  return answers;
}

/**
 * Every claim that an event was committed (a `persisted` status, a 201) held
 * when it was made: the event is in `events`, stored (persistedAt) no later
 * than the answer. Returns the claims that did not hold.
 */
export async function falseClaims(options: {
  mongo: MongoClient;
  database: string;
  accepted: Map<string, PostedEvent>;
  claims: ReceiptAnswer[];
}): Promise<ReceiptAnswer[]> {
  const events = options.mongo
    .db(options.database)
    .collection<{ _id: EventId; persistedAt?: Date }>(EVENTS_COLLECTION);
  const ids = [...new Set(options.claims.map((c) => c.id))];
  const storedAt = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 2000) {
    const chunk = ids.slice(i, i + 2000).flatMap((id) => {
      const posted = options.accepted.get(id);
      return posted ? [eventId(posted.source, id)] : [];
    });
    for (const doc of await events.find({ _id: { $in: chunk } }).toArray())
      storedAt.set(doc._id.id, doc.persistedAt?.getTime() ?? Number.NaN);
  }
  return options.claims.filter((c) => !((storedAt.get(c.id) ?? Number.NaN) <= c.atMs));
}
