import { request as httpRequest } from 'node:http';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEntryFields } from '../../functions/shared/entry.js';
import {
  countersKey,
  RATE_WINDOW_PREFIX,
  sourceSettingsKey,
} from '../../functions/shared/redis/keys.js';
import { TRACED_PAYMENT_ATTRIBUTES, tracedPaymentHeaders } from '../support/events.js';
import {
  type FunctionProcess,
  postJson,
  redisClient,
  redisUrl,
  startFunction,
  unique,
} from '../support/helpers.js';

let redis: Redis;
beforeAll(async () => {
  redis = redisClient();
  await redis.select(DB);
});
afterAll(async () => {
  await redis.quit();
});

/** A database of its own (db 5): nothing else in the project or a benchmark writes there. */
const DB = 5;
const isolated = { REDIS_URL: `${redisUrl()}/${DB}` };

/**
 * Everything a request could have changed in this database: every key with its
 * value (rate-limit windows left out: they expire by themselves).
 */
async function footprint(_stream?: string): Promise<string> {
  const keys = (await redis.keys('*')).filter((k) => !k.startsWith(RATE_WINDOW_PREFIX)).sort();
  const values: unknown[] = [];
  for (const key of keys) {
    const type = await redis.type(key);
    if (type === 'string') values.push(await redis.get(key));
    else if (type === 'hash') values.push(await redis.hgetall(key));
    else if (type === 'stream')
      values.push([await redis.xlen(key), await redis.xrevrange(key, '+', '-', 'COUNT', 1)]);
    else values.push(type);
  }
  return JSON.stringify({ keys, values });
}

function rawPost(
  url: string,
  headers: Record<string, string>,
  chunks: Buffer[],
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

describe('ingest', () => {
  const stream = unique('test:ingest');
  let fn: FunctionProcess;
  beforeAll(async () => {
    fn = await startFunction('ingest', { ...isolated, STREAM_KEY: stream, MAX_BODY_BYTES: '4096' });
  });
  afterAll(async () => {
    await fn.kill();
    await redis.del(stream);
  });

  it('answers 202 {id, source, seq, receipt, status} with the receipt Location and appends a stream entry matching the stream entry contract field for field', async () => {
    const subject = unique('order');
    const key = unique('idem');
    const before = Date.now();
    const res = await postJson(
      `${fn.url}/events`,
      { type: 'order.created', source: '/shop', subject, data: { total: 42, items: ['a'] } },
      { 'idempotency-key': key },
    );
    expect(res.status).toBe(202);
    expect(res.body).toEqual({
      id: expect.stringMatching(
        /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      ),
      source: '/shop',
      seq: 1,
      receipt: expect.stringMatching(/^[A-Za-z0-9_-]{44}$/),
      status: 'accepted',
    });
    expect(res.headers.get('location')).toBe(`/receipts/${res.body.receipt}`);
    const entries = await redis.xrange(stream, '-', '+');
    const [streamId, fields] = entries.at(-1) as [string, string[]];
    expect(streamId).toMatch(/^\d+-\d+$/);
    expect(fields.filter((_, i) => i % 2 === 0)).toEqual([
      'id',
      'type',
      'source',
      'subject',
      'time',
      'seq',
      'data',
      'key',
    ]);
    const entry = parseEntryFields(fields);
    expect(entry).toEqual({
      id: res.body.id,
      type: 'order.created',
      source: '/shop',
      subject,
      time: expect.any(String),
      seq: 1,
      data: JSON.stringify({ total: 42, items: ['a'] }),
      key,
    });
    const time = Date.parse(entry.time);
    expect(time).toBeGreaterThanOrEqual(before - 5);
    expect(time).toBeLessThanOrEqual(Date.now() + 5);
  });

  it('accepts POST / too, defaults source and subject, and numbers subjects separately', async () => {
    const a = await postJson(`${fn.url}/`, { type: 't', data: null });
    expect(a.status).toBe(202);
    const [, fields] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0] as [
      string,
      string[],
    ];
    const entry = parseEntryFields(fields);
    expect(entry.source).toBe('/spillway/ingest');
    expect(entry.subject).toBe('');
    expect(entry.data).toBe('null');
    expect(entry.key).toBeUndefined();
  });

  it('keeps id, type, source, subject and time of a binary-mode CloudEvent', async () => {
    const id = unique('ce');
    const res = await postJson(
      `${fn.url}/events`,
      { amount: 7 },
      {
        'ce-specversion': '1.0',
        'ce-id': id,
        'ce-type': 'payment.settled',
        'ce-source': 'urn:bank',
        'ce-subject': 'acct-1',
        'ce-time': '2026-11-28T06:00:00.000Z',
      },
    );
    expect(res.status).toBe(202);
    expect(res.body.id).toBe(id);
    const [, fields] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0] as [
      string,
      string[],
    ];
    expect(parseEntryFields(fields)).toMatchObject({
      id,
      type: 'payment.settled',
      source: 'urn:bank',
      subject: 'acct-1',
      time: '2026-11-28T06:00:00.000Z',
      data: '{"amount":7}',
    });
  });

  it('keeps the attributes of a structured-mode CloudEvent', async () => {
    const id = unique('ce');
    const res = await postJson(
      `${fn.url}/events`,
      {
        specversion: '1.0',
        id,
        type: 'user.signed-up',
        source: '/auth',
        subject: 'u-9',
        time: '2026-11-28T07:00:00Z',
        datacontenttype: 'application/json',
        data: { plan: 'pro' },
      },
      { 'content-type': 'application/cloudevents+json' },
    );
    expect(res.status).toBe(202);
    expect(res.body.id).toBe(id);
    const [, fields] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0] as [
      string,
      string[],
    ];
    expect(parseEntryFields(fields)).toMatchObject({
      id,
      type: 'user.signed-up',
      source: '/auth',
      subject: 'u-9',
      data: '{"plan":"pro"}',
    });
  });

  it('keeps every other attribute of a binary-mode CloudEvent: traceparent, dataschema, extensions', async () => {
    const id = unique('ce');
    const res = await postJson(`${fn.url}/events`, { amount: 7 }, tracedPaymentHeaders(id));
    expect(res.status).toBe(202);
    const [, fields] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0] as [
      string,
      string[],
    ];
    const entry = parseEntryFields(fields);
    // the time as posted, every digit and the offset
    expect(entry.time).toBe('2026-02-03T10:00:00.123456+02:00');
    expect(JSON.parse(entry.attributes as string)).toEqual(TRACED_PAYMENT_ATTRIBUTES);
  });

  it('keeps the extension attributes of a structured-mode CloudEvent, with their JSON types', async () => {
    const id = unique('ce');
    const res = await postJson(
      `${fn.url}/events`,
      {
        specversion: '1.0',
        id,
        type: 'user.signed-up',
        source: '/auth',
        tenant: 'acme',
        priority: 3,
        replayed: false,
        nothing: null,
        data: { plan: 'pro' },
      },
      { 'content-type': 'application/cloudevents+json' },
    );
    expect(res.status).toBe(202);
    const [, fields] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0] as [
      string,
      string[],
    ];
    expect(JSON.parse(parseEntryFields(fields).attributes as string)).toEqual({
      priority: 3,
      replayed: false,
      tenant: 'acme',
    });
  });

  it('numbers a subject per source: the same subject under two sources is two sequences', async () => {
    const subject = unique('shared');
    const seqs = [];
    for (const source of ['/a', '/b', '/a', '/b', '/b'])
      seqs.push(
        (await postJson(`${fn.url}/events`, { type: 't', source, subject, data: 1 })).body.seq,
      );
    expect(seqs).toEqual([1, 1, 2, 2, 3]);
  });

  const bad: Array<
    [
      string,
      () => Promise<{ status: number; body: Record<string, unknown> }>,
      number,
      string,
      RegExp,
    ]
  > = [
    ...(
      [
        ['February 30', '2026-02-30T10:00:00Z', /has no day 30 in 2026-02/],
        ['hour 24', '2026-01-01T24:00:00Z', /has no hour 24/],
        ['no offset', '2026-01-01T10:00:00', /is not an RFC 3339 date-time/],
        ['a leap second', '2016-12-31T23:59:60Z', /leap seconds cannot be stored/],
      ] as const
    ).map(
      ([what, time, detail]) =>
        [
          `a CloudEvent time with ${what}`,
          () =>
            postJson(
              `${fn.url}/events`,
              { a: 1 },
              {
                'ce-specversion': '1.0',
                'ce-id': 'x',
                'ce-type': 't',
                'ce-source': '/s',
                'ce-time': time,
              },
            ),
          400,
          'invalid_field',
          detail,
        ] as [string, () => ReturnType<typeof postJson>, number, string, RegExp],
    ),
    [
      'a CloudEvent extension named with a hyphen',
      () =>
        postJson(
          `${fn.url}/events`,
          { a: 1 },
          {
            'ce-specversion': '1.0',
            'ce-id': 'x',
            'ce-type': 't',
            'ce-source': '/s',
            'ce-trace-id': 'q',
          },
        ),
      400,
      'invalid_cloudevent',
      /attribute name "trace-id" is not lower-case letters and digits/,
    ],
    [
      'a CloudEvent extension whose value is an object',
      () =>
        postJson(
          `${fn.url}/events`,
          { specversion: '1.0', id: 'x', type: 't', source: '/s', tenant: { a: 1 }, data: 1 },
          { 'content-type': 'application/cloudevents+json' },
        ),
      400,
      'invalid_cloudevent',
      /attribute "tenant" must be a string, an integer or a boolean/,
    ],
    [
      'malformed JSON',
      () => postJson(`${fn.url}/events`, '{"type": "x", "data": '),
      400,
      'malformed_json',
      /not valid JSON/,
    ],
    [
      'a missing type',
      () => postJson(`${fn.url}/events`, { data: 1 }),
      400,
      'invalid_field',
      /"type" is required/,
    ],
    [
      'an empty type',
      () => postJson(`${fn.url}/events`, { type: '', data: 1 }),
      400,
      'invalid_field',
      /"type" must not be empty/,
    ],
    [
      'a type that is not a string',
      () => postJson(`${fn.url}/events`, { type: 5, data: 1 }),
      400,
      'invalid_field',
      /"type" must be a string/,
    ],
    [
      'a subject that is not a string',
      () => postJson(`${fn.url}/events`, { type: 't', subject: [], data: 1 }),
      400,
      'invalid_field',
      /"subject"/,
    ],
    [
      'a missing data',
      () => postJson(`${fn.url}/events`, { type: 't' }),
      400,
      'invalid_field',
      /"data" is required/,
    ],
    [
      'an unknown field',
      () => postJson(`${fn.url}/events`, { type: 't', data: 1, extra: true }),
      400,
      'invalid_field',
      /"extra"/,
    ],
    [
      'a JSON array',
      () => postJson(`${fn.url}/events`, [1, 2]),
      400,
      'invalid_body',
      /JSON object/,
    ],
    [
      'an empty Idempotency-Key',
      () => postJson(`${fn.url}/events`, { type: 't', data: 1 }, { 'idempotency-key': '' }),
      400,
      'invalid_header',
      /Idempotency-Key/,
    ],
    [
      'a wrong content type',
      () => postJson(`${fn.url}/events`, 'type=t', { 'content-type': 'text/plain' }),
      415,
      'unsupported_media_type',
      /text\/plain/,
    ],
    [
      'a CloudEvents batch',
      () =>
        postJson(`${fn.url}/events`, [], { 'content-type': 'application/cloudevents-batch+json' }),
      415,
      'unsupported_media_type',
      /batch/,
    ],
    [
      'a CloudEvent without id',
      () =>
        postJson(
          `${fn.url}/events`,
          { a: 1 },
          { 'ce-specversion': '1.0', 'ce-type': 't', 'ce-source': '/s' },
        ),
      400,
      'invalid_cloudevent',
      /CloudEvent/,
    ],
    [
      'a body over MAX_BODY_BYTES',
      () => postJson(`${fn.url}/events`, { type: 't', data: 'x'.repeat(5000) }),
      413,
      'payload_too_large',
      /MAX_BODY_BYTES/,
    ],
    [
      'a GET on /events',
      async () => {
        const res = await fetch(`${fn.url}/events`);
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      },
      405,
      'method_not_allowed',
      /use POST/,
    ],
    [
      'a DELETE on /',
      async () => {
        const res = await fetch(`${fn.url}/`, { method: 'DELETE' });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      },
      405,
      'method_not_allowed',
      /DELETE/,
    ],
    [
      'an unknown path',
      () => postJson(`${fn.url}/nowhere`, { type: 't', data: 1 }),
      404,
      'not_found',
      /\/nowhere/,
    ],
  ];
  for (const [what, send, status, code, detail] of bad) {
    it(`answers ${status} ${code} to ${what} and changes nothing in Redis`, async () => {
      const before = await footprint(stream);
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.body.error).toBe(code);
      expect(String(res.body.detail)).toMatch(detail);
      expect(await footprint(stream)).toBe(before);
    });
  }

  it('answers 413 to a chunked body over MAX_BODY_BYTES without reading all of it', async () => {
    const before = await footprint(stream);
    const chunk = Buffer.alloc(1024, 'a');
    const res = await rawPost(
      `${fn.url}/events`,
      { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      Array(8).fill(chunk),
    );
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error).toBe('payload_too_large');
    expect(await footprint(stream)).toBe(before);
  });

  it('gives 100 concurrent requests with one Idempotency-Key one id and one stream entry', async () => {
    const key = unique('idem');
    const lenBefore = await redis.xlen(stream);
    // The same request 100 times (a client retrying): one event.
    const answers = await Promise.all(
      Array.from({ length: 100 }, () =>
        postJson(
          `${fn.url}/events`,
          { type: 'pay', subject: 'same', data: { amount: 5 } },
          { 'idempotency-key': key },
        ),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(100).fill(202));
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(answers.filter((a) => a.headers.get('idempotent-replay') === 'true')).toHaveLength(99);
    expect(await redis.xlen(stream)).toBe(lenBefore + 1);
    const withKey = (await redis.xrange(stream, '-', '+')).filter(
      ([, f]) => parseEntryFields(f).key === key,
    );
    expect(withKey).toHaveLength(1);
    expect(parseEntryFields((withKey[0] as [string, string[]])[1]).id).toBe(answers[0]?.body.id);
  });

  it('numbers one subject 1..n without gaps under concurrency, in stream order', async () => {
    const subject = unique('subject');
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        postJson(`${fn.url}/events`, { type: 't', subject, data: i }),
      ),
    );
    expect(answers.every((a) => a.status === 202)).toBe(true);
    expect(answers.map((a) => Number(a.body.seq)).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    const seqs = (await redis.xrange(stream, '-', '+'))
      .map(([, f]) => parseEntryFields(f))
      .filter((e) => e.subject === subject)
      .map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('makes one Redis round trip (one EVALSHA) for the requests that come in together, doing 5 reads and 5 writes for each', async () => {
    // MONITOR sees every command with its database and client; the script's own
    // commands show as coming from "lua".
    const monitor = await redis.monitor();
    const seen: Array<{ command: string; source: string }> = [];
    monitor.on('monitor', (_time: string, args: string[], source: string, database: string) => {
      if (database === String(DB)) seen.push({ command: String(args[0]).toLowerCase(), source });
    });
    const watched = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        postJson(`${fn.url}/events`, { type: 't', data: i }, { 'idempotency-key': unique('rt') }),
      ),
    );
    expect(answers.every((a) => a.status === 202)).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    monitor.disconnect();
    // Not per request: the memory admission's INFO, once a second per process.
    const polls = seen.filter((c) => c.command === 'info' && c.source !== 'lua').length;
    expect(polls).toBeLessThanOrEqual(Math.ceil((performance.now() - watched) / 1000) + 1);
    seen.splice(0, seen.length, ...seen.filter((c) => c.command !== 'info'));
    const tally = (list: typeof seen) => {
      const out: Record<string, number> = {};
      for (const { command } of list) out[command] = (out[command] ?? 0) + 1;
      return out;
    };
    // Over the wire: EVALSHA only, at most one per request (requests read in
    // one turn of ingest's event loop share one: test/ingest/store.test.ts).
    const { evalsha = 0, ...other } = tally(seen.filter((c) => c.source !== 'lua'));
    expect(other).toEqual({});
    expect(evalsha).toBeGreaterThanOrEqual(1);
    expect(evalsha).toBeLessThanOrEqual(50);
    // Inside the script: reads GET×3 (idempotency, rate window, sequence), HMGET,
    // XLEN; writes SET (sequence), XADD, SET or INCR (rate window), HINCRBY, SET
    // (idempotency record).
    const {
      set = 0,
      incr = 0,
      pexpire = 0,
      ...rest
    } = tally(seen.filter((c) => c.source === 'lua'));
    expect(rest).toEqual({ get: 150, hmget: 50, xlen: 50, xadd: 50, hincrby: 50 });
    // The day's counters get their expiry with the first event of a source that day only.
    expect(pexpire).toBeLessThanOrEqual(1);
    expect(set + incr).toBe(150);
    expect(set).toBeGreaterThanOrEqual(100);
  });

  it('serves /healthz and /readyz', async () => {
    expect((await fetch(`${fn.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${fn.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok' });
  });
});

describe('ingest with INGEST_API_KEYS', () => {
  const stream = unique('test:auth');
  let fn: FunctionProcess;
  beforeAll(async () => {
    fn = await startFunction('ingest', {
      ...isolated,
      STREAM_KEY: stream,
      INGEST_API_KEYS: 'k-one, k-two, k-shop=/shop/, k-shop=/store/',
    });
  });
  afterAll(async () => {
    await fn.kill();
    await redis.del(stream);
  });

  it('holds a key bound to source prefixes to them: 403 for any other source, nothing written', async () => {
    const auth = { authorization: 'Bearer k-shop' };
    const ok = await postJson(`${fn.url}/events`, { type: 't', source: '/shop/eu', data: 1 }, auth);
    const also = await postJson(
      `${fn.url}/events`,
      { type: 't', source: '/store/x', data: 1 },
      auth,
    );
    expect([ok.status, also.status]).toEqual([202, 202]);
    const before = await footprint(stream);
    for (const source of ['/billing', '/sho', undefined]) {
      const res = await postJson(`${fn.url}/events`, { type: 't', source, data: 1 }, auth);
      expect(res.status).toBe(403);
      expect(res.body.error).toBe('source_forbidden');
      expect(String(res.body.detail)).toContain('"/shop/" or "/store/"');
    }
    // a CloudEvent too: its source is the identity another tenant's events would collide with
    const ce = await postJson(
      `${fn.url}/events`,
      { a: 1 },
      { ...auth, 'ce-specversion': '1.0', 'ce-id': 'x', 'ce-type': 't', 'ce-source': '/billing' },
    );
    expect(ce.status).toBe(403);
    expect(await footprint(stream)).toBe(before);
    // unbound keys post any source
    expect(
      (
        await postJson(
          `${fn.url}/events`,
          { type: 't', source: '/billing', data: 1 },
          { authorization: 'Bearer k-one' },
        )
      ).status,
    ).toBe(202);
  });

  it('answers 401 without a token or with a wrong one, and changes nothing', async () => {
    const before = await footprint(stream);
    for (const headers of [
      {} as Record<string, string>,
      { authorization: 'Bearer nope' },
      { authorization: 'Basic k-one' },
      { authorization: 'Bearer k-one-extra' },
    ]) {
      const res = await postJson(`${fn.url}/events`, { type: 't', data: 1 }, headers);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('unauthorized');
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect(await footprint(stream)).toBe(before);
  });

  it('accepts every configured key', async () => {
    const before = await redis.xlen(stream);
    for (const key of ['k-one', 'k-two']) {
      expect(
        (
          await postJson(
            `${fn.url}/events`,
            { type: 't', data: 1 },
            { authorization: `Bearer ${key}` },
          )
        ).status,
      ).toBe(202);
    }
    expect(await redis.xlen(stream)).toBe(before + 2);
  });

  it('scopes an Idempotency-Key to its API key: another client with the same key is another event', async () => {
    const key = unique('shared-key');
    const alpha = await postJson(
      `${fn.url}/events`,
      { type: 'a.secret', data: { owner: 'alpha' } },
      { authorization: 'Bearer k-one', 'idempotency-key': key },
    );
    const beta = await postJson(
      `${fn.url}/events`,
      { type: 'b.other', data: { owner: 'beta' } },
      { authorization: 'Bearer k-two', 'idempotency-key': key },
    );
    expect([alpha.status, beta.status]).toEqual([202, 202]);
    expect(beta.headers.get('idempotent-replay')).toBeNull();
    expect(beta.body.id).not.toBe(alpha.body.id);
    // Alpha again, same request: its own first answer.
    const again = await postJson(
      `${fn.url}/events`,
      { type: 'a.secret', data: { owner: 'alpha' } },
      { authorization: 'Bearer k-one', 'idempotency-key': key },
    );
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replay')).toBe('true');
    expect(again.body).toEqual(alpha.body);
  });

  it('answers 422 to a key reused for a different request, and writes nothing', async () => {
    const key = unique('reused');
    const headers = { authorization: 'Bearer k-one', 'idempotency-key': key };
    const first = await postJson(`${fn.url}/events`, { type: 't', data: 1 }, headers);
    expect(first.status).toBe(202);
    const before = await footprint(stream);
    const other = await postJson(`${fn.url}/events`, { type: 't', data: 2 }, headers);
    expect(other.status).toBe(422);
    expect(other.body.error).toBe('idempotency_key_reused');
    expect(await footprint(stream)).toBe(before);
  });
});

describe('ingest behind proxies (TRUSTED_PROXY_HOPS)', () => {
  const stream = unique('test:proxies');
  let direct: FunctionProcess;
  let proxied: FunctionProcess;
  beforeAll(async () => {
    const env = { ...isolated, STREAM_KEY: stream, RATE_LIMIT_PER_SEC: '3' };
    direct = await startFunction('ingest', env);
    proxied = await startFunction('ingest', { ...env, TRUSTED_PROXY_HOPS: '1' });
  });
  afterAll(async () => {
    await direct.kill();
    await proxied.kill();
    await redis.del(stream);
  });

  const burst = async (url: string, forwardedFor: (i: number) => string) => {
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
    const statuses = [];
    for (let i = 0; i < 6; i++)
      statuses.push(
        (
          await postJson(
            `${url}/events`,
            { type: 't', data: i },
            { 'x-forwarded-for': forwardedFor(i) },
          )
        ).status,
      );
    return statuses;
  };

  it('does not take a client-written X-Forwarded-For for the client (no trusted proxy)', async () => {
    // Each request claims another address; the limit still counts the one real peer.
    expect(await burst(direct.url, (i) => `203.0.113.${i}`)).toEqual([
      202, 202, 202, 429, 429, 429,
    ]);
  });

  it('takes the address the trusted proxy appended, never what the client wrote before it', async () => {
    // The client forges the left part; the proxy appended 198.51.100.7 each time.
    expect(await burst(proxied.url, (i) => `203.0.113.${i}, 198.51.100.7`)).toEqual([
      202, 202, 202, 429, 429, 429,
    ]);
    // Two real clients behind the proxy are two clients.
    expect(await burst(proxied.url, (i) => `198.51.100.${i % 2}`)).toEqual([
      202, 202, 202, 202, 202, 202,
    ]);
  });
});

describe('ingest limits', () => {
  const stream = unique('test:limits');
  let fn: FunctionProcess;
  beforeAll(async () => {
    fn = await startFunction('ingest', {
      ...isolated,
      STREAM_KEY: stream,
      RATE_LIMIT_PER_SEC: '5',
      MAX_BACKLOG: '12',
    });
  });
  afterAll(async () => {
    await fn.kill();
    await redis.del(stream);
  });

  it('answers 429 with Retry-After past RATE_LIMIT_PER_SEC in one second, writing nothing for it', async () => {
    // Start just after a second boundary so all requests share one window.
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
    const answers = [];
    for (let i = 0; i < 8; i++)
      answers.push(await postJson(`${fn.url}/events`, { type: 't', data: i }));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202, 429, 429, 429]);
    expect(answers[5]?.body.error).toBe('rate_limited');
    expect(answers[5]?.headers.get('retry-after')).toBe('1');
    expect(await redis.xlen(stream)).toBe(5);
  });

  it('answers 503 with Retry-After once the backlog reaches MAX_BACKLOG, writing nothing', async () => {
    for (let i = 0; i < 7; i++) await redis.xadd(stream, '*', 'filler', String(i));
    expect(await redis.xlen(stream)).toBe(12);
    await new Promise((r) => setTimeout(r, 1100));
    const before = await footprint(stream);
    const res = await postJson(`${fn.url}/events`, { type: 't', data: 1 });
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('backlog_full');
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await footprint(stream)).toBe(before);
  });

  it('honours a per-source setting that disables the source (403) or overrides the rate', async () => {
    await redis.xtrim(stream, 'MAXLEN', 0);
    const source = unique('/src');
    await redis.hset(sourceSettingsKey(source), 'disabled', '1');
    const refused = await postJson(`${fn.url}/events`, { type: 't', source, data: 1 });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('source_disabled');
    await redis.hset(sourceSettingsKey(source), 'disabled', '0', 'rateLimitPerSec', '1');
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
    const first = await postJson(`${fn.url}/events`, { type: 't', source, data: 1 });
    const second = await postJson(`${fn.url}/events`, { type: 't', source, data: 2 });
    expect([first.status, second.status]).toEqual([202, 429]);
    // Today's counters count it once, under its source.
    expect(await redis.hget(countersKey(Date.now()), source)).toBe('1');
    await redis.hdel(countersKey(Date.now()), source);
    await redis.del(sourceSettingsKey(source));
  });
});

describe('ingest when Redis fails', () => {
  it('answers 503 (never 202) when Redis is unreachable, and /readyz says not ready', async () => {
    const fn = await startFunction('ingest', { REDIS_URL: 'redis://127.0.0.1:1' }, '/healthz');
    try {
      const res = await postJson(`${fn.url}/events`, { type: 't', data: 1 });
      expect(res.status).toBe(503);
      expect(res.body.error).toBe('unavailable');
      expect((await fetch(`${fn.url}/readyz`)).status).toBe(503);
    } finally {
      await fn.kill();
    }
  });

  it('answers 503 when Redis is slower than REDIS_TIMEOUT_MS', async () => {
    const stream = unique('test:slow');
    const fn = await startFunction('ingest', {
      ...isolated,
      STREAM_KEY: stream,
      REDIS_TIMEOUT_MS: '200',
    });
    try {
      await redis.client('PAUSE', 1000, 'ALL');
      const started = Date.now();
      const res = await postJson(
        `${fn.url}/events`,
        { type: 't', data: 1 },
        { 'idempotency-key': unique('slow') },
      );
      expect(res.status).toBe(503);
      expect(res.body.error).toBe('unavailable');
      expect(Date.now() - started).toBeLessThan(900);
    } finally {
      await redis.client('UNPAUSE');
      await fn.kill();
      await redis.del(stream);
    }
  });

  it("answers 202 for an event Redis took in time, though ingest itself was held past REDIS_TIMEOUT_MS before it read Redis's reply", async () => {
    const stream = unique('test:held');
    const fn = await startFunction('ingest', {
      ...isolated,
      STREAM_KEY: stream,
      REDIS_TIMEOUT_MS: '1000',
    });
    const pid = fn.proc.pid as number;
    try {
      // The connection's first append checks the receipts' epoch first: done before.
      expect((await postJson(`${fn.url}/events`, { type: 't', data: 'first' })).status).toBe(202);
      // Redis holds the script 300 ms, then answers at once; ingest is stopped
      // from 100 ms to 1,600 ms, so the reply waits in its socket while its
      // timeout's second passes (as in a process starved of CPU).
      await redis.client('PAUSE', 300, 'WRITE');
      const answer = postJson(`${fn.url}/events`, { type: 't', data: 'held' });
      await new Promise((r) => setTimeout(r, 100));
      process.kill(pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 1500));
      expect(await redis.xlen(stream)).toBe(2);
      process.kill(pid, 'SIGCONT');
      const res = await answer;
      expect(res.status).toBe(202);
      expect(await redis.xlen(stream)).toBe(2);
    } finally {
      process.kill(pid, 'SIGCONT');
      await fn.kill();
      await redis.del(stream);
    }
  });
});

describe('ingest on SIGTERM', () => {
  it('stops accepting, answers every request in flight, and exits 0', async () => {
    const stream = unique('test:term');
    const fn = await startFunction('ingest', {
      ...isolated,
      STREAM_KEY: stream,
      REDIS_TIMEOUT_MS: '5000',
    });
    // Hold Redis so the requests are surely in flight when the signal arrives.
    await redis.client('PAUSE', 700, 'WRITE');
    const pending = Array.from({ length: 100 }, (_, i) =>
      postJson(`${fn.url}/events`, { type: 't', data: i }),
    );
    await new Promise((r) => setTimeout(r, 300));
    const exit = fn.kill('SIGTERM');
    const answers = await Promise.all(pending);
    expect(answers.map((a) => a.status)).toEqual(Array(100).fill(202));
    expect(await exit).toBe(0);
    expect(await redis.xlen(stream)).toBe(100);
    await expect(fetch(`${fn.url}/healthz`)).rejects.toThrow();
    await redis.del(stream);
  });
});
