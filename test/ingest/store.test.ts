/**
 * EventStore (functions/ingest/store.ts) on the real Redis: the events
 * accepted in one turn of the event loop go in one EVALSHA of ingest-7n.lua,
 * each gets its own outcome, in order, and one that fails fails alone.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AcceptOutcome,
  CALL_MAX_EVENTS,
  type Caller,
  EventStore,
} from '../../functions/ingest/store.js';
import { idempotencyKey } from '../../functions/shared/redis/keys.js';
import { Scripts } from '../../functions/shared/redis/scripts.js';
import { redisClient, unique } from '../support/helpers.js';

let redis: Redis;
let monitorClient: Redis;
let store: EventStore;
let stream: string;

const caller: Caller = { client: 'store-test', scope: 'anon', fingerprint: 'fp' };

beforeAll(async () => {
  redis = redisClient();
  monitorClient = redisClient();
  stream = unique('test:store');
  // The stream exists (with its marker in production; here, any group).
  await redis.xgroup('CREATE', stream, 'persist', '$', 'MKSTREAM');
  store = new EventStore(new Scripts(redis), {
    streamKey: stream,
    idempotencyTtlMs: 60_000,
    rateLimitPerSec: 0,
    maxBacklog: 0,
    maxDrainSec: 0,
    sequenceTtlMs: 60_000,
    countersTtlMs: 60_000,
  });
});
afterAll(async () => {
  await redis.del(stream);
  await Promise.all([redis.quit(), monitorClient.quit()]);
});

const event = (subject: string, n: number, key?: string) => ({
  id: unique(`ev${n}`),
  type: 't',
  source: '/store-test',
  subject,
  time: new Date().toISOString(),
  data: JSON.stringify({ n }),
  ...(key === undefined ? {} : { key }),
});

/** The script calls sent on this stream while `work` runs (MONITOR, over the wire). */
async function evalshasDuring(work: () => Promise<unknown>): Promise<number> {
  const monitor = await monitorClient.monitor();
  let calls = 0;
  const sentinel = unique('monitoring');
  let watching: () => void = () => undefined;
  const watched = new Promise<void>((resolve) => {
    watching = resolve;
  });
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (args.includes(sentinel)) watching();
    // ioredis sends a script's first call on a connection as EVAL, later ones as EVALSHA.
    const command = String(args[0]).toLowerCase();
    if (source !== 'lua' && (command === 'evalsha' || command === 'eval') && args.includes(stream))
      calls++;
  });
  try {
    // MONITOR shows commands from some moment after it answers: wait until it does.
    await redis.echo(sentinel);
    await watched;
    await work();
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    monitor.disconnect();
  }
  return calls;
}

const seqOf = (outcome: AcceptOutcome) => (outcome.kind === 'ok' ? outcome.seq : undefined);

describe('EventStore', () => {
  it('sends the events of one turn in one call, and answers each in order', async () => {
    const subject = unique('subject');
    const key = unique('key');
    let outcomes: AcceptOutcome[] = [];
    const calls = await evalshasDuring(async () => {
      outcomes = await Promise.all([
        store.accept(event(subject, 1), caller, Date.now()),
        store.accept(event(subject, 2, key), caller, Date.now()),
        store.accept(event(subject, 3), caller, Date.now()),
        // The same key again in the same call: a replay of the second.
        store.accept(event(subject, 4, key), caller, Date.now()),
      ]);
    });
    expect(calls).toBe(1);
    expect(outcomes.map((o) => o.kind)).toEqual(['ok', 'ok', 'ok', 'dup']);
    expect(outcomes.slice(0, 3).map(seqOf)).toEqual([1, 2, 3]);
    const second = outcomes[1] as Extract<AcceptOutcome, { kind: 'ok' }>;
    expect(outcomes[3]).toMatchObject({ kind: 'dup', id: second.id, seq: 2 });
    const entries = await redis.xrange(stream, '-', '+');
    const stored = entries.filter(([, fields]) => fields.includes(subject));
    expect(stored.map(([id]) => id)).toEqual(
      outcomes.slice(0, 3).map((o) => (o as Extract<AcceptOutcome, { kind: 'ok' }>).streamId),
    );
  });

  it('fails an event whose command fails, alone: the others of its call are stored', async () => {
    const subject = unique('subject');
    const key = unique('key');
    // An idempotency record that is not JSON: the script's decode of it fails.
    await redis.set(idempotencyKey(caller.scope, key), 'not json', 'PX', 60_000);
    const settled = await Promise.allSettled([
      store.accept(event(subject, 1), caller, Date.now()),
      store.accept(event(subject, 2, key), caller, Date.now()),
      store.accept(event(subject, 3), caller, Date.now()),
    ]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/Redis refused the event/);
    const stored = (await redis.xrange(stream, '-', '+')).filter(([, f]) => f.includes(subject));
    expect(stored).toHaveLength(2);
  });

  it(`splits a turn of more than ${CALL_MAX_EVENTS} events into calls of at most that many`, async () => {
    const subject = unique('subject');
    const count = CALL_MAX_EVENTS + 44;
    let outcomes: AcceptOutcome[] = [];
    const calls = await evalshasDuring(async () => {
      outcomes = await Promise.all(
        Array.from({ length: count }, (_, i) =>
          store.accept(event(subject, i), caller, Date.now()),
        ),
      );
    });
    expect(calls).toBe(2);
    expect(outcomes.map(seqOf)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  });
});
