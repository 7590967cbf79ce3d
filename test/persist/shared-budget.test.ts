/**
 * The write budget shared by persist replicas (shared-budget.ts on
 * budget-*-1.lua), on a real Redis of its own (port 6393 unless
 * SPILLWAY_BUDGET_REDIS_PORT): separate writer processes sharing one budget, a
 * holder killed, Redis stopped and stalled, the rate adapting to latency, and
 * the script's edge cases. Times are ms on the machine's monotonic clock.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchRule } from '../../functions/persist/batch-limit.js';
import {
  type BudgetLogger,
  type BudgetWrite,
  SharedBudget,
  type SharedBudgetOptions,
} from '../../functions/persist/shared-budget.js';
import { createRedis } from '../../functions/shared/redis/client.js';
import { writeBudgetKey } from '../../functions/shared/redis/keys.js';
import { scriptTexts } from '../../functions/shared/redis/scripts.js';
import type { WriterConfig } from '../support/budget-writer.js';
import {
  budgetRedisStop,
  budgetRedisUp,
  clock,
  finished,
  mostInOneSecond,
  ratePerSec,
  StallingProxy,
  smallestGap,
  startWriter,
  type WriteLine,
  type Writer,
} from '../support/budget-writers.js';
import { unique } from '../support/helpers.js';

type Reply = Array<string | number>;
type ScriptClient = Redis & {
  writeBudget(key: string, ...args: Array<string | number>): Promise<Reply>;
};

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const spacing = (perSec: number) => 1010 / perSec;
/** Spacing measured from outside may fall short by this much (Redis's clock is the wall clock). */
const CLOCK_SLACK_MS = 1;

function memoryLog() {
  const messages: string[] = [];
  const log: BudgetLogger = {
    warn: (_obj, msg) => messages.push(msg),
    info: (_obj, msg) => messages.push(msg),
  };
  return { log, messages };
}

const count = (messages: string[], part: string) => messages.filter((m) => m.includes(part)).length;

describe('shared write budget', () => {
  let url: string;
  let port: number;
  let redis: ScriptClient;
  /** Redis's clock (TIME), ms to the microsecond. */
  const redisNowMs = async () => {
    const [sec, usec] = await redis.time();
    return Number(sec) * 1000 + Number(usec) / 1000;
  };
  const clients: Redis[] = [];
  const writers: Writer[] = [];

  /** A fresh fail-fast client, as persist makes them. */
  const client = (to = url) => {
    const made = createRedis(to);
    made.on('error', () => undefined);
    clients.push(made);
    return made;
  };

  const writerConfig = (over: Partial<WriterConfig> & Pick<WriterConfig, 'name' | 'key'>) => {
    const startAt = Date.now() + 1500;
    return {
      redisUrl: url,
      ceiling: 30,
      floor: 3,
      targetMs: 10_000,
      maxReplicas: 3,
      leaseMs: 1000,
      latencyMs: [1, 5] as [number, number],
      startAt,
      endAt: startAt + 5000,
      ...over,
    };
  };

  const spawn = (config: WriterConfig) => {
    const writer = startWriter(config);
    writers.push(writer);
    return writer;
  };

  beforeAll(async () => {
    url = budgetRedisUp();
    port = Number(new URL(url).port);
    redis = new Redis(url) as ScriptClient;
    redis.on('error', () => undefined);
    // Each operation is a script of its own (budget-<operation>-1.lua), run as Redis runs it.
    const texts = scriptTexts();
    redis.writeBudget = (key, operation, ...args) =>
      redis.eval(texts.get(`budget-${operation}`) ?? '', 1, key, ...args) as Promise<Reply>;
    // Answered once Redis has loaded its data (a client meanwhile waits, then falls back).
    await redis.ping();
  });

  afterAll(async () => {
    for (const writer of writers) if (writer.proc.exitCode === null) writer.proc.kill('SIGKILL');
    for (const made of clients) made.disconnect();
    redis?.disconnect();
    budgetRedisStop();
  });

  describe('the script, called directly', () => {
    it('grants one holder at a time, spaced from the answer, with a TTL', async () => {
      const key = writeBudgetKey(unique('edge'));
      // A new budget's first grant comes one spacing after it is made.
      const first = await redis.writeBudget(key, 'acquire', 'a', 1000, 30, 3);
      expect(first[0]).toBe(0);
      expect(first[1]).toBe('30.0000');
      expect(first[2]).toBeGreaterThanOrEqual(33);
      expect(first[2]).toBeLessThanOrEqual(34);
      await sleep(Number(first[2]) + 2);
      // Granted; no writer had the budget before (the last 0).
      expect(await redis.writeBudget(key, 'acquire', 'a', 1000, 30, 3)).toEqual([
        1,
        '30.0000',
        1000,
        null,
        0,
        0,
      ]);
      // Held: the others are told to ask again in one spacing, the earliest it can be free.
      expect(await redis.writeBudget(key, 'acquire', 'b', 1000, 30, 3)).toEqual([
        0,
        '30.0000',
        34,
        null,
        0,
      ]);
      expect(await redis.writeBudget(key, 'renew', 'b', 1000)).toEqual([0, 'not holder']);
      expect(await redis.writeBudget(key, 'renew', 'a', 1000)).toEqual([1, 1000]);
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(590_000);
      expect(ttl).toBeLessThanOrEqual(600_000);
      // Only the holder may release.
      expect(await redis.writeBudget(key, 'release', 'b', 10, 1, 100, 30, 3)).toEqual([
        0,
        'not holder',
        '30.0000',
      ]);
      expect(await redis.hget(key, 'holder')).toBe('a');
      const released = clock();
      expect(await redis.writeBudget(key, 'release', 'a', 10, 1, 100, 30, 3)).toEqual([
        1,
        '30.0000',
        34,
      ]);
      expect(await redis.hget(key, 'holder')).toBe('');
      // The next grant no earlier than one spacing after that answer.
      const acquired = async (owner: string) => {
        for (;;) {
          const reply = await redis.writeBudget(key, 'acquire', owner, 1000, 30, 3);
          if (reply[0] === 1) return { at: clock(), reply };
          await sleep(1);
        }
      };
      const b = await acquired('b');
      expect(b.at - released).toBeGreaterThanOrEqual(spacing(30) - CLOCK_SLACK_MS);
      expect(b.at - released).toBeLessThan(spacing(30) + 20);
      expect(b.reply[5]).toBe(0); // the previous grant was another writer's
      // Two databases never share a budget.
      const other = writeBudgetKey(unique('edge-other'));
      expect((await redis.writeBudget(other, 'state', 30, 3))[0]).toBe('');
      expect((await redis.writeBudget(key, 'state', 30, 3))[0]).toBe('b');
      // A writer is its owners up to their last colon: its next grant is told it had the last one.
      await redis.writeBudget(key, 'release', 'b', 10, 1, 100, 30, 3);
      expect((await acquired('b:2')).reply[5]).toBe(1);
      await redis.writeBudget(key, 'release', 'b:2', 10, 1, 100, 30, 3);
      expect((await acquired('c:1')).reply[5]).toBe(0);
    });

    it('survives a clock stepped back: a last answer an hour ahead is repaired, not waited out', async () => {
      const key = writeBudgetKey(unique('edge-back'));
      const grant = async (owner: string) => {
        for (const started = clock(); clock() - started < 2000; ) {
          const reply = await redis.writeBudget(key, 'acquire', owner, 1000, 30, 3);
          if (reply[0] === 1) return reply;
          await sleep(Math.min(50, Number(reply[2])));
        }
        throw new Error(`${owner} was not granted within 2 s`);
      };
      await grant('a');
      await redis.writeBudget(key, 'release', 'a', 10, 1, 100, 30, 3);
      // Redis's clock stepped back an hour: every stored time is an hour ahead of it.
      // Redis's time to the microsecond: the repaired 'cut' is compared with it.
      const now = await redisNowMs();
      await redis.hset(
        key,
        'done',
        now + 3_600_000,
        'seen',
        now + 3_600_000,
        'cut',
        now + 3_600_000,
      );
      const asked = clock();
      const granted = await grant('b');
      expect(clock() - asked).toBeLessThan(500);
      expect(granted[4]).toBe(1); // counted
      expect(Number(await redis.hget(key, 'cut'))).toBeLessThanOrEqual(now + 1000);
      await redis.writeBudget(key, 'release', 'b', 10, 1, 100, 30, 3);
      // A last answer far ahead without any other sign is repaired the same way.
      await redis.hset(key, 'done', now + 3_600_000);
      await grant('c');
      expect(await redis.hget(key, 'steps')).toBe('2');
    });

    it('survives a clock stepped forward: a lease whose holder still renews is not taken', async () => {
      const key = writeBudgetKey(unique('edge-forward'));
      let granted: Reply = [];
      while (granted[0] !== 1) {
        granted = await redis.writeBudget(key, 'acquire', 'holder', 1000, 30, 3);
        if (granted[0] !== 1) await sleep(Number(granted[2]));
      }
      // The clock jumps 5 s forward while the holder writes: its lease end, and the
      // last call, look 5 s old.
      const now = await redisNowMs();
      await redis.hset(key, 'until', now - 4000, 'seen', now - 5000);
      const other = await redis.writeBudget(key, 'acquire', 'other', 1000, 30, 3);
      expect(other[0]).toBe(0);
      expect(other[4]).toBe(1);
      expect(await redis.hget(key, 'holder')).toBe('holder');
      expect(await redis.writeBudget(key, 'renew', 'holder', 1000)).toEqual([1, 1000]);
      expect((await redis.writeBudget(key, 'release', 'holder', 10, 1, 100, 30, 3))[0]).toBe(1);
    });

    it('logs and counts a repaired clock step in the replica that meets it', async () => {
      const key = writeBudgetKey(unique('edge-step-replica'));
      const { log, messages } = memoryLog();
      let steps = 0;
      const budget = new SharedBudget({
        redis: client(),
        key,
        ceiling: 30,
        floor: 3,
        targetMs: 1000,
        maxReplicas: 3,
        log,
        onClockStep: () => steps++,
      });
      await budget.run(async () => 'first');
      const now = Number((await redis.time())[0]) * 1000;
      await redis.hset(key, 'done', now + 3_600_000, 'seen', now + 3_600_000);
      const started = clock();
      expect(await budget.run(async () => 'second')).toBe('second');
      expect(clock() - started).toBeLessThan(1000);
      expect(steps).toBe(1);
      expect(count(messages, "Redis's clock moved")).toBe(1);
      await budget.close();
    });

    it('lets an expired lease be taken over one spacing after it ended, and refuses its late release', async () => {
      const key = writeBudgetKey(unique('edge-expiry'));
      await redis.writeBudget(key, 'acquire', 'x', 1000, 20, 2);
      await sleep(spacing(20) + 2);
      // Before the call: no later than c's grant, whatever delays its answer here.
      const taken = clock();
      expect((await redis.writeBudget(key, 'acquire', 'c', 200, 20, 2))[0]).toBe(1);
      let takenOver = 0;
      while (takenOver === 0) {
        const reply = await redis.writeBudget(key, 'acquire', 'd', 1000, 20, 2);
        if (reply[0] === 1) takenOver = clock();
        else await sleep(Math.min(5, Number(reply[2])));
      }
      // c's write counts as answered when its lease ended: d waits one spacing more.
      expect(takenOver - taken).toBeGreaterThanOrEqual(200 + spacing(20) - CLOCK_SLACK_MS);
      expect(takenOver - taken).toBeLessThan(200 + spacing(20) + 60);
      const late = await redis.writeBudget(key, 'release', 'c', 10, 1, 100, 20, 2);
      expect(late.slice(0, 2)).toEqual([0, 'not holder']);
      expect(await redis.hget(key, 'holder')).toBe('d');
      expect(await redis.writeBudget(key, 'renew', 'c', 1000)).toEqual([0, 'not holder']);
      // A cancel gives the lease back without moving the answer time.
      const doneBefore = await redis.hget(key, 'done');
      expect(await redis.writeBudget(key, 'cancel', 'c')).toEqual([0]);
      expect(await redis.writeBudget(key, 'cancel', 'd')).toEqual([1]);
      expect(await redis.hget(key, 'holder')).toBe('');
      expect(await redis.hget(key, 'done')).toBe(doneBefore);
    });

    it('adapts: ×0.7 at most once a second when slow or failed, a tenth of the ceiling a second back when fast, within [floor, ceiling]', async () => {
      const key = writeBudgetKey(unique('edge-aimd'));
      const cycle = async (latency: number, ok: 0 | 1, ceiling = 50, floor = 10) => {
        for (;;) {
          const reply = await redis.writeBudget(key, 'acquire', 'o', 1000, ceiling, floor);
          if (reply[0] === 1) break;
          await sleep(Number(reply[2]));
        }
        const reply = await redis.writeBudget(
          key,
          'release',
          'o',
          latency,
          ok,
          100,
          ceiling,
          floor,
        );
        return Number(reply[1]);
      };
      expect(await cycle(150, 1)).toBe(35); // slow: 50 × 0.7
      expect(await cycle(150, 1)).toBe(35); // slow again within the second: no second cut
      // Fast: back by a tenth of the ceiling per second since the cut (here a moment).
      const afterFast = await cycle(10, 1);
      expect(afterFast).toBeGreaterThan(35);
      expect(afterFast).toBeLessThan(36);
      await sleep(1000);
      // Failed (timed out): a cut, however fast; the second of fast writes before it
      // counted for at most a tenth of the ceiling.
      const failed = await cycle(10, 0);
      expect(failed).toBeLessThan(afterFast * 0.7 + 0.01);
      expect(failed).toBeGreaterThan(35 * 0.7);
      await sleep(1000);
      expect(await cycle(150, 1, 50, 20)).toBe(20); // never below the floor
      const beforeRelease = clock();
      const climbed = await cycle(10, 1, 50, 20);
      expect(climbed).toBeGreaterThan(20);
      expect(climbed).toBeLessThan(21);
      // A lowered ceiling holds at once, in the reply and in the wait: one spacing at 5/s
      // (202 ms, not 48 ms at 21/s) from that release, less the time since.
      const lowered = await redis.writeBudget(key, 'acquire', 'o', 1000, 5, 1);
      const since = clock() - beforeRelease;
      expect(lowered[0]).toBe(0);
      expect(lowered[1]).toBe('5.0000');
      expect(lowered[2]).toBeGreaterThanOrEqual(Math.floor(spacing(5) - since));
      expect(lowered[2]).toBeLessThanOrEqual(Math.ceil(spacing(5)));
      // Climbing by a tenth of the ceiling (20) a second, never above it: from 5 to 200
      // in about ten seconds of fast writes, however many writes that is.
      const climbing = clock();
      let rate = 0;
      while (rate < 200 && clock() - climbing < 15_000) {
        rate = await cycle(1, 1, 200, 1);
        expect(rate).toBeLessThanOrEqual(200);
      }
      expect(rate).toBe(200);
      expect(clock() - climbing).toBeGreaterThan(8000);
    });
    it("keeps the largest batch for every caller that passes maxBatch: cut to what a slow write's speed fits (halved when failed), once a second; grown by a fast one", async () => {
      const key = writeBudgetKey(unique('edge-batch'));
      const cycle = async (
        owner: string,
        latency: number,
        ok: 0 | 1,
        { maxBatch = 1000, docs = 1000 } = {},
      ) => {
        let granted: Reply;
        for (;;) {
          granted = await redis.writeBudget(key, 'acquire', owner, 1000, 50, 10, maxBatch);
          if (granted[0] === 1) break;
          await sleep(Number(granted[2]));
        }
        // The batch rule's figures are the caller's (batch-limit.ts): min(10, maxBatch), 1 s, 0.85, 1.25.
        const rule = batchRule(maxBatch);
        const released = await redis.writeBudget(
          key,
          'release',
          owner,
          latency,
          ok,
          100,
          50,
          10,
          maxBatch,
          rule.minBatch,
          docs,
          rule.cooldownMs,
          rule.aim,
          rule.growth,
        );
        return { granted: granted[3], released: released[3] };
      };
      // A new budget: the caller's maxBatch.
      expect(await cycle('a', 10, 1)).toEqual({ granted: 1000, released: 1000 });
      // Slow (one caller): 1,000 in 150 ms fits 566 in 85 ms; the other caller sees it at once.
      expect((await cycle('a', 150, 1)).released).toBe(566);
      // Within the second: no second cut.
      expect(await cycle('b', 150, 1, { docs: 566 })).toEqual({ granted: 566, released: 566 });
      expect((await cycle('b', 10, 1, { docs: 566 })).released).toBe(707); // fast: a quarter more
      expect((await cycle('b', 10, 1, { docs: 100 })).released).toBe(707); // too small to say
      await sleep(1000);
      expect((await cycle('a', 10, 0, { docs: 707 })).released).toBe(353); // failed, however fast
      // A caller with a smaller maxBatch gets at most its own; the floor is min(10, maxBatch).
      expect((await cycle('c', 10, 1, { maxBatch: 100, docs: 100 })).granted).toBe(100);
      await sleep(1000);
      await cycle('a', 100_000, 1, { docs: 100 });
      expect((await cycle('a', 150, 1)).granted).toBe(10);
      // Without maxBatch the replies are as before: no batch in them.
      const plain = await redis.writeBudget(key, 'state', 50, 10);
      expect(plain).toHaveLength(4);
      expect((await redis.writeBudget(key, 'state', 50, 10, 1000))[4]).toBe(10);
    });
  });

  describe('replicas in separate processes', () => {
    it('share 30 writes/s: single flight, no second over the budget at either end, the rate of one process', async () => {
      const latencyMs: [number, number] = [5, 150];
      // The single process runs at the same time, on a budget of its own: both see the
      // same machine (whatever else runs on it) and the same spread of latencies.
      const base = writerConfig({ name: '', key: writeBudgetKey(unique('three')), latencyMs });
      base.endAt = base.startAt + 8000;
      const alone = spawn({ ...base, name: 'alone', key: writeBudgetKey(unique('alone')) });
      const three = ['w0', 'w1', 'w2'].map((name) => spawn({ ...base, name }));
      await finished([alone, ...three]);
      const single = ratePerSec(alone.writes());
      const writes = three.flatMap((writer) => writer.writes());
      const combined = ratePerSec(writes);
      const shares = three.map((writer) => writer.writes().length / writes.length);
      /** Per write, the time beyond the write itself: waiting for the budget. */
      const overhead = (ws: WriteLine[], perSec: number) =>
        (1000 / perSec - ws.reduce((sum, w) => sum + w.answer - w.start, 0) / ws.length).toFixed(1);
      const figures = {
        single: single.toFixed(2),
        combined: combined.toFixed(2),
        singleMeanLatency: (
          alone.writes().reduce((sum, w) => sum + w.answer - w.start, 0) / alone.writes().length
        ).toFixed(1),
        combinedMeanLatency: (
          writes.reduce((sum, w) => sum + w.answer - w.start, 0) / writes.length
        ).toFixed(1),
        singleOverheadPerWrite: overhead(alone.writes(), single),
        combinedOverheadPerWrite: overhead(writes, combined),
        writes: writes.length,
        shares: shares.map((s) => s.toFixed(2)),
        mostAnswers: mostInOneSecond(writes.map((w) => w.answer)),
        mostStarts: mostInOneSecond(writes.map((w) => w.start)),
        smallestGap: smallestGap(writes).toFixed(2),
      };
      console.log('3 processes, 30 writes/s, latency 5–150 ms:', figures);
      expect(writes.every((w) => w.mode === 'shared')).toBe(true);
      expect(figures.mostAnswers).toBeLessThanOrEqual(30);
      expect(figures.mostStarts).toBeLessThanOrEqual(30);
      // Single flight, and each write starts one spacing after the previous answer.
      expect(smallestGap(writes)).toBeGreaterThanOrEqual(spacing(30) - CLOCK_SLACK_MS);
      expect(combined).toBeGreaterThanOrEqual(0.9 * single);
      // Every replica gets its turn.
      for (const share of shares) expect(share).toBeGreaterThan(0.2);
    });

    it('goes on within leaseMs after a holder is killed, and holds the budget meanwhile', async () => {
      const key = writeBudgetKey(unique('kill'));
      const leaseMs = 1000;
      const base = writerConfig({ name: '', key, leaseMs });
      const endAt = base.startAt + 7000;
      const victim = spawn({ ...base, name: 'victim', hangAt: 5, endAt });
      const others = ['w1', 'w2'].map((name) => spawn({ ...base, name, endAt }));
      let holdingAt = 0;
      while (holdingAt === 0) {
        const line = victim.lines().find((l) => l.kind === 'holding');
        if (line?.kind === 'holding') holdingAt = line.at;
        else await sleep(10);
        if (victim.proc.exitCode !== null) throw new Error(victim.output());
      }
      // It hangs holding the lease for 2.5 leases: its renewals keep the others out.
      await sleep(2.5 * leaseMs - (clock() - holdingAt));
      const killedAt = clock();
      victim.proc.kill('SIGKILL');
      await finished(others);
      const theirs = others.flatMap((writer) => writer.writes());
      const all = [...theirs, ...victim.writes()];
      const resumedAt = Math.min(...theirs.filter((w) => w.start > holdingAt).map((w) => w.start));
      const figures = {
        heldMs: Math.round(killedAt - holdingAt),
        resumedAfterKillMs: Math.round(resumedAt - killedAt),
        mostAnswers: mostInOneSecond(all.map((w) => w.answer)),
        mostStarts: mostInOneSecond([...all.map((w) => w.start), holdingAt]),
        smallestGap: smallestGap(all).toFixed(2),
        writesAfterKill: theirs.filter((w) => w.start > killedAt).length,
      };
      console.log('holder killed (lease 1000 ms, 30 writes/s, latency 1–5 ms):', figures);
      // Nothing started while it held the lease, hung but alive.
      expect(resumedAt).toBeGreaterThan(killedAt);
      // The lease ran out: not before its last renewal's lease (≥ 2/3 of it after the kill)…
      expect(resumedAt - killedAt).toBeGreaterThanOrEqual((2 / 3) * leaseMs);
      // …and the others went on within leaseMs, plus one spacing and a margin.
      expect(resumedAt - killedAt).toBeLessThanOrEqual(leaseMs + spacing(30) + 150);
      expect(figures.writesAfterKill).toBeGreaterThan(20);
      expect(figures.mostAnswers).toBeLessThanOrEqual(30);
      expect(figures.mostStarts).toBeLessThanOrEqual(30);
      expect(smallestGap(all)).toBeGreaterThanOrEqual(spacing(30) - CLOCK_SLACK_MS);
    });

    it('falls back to ceiling ÷ maxReplicas each while Redis is down, and shares again once it is back', async () => {
      const key = writeBudgetKey(unique('down'));
      const base = writerConfig({ name: '', key });
      const three = ['w0', 'w1', 'w2'].map((name) =>
        spawn({ ...base, name, endAt: base.startAt + 11_000 }),
      );
      await sleep(base.startAt + 2000 - Date.now());
      const stoppedAt = clock();
      budgetRedisStop();
      await sleep(3000 - (clock() - stoppedAt));
      budgetRedisUp();
      // Back: listening again (services.sh waits for the port).
      const upAt = clock();
      await finished(three);
      const local = spacing(30 / 3);
      const perWriter = three.map((writer) => {
        const writes = writer.writes();
        const locals = writes.filter((w) => w.mode === 'local');
        let gap = Number.POSITIVE_INFINITY;
        for (let i = 1; i < writes.length; i++) {
          const w = writes[i] as WriteLine;
          if (w.mode === 'local')
            gap = Math.min(gap, w.start - (writes[i - 1] as WriteLine).answer);
        }
        const sharedAgain = writes.find((w) => w.mode === 'shared' && w.start > upAt);
        return {
          name: writer.name,
          locals: locals.length,
          localPerSec: ratePerSec(locals),
          firstLocalAfterStopMs: Math.round((locals[0]?.start ?? Number.NaN) - stoppedAt),
          smallestLocalGap: gap,
          mostLocalInOneSecond: mostInOneSecond(locals.map((w) => w.start)),
          sharedAgainAfterUpMs: Math.round((sharedAgain?.start ?? Number.NaN) - upAt),
          backLoggedAfterUpMs: Math.round(
            Number(writer.logs().find((l) => String(l.msg).includes('Redis is back'))?.time) -
              (Date.now() - (clock() - upAt)),
          ),
          lastLocal: Math.max(...locals.map((w) => w.answer)),
          messages: writer.messages(),
        };
      });
      const backAt = Math.max(...perWriter.map((w) => w.lastLocal));
      const after = three.flatMap((writer) => writer.writes()).filter((w) => w.start > backAt);
      const all = three.flatMap((writer) => writer.writes());
      console.log(
        'Redis stopped for 3 s (30 writes/s, 3 replicas, latency 1–5 ms):',
        perWriter.map(({ lastLocal, ...rest }) => ({
          ...rest,
          smallestLocalGap: rest.smallestLocalGap.toFixed(2),
          localPerSec: rest.localPerSec.toFixed(2),
        })),
        {
          mostAnswersOverall: mostInOneSecond(all.map((w) => w.answer)),
          sharedWritesAfterAllBack: after.length,
          mostAnswersAfterAllBack: mostInOneSecond(after.map((w) => w.answer)),
          smallestGapAfterAllBack: smallestGap(after).toFixed(2),
        },
      );
      // On a failure below, the logs say when each replica fell back and came back.
      for (const writer of three)
        if (count(writer.messages(), 'Redis unreachable') !== 1)
          console.log(writer.name, { stoppedAt, upAt }, writer.logs());
      for (const w of perWriter) {
        // Writes went on while Redis was down, each process at its share, spaced from its answers.
        expect(w.locals).toBeGreaterThanOrEqual(15);
        // At most one Redis timeout, then the local spacing.
        expect(w.firstLocalAfterStopMs).toBeLessThan(500 + local + 100);
        expect(w.smallestLocalGap).toBeGreaterThanOrEqual(local - CLOCK_SLACK_MS);
        expect(w.mostLocalInOneSecond).toBeLessThanOrEqual(10);
        // Back on the shared budget soon after Redis is (the client reconnects every
        // 100 ms, and waits a second more when it finds Redis loading its data).
        expect(w.sharedAgainAfterUpMs).toBeLessThan(3000);
        // Logged once when falling back, once when back.
        expect(count(w.messages, 'Redis unreachable')).toBe(1);
        expect(count(w.messages, 'Redis is back')).toBe(1);
      }
      expect(after.every((w) => w.mode === 'shared')).toBe(true);
      expect(after.length).toBeGreaterThan(20);
      expect(smallestGap(after)).toBeGreaterThanOrEqual(spacing(30) - CLOCK_SLACK_MS);
      expect(mostInOneSecond(after.map((w) => w.answer))).toBeLessThanOrEqual(30);
    });
  });

  describe('in one process', () => {
    const options = (key: string, log: BudgetLogger, over: Partial<SharedBudgetOptions> = {}) => ({
      redis: client(),
      key,
      ceiling: 40,
      floor: 10,
      targetMs: 50,
      maxReplicas: 2,
      leaseMs: 1500,
      log,
      ...over,
    });

    it('adapts the rate to the latency, and a lowered ceiling holds at once', async () => {
      const key = writeBudgetKey(unique('adapt'));
      const { log } = memoryLog();
      const seen: Array<
        BudgetWrite & { start: number; answer: number; phase: string; by: string }
      > = [];
      let phase = 'slow';
      let latency = 80;
      const replicas = [0, 1].map(() => {
        let start = 0;
        let answer = 0;
        const onWrite = (by: string) => (write: BudgetWrite) =>
          seen.push({ ...write, start, answer, phase, by });
        const budget = new SharedBudget(options(key, log, { onWrite: onWrite('first') }));
        // The ceiling lowered as a redeploy lowers it: the same replicas with the new
        // DB_WRITE_OPS_PER_SEC (a write the first ones had queued still ends after it).
        const redeployed = new SharedBudget(
          options(key, log, { onWrite: onWrite('redeployed'), ceiling: 20 }),
        );
        const loop = async () => {
          while (phase !== 'stop') {
            await (phase === 'lowered' ? redeployed : budget).run(async () => {
              start = clock();
              await sleep(latency);
              answer = clock();
            });
          }
          await Promise.all([budget.close(), redeployed.close()]);
        };
        return { budget, done: loop() };
      });
      const t0 = clock();
      await sleep(5000);
      phase = 'fast';
      latency = 3;
      const fastAt = clock();
      await sleep(9000);
      phase = 'lowered';
      await sleep(2000);
      phase = 'stop';
      await Promise.all(replicas.map((r) => r.done));

      const slow = seen.filter((s) => s.phase === 'slow');
      const fast = seen.filter((s) => s.phase === 'fast');
      // The writes of the redeployed replicas (one the first ones had queued may end after the change).
      const lowered = seen.filter((s) => s.by === 'redeployed');
      const cuts = slow.filter((s, i) => i > 0 && s.rate < (slow[i - 1] as BudgetWrite).rate);
      const atFloor = slow.find((s) => s.rate === 10);
      const atCeiling = fast.find((s) => s.rate === 40);
      const all = [...seen].sort((a, b) => a.start - b.start);
      const firstLowered = all.findIndex((s) => s.by === 'redeployed');
      const timeline = {
        slowRates: [...new Set(slow.map((s) => s.rate.toFixed(2)))],
        cutsAtMs: cuts.map((s) => Math.round(s.answer - t0)),
        floorAfterMs: Math.round((atFloor?.answer ?? Number.NaN) - t0),
        ceilingAgainAfterMs: Math.round((atCeiling?.answer ?? Number.NaN) - fastAt),
        fastMostAnswers: mostInOneSecond(fast.map((s) => s.answer)),
        loweredRates: [...new Set(lowered.map((s) => s.rate.toFixed(2)))],
        loweredMostAnswers: mostInOneSecond(lowered.map((s) => s.answer)),
        firstGapAfterLowering: (
          (all[firstLowered]?.start ?? 0) - (all[firstLowered - 1]?.answer ?? 0)
        ).toFixed(2),
      };
      console.log(
        'adaptive (ceiling 40, floor 10, target 50 ms; 80 ms, then 3 ms, then ceiling 20):',
        timeline,
      );
      expect(smallestGap(all as unknown as WriteLine[])).toBeGreaterThan(0);
      expect(seen.every((s) => s.rate <= 40)).toBe(true);
      // Slow writes: the rate only falls, once a second at most, to the floor within a few seconds.
      expect(slow.every((s, i) => i === 0 || s.rate <= (slow[i - 1] as BudgetWrite).rate)).toBe(
        true,
      );
      for (let i = 1; i < cuts.length; i++)
        expect(
          (cuts[i] as BudgetWrite & { answer: number }).answer -
            (cuts[i - 1] as { answer: number }).answer,
        ).toBeGreaterThan(950);
      expect(timeline.floorAfterMs).toBeLessThan(4500);
      expect(slow.at(-1)?.rate).toBe(10);
      // Fast writes: back to the ceiling, never above it, and never more than 40 in a second.
      // 10 to 40 at a tenth of the ceiling (4) a second: 7.5 s.
      expect(timeline.ceilingAgainAfterMs).toBeLessThan(8500);
      expect(timeline.ceilingAgainAfterMs).toBeGreaterThan(6000);
      expect(timeline.fastMostAnswers).toBeLessThanOrEqual(40);
      expect(timeline.fastMostAnswers).toBeGreaterThanOrEqual(25);
      // A ceiling of 20: from the very next write.
      expect(lowered.every((s) => s.rate <= 20)).toBe(true);
      expect(smallestGap(lowered as unknown as WriteLine[])).toBeGreaterThanOrEqual(
        spacing(20) - CLOCK_SLACK_MS,
      );
      expect(Number(timeline.firstGapAfterLowering)).toBeGreaterThanOrEqual(
        spacing(20) - CLOCK_SLACK_MS,
      );
      expect(timeline.loweredMostAnswers).toBeLessThanOrEqual(20);
    });

    it('counts a write the database did not answer as failed, and shares the largest batch between replicas', async () => {
      const key = writeBudgetKey(unique('answered'));
      const { log } = memoryLog();
      const writes: BudgetWrite[] = [];
      const one = new SharedBudget(
        options(key, log, { maxBatchDocs: 400, onWrite: (w) => writes.push(w) }),
      );
      const other = new SharedBudget(options(key, log, { maxBatchDocs: 400 }));
      // Before any budget call the replica has no shared figure (the committer keeps its own).
      expect(one.batchLimit).toBeUndefined();
      // The write resolves, but with an outcome that says the database did not answer.
      const verdict = await one.run(
        async () => ({ kind: 'unavailable' }),
        (v) => ({ answered: v.kind !== 'unavailable', docs: 400 }),
      );
      expect(verdict).toEqual({ kind: 'unavailable' });
      await one.run(
        async () => 'fast',
        () => ({ answered: true, latencyMs: 5, docs: 200 }),
      );
      await one.close();
      expect(writes.map((w) => w.ok)).toEqual([false, true]);
      // The command's own latency is what the budget sees, when the outcome gives one.
      expect(writes[1]?.latencyMs).toBe(5);
      expect(writes[0]?.rate).toBe(28); // 40 × 0.7: the failure cut the rate
      // The failure halved the batch (400 → 200), the fast write of 200 grew it by a quarter.
      expect(one.batchLimit).toBe(250);
      // The other replica writes its next batch under the same figure (a write of unknown size leaves it).
      await other.run(async () => 'x');
      await other.close();
      expect(other.batchLimit).toBe(250);
    });

    it('releases a write that throws (as failed) and rethrows', async () => {
      const key = writeBudgetKey(unique('throws'));
      const { log } = memoryLog();
      const writes: BudgetWrite[] = [];
      const budget = new SharedBudget(options(key, log, { onWrite: (w) => writes.push(w) }));
      await expect(
        budget.run(async () => {
          await sleep(5);
          throw new Error('write refused');
        }),
      ).rejects.toThrow('write refused');
      expect(await budget.run(async () => 'next')).toBe('next');
      // Its release (and the metrics after it) follow the answer.
      await budget.close();
      expect(writes.map((w) => w.ok)).toEqual([false, true]);
      // The failure cut the rate (40 × 0.7); the success right after climbs back by a
      // tenth of the ceiling per second since the cut, a moment here.
      expect(writes[0]?.rate).toBe(28);
      expect(writes[1]?.rate).toBeGreaterThan(28);
      expect(writes[1]?.rate).toBeLessThan(29);
      expect(writes[0]?.latencyMs).toBeGreaterThanOrEqual(4);
      expect(writes[1]?.latencyMs).toBeLessThan(50);
      expect(await redis.hget(key, 'holder')).toBe('');
    });

    it('does not wait on a stalled Redis: falls back within the timeout, and a late grant is given back', async () => {
      const key = writeBudgetKey(unique('stall'));
      const proxy = new StallingProxy(port);
      const proxyPort = await proxy.listen();
      const { log, messages } = memoryLog();
      const cut = new SharedBudget(
        options(key, log, { redis: client(`redis://127.0.0.1:${proxyPort}`), ceiling: 20 }),
      );
      const other = new SharedBudget(options(key, memoryLog().log, { ceiling: 20 }));
      const times: Array<{ start: number; answer: number; mode: string }> = [];
      const write = (budget: SharedBudget) =>
        budget.run(async () => {
          const start = clock();
          await sleep(2);
          times.push({ start, answer: clock(), mode: budget.mode });
        });
      await write(cut);
      expect(cut.mode).toBe('shared');
      await sleep(20); // its release reaches Redis
      proxy.pause();
      const pausedAt = clock();
      await write(cut);
      const fellBackAfter = (times[1]?.start ?? 0) - pausedAt;
      for (let i = 0; i < 5; i++) await write(cut);
      const locals = times.slice(1);
      // The direct replica is idle while the other is cut off: the stalled acquire would be granted on resume.
      proxy.resume();
      const resumedAt = clock();
      await sleep(50);
      const state = await redis.writeBudget(key, 'state', 20, 10);
      times.length = 0;
      await write(other);
      const otherWaited = (times[0]?.start ?? 0) - resumedAt;
      const backBy = clock() + 1500;
      while (cut.mode === 'local' && clock() < backBy) await write(cut);
      console.log('stalled Redis (timeout 500 ms, local 10 writes/s):', {
        fellBackAfterMs: Math.round(fellBackAfter),
        localGaps: locals
          .slice(1)
          .map((t, i) => (t.start - (locals[i] as { answer: number }).answer).toFixed(1)),
        holderAfterResume: state[0],
        otherWaitedAfterResumeMs: Math.round(otherWaited),
        modeAfterResume: cut.mode,
        messages,
      });
      expect(locals.every((t) => t.mode === 'local')).toBe(true);
      expect(fellBackAfter).toBeGreaterThanOrEqual(450);
      expect(fellBackAfter).toBeLessThan(500 + spacing(10) + 100);
      for (let i = 1; i < locals.length; i++) {
        const gap =
          (locals[i] as { start: number }).start - (locals[i - 1] as { answer: number }).answer;
        expect(gap).toBeGreaterThanOrEqual(spacing(10) - CLOCK_SLACK_MS);
        expect(gap).toBeLessThan(spacing(10) + 50);
      }
      // The late acquire's grant was cancelled right behind it: nobody holds, nobody stalls.
      expect(state[0]).toBe('');
      expect(otherWaited).toBeLessThan(spacing(20) + 100);
      expect(cut.mode).toBe('shared');
      expect(count(messages, 'Redis unreachable')).toBe(1);
      expect(count(messages, 'Redis is back')).toBe(1);
      await cut.close();
      await other.close();
      await proxy.close();
    });

    it('falls back at once when nothing listens', async () => {
      const { log, messages } = memoryLog();
      const budget = new SharedBudget(
        options(writeBudgetKey(unique('closed')), log, { redis: client('redis://127.0.0.1:1') }),
      );
      const started = clock();
      await budget.run(async () => undefined);
      await budget.run(async () => undefined);
      const took = clock() - started;
      await budget.close();
      expect(budget.mode).toBe('local');
      expect(budget.rate).toBe(20);
      // Two writes at 20 writes/s of the local share: spacing from start, then one more; no Redis wait.
      expect(took).toBeGreaterThanOrEqual(2 * spacing(20) - CLOCK_SLACK_MS);
      expect(took).toBeLessThan(2 * spacing(20) + 60);
      expect(count(messages, 'Redis unreachable')).toBe(1);
    });
  });
});
