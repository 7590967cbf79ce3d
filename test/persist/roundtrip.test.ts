/**
 * What is posted is what is stored: for generated JSON events (any key, numbers
 * beyond 2^53 and beyond 64 bits, -0, more digits than a double holds, any
 * Unicode) answered 202 by ingest, the document persist stores reads back as the
 * posted data, number for number and key for key (fast-check, seeded).
 */
import fc from 'fast-check';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sameJson, storedDataText } from '../../functions/shared/data.js';
import { eventId } from '../../functions/shared/document.js';
import { TRACED_PAYMENT_ATTRIBUTES, tracedPaymentHeaders } from '../support/events.js';
import {
  type FunctionProcess,
  mongoUrl,
  postJson,
  redisClient,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_128);
const CASES = Number(process.env.ROUNDTRIP_CASES ?? 1000);

const digits = (min: number, max: number) =>
  fc
    .array(fc.constantFrom(...'0123456789'), { minLength: min, maxLength: max })
    .map((d) => d.join(''));

const number = fc.oneof(
  fc.bigInt({ min: -(2n ** 130n), max: 2n ** 130n }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc
    .tuple(fc.boolean(), digits(1, 3), digits(1, 40), fc.integer({ min: -400, max: 400 }))
    .map(
      ([neg, whole, fraction, exp]) =>
        `${neg ? '-' : ''}${whole.replace(/^0+(?=\d)/, '')}.${fraction}e${exp}`,
    ),
  fc.constantFrom(
    '-0',
    '-0.0',
    '0.0',
    '1e400',
    '9007199254740993',
    '-9223372036854775808',
    '18446744073709551616',
  ),
);

const key = fc
  .oneof(
    fc.string({ unit: 'grapheme', maxLength: 8 }),
    fc.constantFrom(
      'a.b',
      '$x',
      'x$',
      '\u0000k',
      '%',
      '%25',
      '%n',
      '__proto__',
      '',
      'constructor',
      '.',
    ),
  )
  .map((k) => JSON.stringify(k));

const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('array'), tie('object')),
  leaf: fc.oneof(
    fc.constantFrom('null', 'true', 'false'),
    number,
    fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => JSON.stringify(s)),
  ),
  array: fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`),
  object: fc
    .uniqueArray(fc.tuple(key, tie('value')), { maxLength: 4, selector: ([k]) => k })
    .map((entries) => `{${entries.map(([k, v]) => `${k}:${v}`).join(',')}}`),
}));

describe('round trip: posted JSON → ingest → stream → persist → MongoDB', () => {
  const stream = unique('test:roundtrip');
  const database = unique('t_roundtrip').replace(/-/g, '_');
  const env = {
    STREAM_KEY: stream,
    MONGODB_DB: database,
    STALE_AFTER_MS: '0',
    SWEEP_INTERVAL_MS: '200',
  };
  const redis = redisClient();
  let mongo: MongoClient;
  let ingest: FunctionProcess;
  let persist: FunctionProcess;
  beforeAll(async () => {
    mongo = await new MongoClient(mongoUrl()).connect();
    ingest = await startFunction('ingest', env);
    persist = await startFunction('persist', env);
  });
  afterAll(async () => {
    await ingest?.kill('SIGKILL');
    await persist?.kill('SIGKILL');
    await redis.del(stream);
    await mongo.db(database).dropDatabase();
    await mongo.close();
    redis.disconnect();
  });

  it(`stores ${CASES} generated events exactly as posted`, async () => {
    const samples = fc.sample(value, { seed: SEED, numRuns: CASES });
    const posted = new Map<string, string>();
    let next = 0;
    const worker = async () => {
      while (next < samples.length) {
        const data = samples[next++] as string;
        const res = await postJson(`${ingest.url}/events`, `{"type":"roundtrip","data":${data}}`);
        expect(res.status, `${data} → ${JSON.stringify(res.body)}`).toBe(202);
        posted.set(res.body.id as string, data);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const events = mongo.db(database).collection('events');
    await waitFor(
      async () =>
        (await events.countDocuments()) >= posted.size && (await redis.xlen(stream)) === 0,
      120_000,
      async () =>
        `${await events.countDocuments()} of ${posted.size}, stream ${await redis.xlen(stream)}`,
    );
    const ids = [...posted.keys()].map((id) => eventId('/spillway/ingest', id));
    const docs = await events.find({ _id: { $in: ids as never[] } }).toArray();
    expect(docs).toHaveLength(posted.size);
    const differ: string[] = [];
    for (const doc of docs) {
      const data = posted.get((doc._id as unknown as { id: string }).id) as string;
      const stored = storedDataText(doc.data);
      if (!sameJson(stored, data)) differ.push(`posted ${data}\nstored ${stored}`);
    }
    expect(differ.slice(0, 5)).toEqual([]);
    expect(await mongo.db(database).collection('events_dead').countDocuments()).toBe(0);
  }, 300_000);

  it('keeps events with the same CloudEvent id from two sources apart (identity is source + id)', async () => {
    const id = unique('ce-abc');
    const post = (source: string, type: string) =>
      postJson(
        `${ingest.url}/events`,
        { specversion: '1.0', id, source, type, data: { from: source } },
        { 'content-type': 'application/cloudevents+json' },
      );
    const shop = await post('/shop', 'order.created');
    const other = await post('/other-app', 'user.signup');
    expect([shop.status, other.status]).toEqual([202, 202]);
    expect([shop.body.source, other.body.source]).toEqual(['/shop', '/other-app']);
    // The same source and id again is the same event: a duplicate, stored once.
    expect((await post('/shop', 'order.created')).status).toBe(202);
    const events = mongo.db(database).collection('events');
    await waitFor(
      async () =>
        (await events.countDocuments({ '_id.id': id })) === 2 && (await redis.xlen(stream)) === 0,
      60_000,
      async () => `${await events.countDocuments({ '_id.id': id })} stored`,
    );
    expect(await events.findOne({ _id: eventId('/other-app', id) as never })).toMatchObject({
      type: 'user.signup',
      data: { from: '/other-app' },
    });
    expect(await events.findOne({ _id: eventId('/shop', id) as never })).toMatchObject({
      type: 'order.created',
    });
  });

  it('stores the time as posted beside its instant, and every CloudEvent attribute', async () => {
    const binaryId = unique('ce-bin');
    const structuredId = unique('ce-str');
    const binary = await postJson(
      `${ingest.url}/events`,
      { amount: 7 },
      tracedPaymentHeaders(binaryId),
    );
    const structured = await postJson(
      `${ingest.url}/events`,
      {
        specversion: '1.0',
        id: structuredId,
        type: 'user.signed-up',
        source: '/auth',
        time: '2024-02-29T23:59:59.5-00:30',
        tenant: 'globex',
        priority: 3,
        data: { plan: 'pro' },
      },
      { 'content-type': 'application/cloudevents+json' },
    );
    expect([binary.status, structured.status]).toEqual([202, 202]);
    const events = mongo.db(database).collection('events');
    await waitFor(
      async () =>
        (await events.countDocuments({ '_id.id': { $in: [binaryId, structuredId] } })) === 2,
      60_000,
      () => 'the two events are not stored',
    );
    const a = await events.findOne({ _id: eventId('urn:bank', binaryId) as never });
    expect(a?.timeText).toBe('2026-02-03T10:00:00.123456+02:00');
    expect(a?.time).toEqual(new Date('2026-02-03T08:00:00.123Z'));
    expect(a?.attributes).toEqual(TRACED_PAYMENT_ATTRIBUTES);
    const b = await events.findOne({ _id: eventId('/auth', structuredId) as never });
    expect(b?.timeText).toBe('2024-02-29T23:59:59.5-00:30');
    expect(b?.time).toEqual(new Date('2024-03-01T00:29:59.500Z'));
    expect(b?.attributes).toEqual({ priority: 3, tenant: 'globex' });
  });
});
