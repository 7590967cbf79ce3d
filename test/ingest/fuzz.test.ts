/**
 * Fuzzing the public edge with fast-check (seeded: FUZZ_SEED reproduces a run,
 * FUZZ_RUNS sets its size). Every answer is a 2xx, or a 4xx with a JSON error;
 * never a 5xx, never a dropped connection; and a 4xx writes nothing to Redis
 * (counted from Redis's own per-command statistics around each request).
 */
import { request } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type FunctionProcess,
  redisClient,
  redisUrl,
  startFunction,
  unique,
} from '../support/helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_128);
const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const DB = 13;
const redis = redisClient();
let fn: FunctionProcess;
let port = 0;

beforeAll(async () => {
  await redis.select(DB);
  await redis.flushdb();
  fn = await startFunction('ingest', {
    REDIS_URL: `${redisUrl()}/${DB}`,
    STREAM_KEY: unique('test:fuzz'),
    MAX_BODY_BYTES: String(64 * 1024),
  });
  port = Number(new URL(fn.url).port);
});
afterAll(async () => {
  await fn?.kill('SIGKILL');
  await redis.flushdb();
  redis.disconnect();
});

/** Calls of the write commands Redis has run so far (scripts' own commands included). */
async function writesSoFar(): Promise<number> {
  const info = await redis.info('commandstats');
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_(set|incr|xadd|hincrby|pexpire|del|hset):calls=(\d+)/gm))
    total += Number(m[2]);
  return total;
}

interface Answer {
  status: number;
  body: string;
  contentType: string;
}

/** One raw HTTP request (header values as bytes: nothing is cleaned on the way). */
function send(headers: Record<string, string>, body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/events',
        headers: { ...headers, 'content-length': String(body.length) },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            contentType: String(res.headers['content-type'] ?? ''),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const text = (value: string) => Buffer.from(value, 'utf8');
const json = (value: unknown) => text(JSON.stringify(value));

/** Deep nesting, around the storable limit. */
const deep = fc
  .integer({ min: 1, max: 200 })
  .map((depth) => text(`{"type":"t","data":${'['.repeat(depth)}1${']'.repeat(depth)}}`));

const contentTypes = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 8 },
  fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'application/cloudevents+json',
    'application/cloudevents-batch+json',
    'application/vnd.api+json',
    'text/plain',
    'application/octet-stream',
    '',
  ),
  fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
);

const bodies = fc.oneof(
  // A plain event with any JSON data, keys of every kind included.
  {
    arbitrary: fc
      .record({ type: fc.string({ minLength: 1, maxLength: 20 }), data: fc.jsonValue() })
      .map(json),
    weight: 8,
  },
  fc
    .record({
      type: fc.string({ maxLength: 300 }),
      source: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
      subject: fc.oneof(fc.string(), fc.constant([])),
      data: fc.dictionary(
        fc.oneof(
          fc.string(),
          fc.constantFrom('__proto__', 'a.b', '$x', '\u0000', '%', 'constructor'),
        ),
        fc.jsonValue(),
      ),
    })
    .map(json),
  // Any JSON at all, and any text, and any bytes (invalid UTF-8 too).
  fc.jsonValue().map(json),
  fc.string({ unit: 'binary', maxLength: 200 }).map(text),
  fc.uint8Array({ maxLength: 400 }).map((bytes) => Buffer.from(bytes)),
  // Lone surrogates, written as JSON escapes.
  fc.constantFrom('\\ud800', '\\udfff', '\\ud83d').map((s) => text(`{"type":"t","data":"${s}"}`)),
  deep,
  // Huge arrays, up to and over the body cap.
  fc
    .integer({ min: 1_000, max: 40_000 })
    .map((n) => text(`{"type":"t","data":[${'1,'.repeat(n)}1]}`)),
  // Structured CloudEvents, wrong and right.
  fc
    .record({
      specversion: fc.constantFrom('1.0', '0.3', '2.0', ''),
      id: fc.oneof(fc.string({ maxLength: 300 }), fc.integer()),
      source: fc.string({ maxLength: 30 }),
      type: fc.string({ maxLength: 30 }),
      time: fc.oneof(fc.constant('2026-11-28T06:00:00Z'), fc.string({ maxLength: 30 })),
      data: fc.jsonValue(),
      data_base64: fc.option(fc.base64String(), { nil: undefined }),
    })
    .map(json),
  // Numbers no double holds.
  fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }).map((n) => text(`{"type":"t","data":${n}}`)),
);

const ceHeaders = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 3 },
  fc.record(
    {
      'ce-specversion': fc.constantFrom('1.0', '0.3', 'x'),
      'ce-id': fc.string({ maxLength: 400 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x')),
      'ce-type': fc.string({ maxLength: 20 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x')),
      'ce-source': fc.string({ maxLength: 20 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x')),
      'ce-time': fc.string({ maxLength: 30 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x')),
    },
    { requiredKeys: [] },
  ),
);

describe('fuzzing ingest', () => {
  it(`answers ${RUNS} generated requests with a 2xx or a JSON 4xx, and a 4xx writes nothing`, async () => {
    let accepted = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(
        bodies,
        contentTypes,
        ceHeaders,
        fc.option(
          fc.string({ minLength: 1, maxLength: 300 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'k')),
          { nil: undefined },
        ),
        async (body, contentType, ce, key) => {
          const headers: Record<string, string> = { ...(ce ?? {}) };
          if (contentType !== '') headers['content-type'] = contentType;
          if (key !== undefined) headers['idempotency-key'] = key;
          const before = await writesSoFar();
          const answer = await send(headers, body);
          if (answer.status >= 200 && answer.status < 300) {
            accepted++;
            return;
          }
          refused++;
          expect(answer.status, answer.body).toBeGreaterThanOrEqual(400);
          expect(answer.status, answer.body).toBeLessThan(500);
          expect(answer.contentType).toBe('application/json');
          const error = JSON.parse(answer.body) as { error: unknown; detail: unknown };
          expect(typeof error.error).toBe('string');
          expect(typeof error.detail).toBe('string');
          expect(await writesSoFar(), `${answer.status} ${answer.body} wrote to Redis`).toBe(
            before,
          );
        },
      ),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    // Both sides were exercised: the generators make valid and invalid requests.
    expect(accepted).toBeGreaterThan(RUNS / 20);
    expect(refused).toBeGreaterThan(RUNS / 20);
  }, 600_000);
});
