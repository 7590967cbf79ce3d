/**
 * Ingest's labelled counter has a series for every status it answers with from
 * the start, at 0, so that a dashboard panel says 0, not "No data". Built in
 * this process against the real Redis; nothing is posted.
 */
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePromText } from '../../bench/prom-text.js';
import { loadIngestConfig } from '../../functions/ingest/config.js';
import { createIngest } from '../../functions/ingest/ingest.js';
import { ERROR_STATUS } from '../../functions/shared/http.js';
import { createLogger } from '../../functions/shared/logger.js';
import { redisClient, unique } from '../support/helpers.js';

const redis = redisClient();
afterAll(() => redis.disconnect());

describe('ingest metrics', () => {
  it('start every status ingest answers with at 0', async () => {
    const registry = new Registry();
    const config = loadIngestConfig({ ...process.env, STREAM_KEY: unique('metrics:events') });
    const ingest = createIngest(config, {
      redis: redis.duplicate(),
      registry,
      log: createLogger('test', 'silent'),
    });
    try {
      const requests = parsePromText(await registry.metrics()).filter(
        (s) => s.name === 'spillway_ingest_requests_total',
      );
      const statuses = new Map(requests.map((s) => [s.labels.status, s.value]));
      for (const status of [200, 201, 202, 400, 401, 403, 404, 413, 415, 422, 429, 503, 500])
        expect(statuses.get(String(status)), `status ${status}`).toBe(0);
      // Nothing else: each series is one status of the catalogue, or a success.
      const known = new Set([200, 201, 202, ...Object.values(ERROR_STATUS)].map(String));
      expect([...statuses.keys()].filter((s) => !known.has(s as string))).toEqual([]);
    } finally {
      await ingest.shutdown?.();
    }
  });
});
