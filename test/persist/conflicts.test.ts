/**
 * Two events under one (source, id): CloudEvents says the same source and id
 * are the same event, so the first stored stays and the second is a duplicate.
 * When the second's content differs, that is no retry but a collision (another
 * producer's id): it is counted apart (spillway_persist_conflicts_total) and
 * kept in events_conflicts for an operator; a true duplicate is not.
 */
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleValue } from '../../bench/prom-text.js';
import { eventId } from '../../functions/shared/document.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  postJson,
  redisClient,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';

describe('an event id posted again', () => {
  const stream = unique('test:conflicts');
  const database = unique('t_conflicts').replace(/-/g, '_');
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
    [ingest, persist] = await Promise.all([
      startFunction('ingest', env),
      startFunction('persist', env),
    ]);
  });
  afterAll(async () => {
    await Promise.all([ingest?.kill('SIGKILL'), persist?.kill('SIGKILL')]);
    await redis.del(stream);
    await mongo.db(database).dropDatabase();
    await mongo.close();
    redis.disconnect();
  });

  const post = (id: string, data: unknown) =>
    postJson(
      `${ingest.url}/events`,
      { specversion: '1.0', id, source: '/shop', type: 'order.created', data },
      { 'content-type': 'application/cloudevents+json' },
    );
  const drained = () =>
    waitFor(
      async () => (await redis.xlen(stream)) === 0,
      30_000,
      () => 'the stream did not drain',
    );
  const metric = async (name: string) => sampleValue(await metricsOf(persist), name);

  it('keeps the first, and a second with other content in events_conflicts, counted apart', async () => {
    const id = unique('order');
    expect((await post(id, { total: 42 })).status).toBe(202);
    await drained();
    // the same event again (a producer's retry without an Idempotency-Key): a duplicate, no conflict
    expect((await post(id, { total: 42 })).status).toBe(202);
    await drained();
    expect(await metric('spillway_persist_conflicts_total')).toBe(0);
    expect(await metric('spillway_persist_duplicates_total')).toBe(1);
    // another event under the same (source, id)
    expect((await post(id, { total: 99, note: 'another producer' })).status).toBe(202);
    await drained();
    const events = mongo.db(database).collection('events');
    expect(await events.countDocuments({ '_id.id': id })).toBe(1);
    expect((await events.findOne({ _id: eventId('/shop', id) as never }))?.data).toEqual({
      total: 42,
    });
    expect(await metric('spillway_persist_conflicts_total')).toBe(1);
    const [conflict, ...more] = await mongo
      .db(database)
      .collection('events_conflicts')
      .find()
      .toArray();
    expect(more).toEqual([]);
    expect(conflict?.event).toEqual({ source: '/shop', id });
    const raw = JSON.parse(String(conflict?.raw)) as string[];
    expect(JSON.parse(raw[raw.indexOf('data') + 1] as string)).toEqual({
      total: 99,
      note: 'another producer',
    });
    expect(conflict?.storedStreamId).toBe(
      (await events.findOne({ _id: eventId('/shop', id) as never }))?.streamId,
    );
  });
});
