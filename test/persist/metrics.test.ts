/**
 * Persist's labelled counters have a series for every label they are known to
 * take from the start, at 0, so that a dashboard panel says 0, not "No data".
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parsePromText } from '../../bench/prom-text.js';
import { createPersistMetrics } from '../../functions/persist/metrics.js';

describe('persist metrics', () => {
  it('start every known label of its labelled counters at 0', async () => {
    const registry = new Registry();
    createPersistMetrics(registry);
    const samples = parsePromText(await registry.metrics());
    const sampleOf = (name: string, labels: Record<string, string>) =>
      samples.find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )?.value;
    const expected: Array<[string, Record<string, string>]> = [
      ...['refused', 'unavailable', 'unknown', 'unexpected', 'split'].map(
        (reason) =>
          ['spillway_persist_batch_failures_total', { reason }] as [string, Record<string, string>],
      ),
      ['spillway_persist_events_total', { intake: 'push' }],
      ['spillway_persist_events_total', { intake: 'pull' }],
      ...['events', 'events_dead', 'events_conflicts'].map(
        (collection) =>
          ['spillway_persist_write_commands_total', { collection }] as [
            string,
            Record<string, string>,
          ],
      ),
    ];
    for (const [name, labels] of expected)
      expect(sampleOf(name, labels), `${name} ${JSON.stringify(labels)}`).toBe(0);
  });
});
