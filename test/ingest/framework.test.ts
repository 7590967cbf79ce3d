/**
 * The functions are Functions Framework functions: the framework's own server
 * (getTestServer, the server its CLI builds for `--target`) runs the registered
 * `ingest` and `persist` unchanged.
 */
import type { AddressInfo } from 'node:net';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFields } from '../../functions/shared/entry.js';
import type { SpillwayFunction } from '../../functions/shared/function.js';
import { mongoUrl, redisClient, sourceDelivery, unique } from '../support/helpers.js';

const stream = unique('test:ff');
const dbName = unique('t_ff').replace(/-/g, '_');
const functions: SpillwayFunction[] = [];
const redis = redisClient();

async function listen(name: string): Promise<{ url: string; close(): void }> {
  const server = getTestServer(name);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => server.close(),
  };
}

beforeAll(async () => {
  process.env.STREAM_KEY = stream;
  process.env.MONGODB_DB = dbName;
  process.env.LOG_LEVEL = 'warn';
  process.env.METRICS_PORT = '0';
  functions.push((await import('../../functions/ingest/index.js')).ingest);
  functions.push((await import('../../functions/persist/index.js')).persist);
});

afterAll(async () => {
  for (const fn of functions) await fn.shutdown();
  await redis.del(stream);
  const mongo = await new MongoClient(mongoUrl()).connect();
  await mongo.db(dbName).dropDatabase();
  await mongo.close();
  await redis.quit();
});

describe('under the Functions Framework server', () => {
  it('ingest answers 202 and appends the entry; bad fields get its JSON 400', async () => {
    const server = await listen('ingest');
    try {
      await new Promise((r) => setTimeout(r, 300));
      const ok = await fetch(`${server.url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'ff', data: { a: 1 } }),
      });
      expect(ok.status).toBe(202);
      const { id } = (await ok.json()) as { id: string };
      const [, fields] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0] as [
        string,
        string[],
      ];
      expect(fields[1]).toBe(id);
      const bad = await fetch(`${server.url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data: 1 }),
      });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ error: 'invalid_field' });
    } finally {
      server.close();
    }
  });

  it('persist commits a RedisStreamSource CloudEvent and answers 2xx', async () => {
    const server = await listen('persist');
    try {
      const fields = entryFields({
        id: unique('ff'),
        type: 't',
        source: '/ff',
        subject: '',
        time: new Date().toISOString(),
        seq: 1,
        data: '{"b":2}',
      });
      const streamId = (await redis.xadd(stream, '*', ...fields)) as string;
      const res = await fetch(server.url, sourceDelivery(streamId, fields));
      expect(res.status).toBeGreaterThanOrEqual(200);
      expect(res.status).toBeLessThan(300);
      const mongo = await new MongoClient(mongoUrl()).connect();
      expect(
        await mongo
          .db(dbName)
          .collection('events')
          .findOne({ _id: { source: '/ff', id: fields[1] } as never }),
      ).toMatchObject({ data: { b: 2 }, streamId });
      await mongo.close();
    } finally {
      server.close();
    }
  });
});
