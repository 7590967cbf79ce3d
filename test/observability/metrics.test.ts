/**
 * The operators' view holds together: every metric a dashboard panel or an alert
 * rule reads is exported by ingest or persist (real processes, after real
 * events), every panel's queries are answered by a real Prometheus scraping
 * them (names read from its parse_query, values from its query_range), and the alert
 * rules are a valid PrometheusRule (promtool checks and unit-tests them:
 * test/observability/alerts.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { exportedSeriesNames, parsePromText } from '../../bench/prom-text.js';
import { type Prometheus, startPrometheus, withGrafanaVariables } from '../../bench/prometheus.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  portsOf,
  postJson,
  redisClient,
  sourceDelivery,
  startFunction,
  unique,
  waitFor,
} from '../support/helpers.js';

const ROOT = join(import.meta.dirname, '..', '..');

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}
const dashboard = JSON.parse(
  readFileSync(join(ROOT, 'observability', 'grafana-dashboard.json'), 'utf8'),
) as { uid: string; title: string; panels: Panel[] };
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const ruleFile = parse(readFileSync(join(ROOT, 'observability', 'alerts.yaml'), 'utf8')) as {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: { groups: { name: string; interval?: string; rules: Rule[] }[] };
};
const rules = ruleFile.spec.groups.flatMap((g) => g.rules);

/** A real Prometheus (bench/prometheus.ts) scraping ingest and persist, started below. */
let prometheus: Prometheus;
afterAll(() => prometheus?.stop());

/** Prometheus's own parse of an expression (/api/v1/parse_query): its tree as JSON. */
async function parseQuery(expr: string): Promise<unknown> {
  const res = await fetch(`${prometheus.url}/api/v1/parse_query`, {
    method: 'POST',
    body: new URLSearchParams({ query: expr }),
  });
  const body = (await res.json()) as { status: string; data: unknown; error?: string };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data;
}

/** The metric names a parsed expression selects (its __name__ matchers). */
function metricNames(node: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(node)) for (const item of node) metricNames(item, into);
  else if (node && typeof node === 'object') {
    const { matchers } = node as { matchers?: { name: string; type: string; value: string }[] };
    for (const m of matchers ?? []) if (m.name === '__name__' && m.type === '=') into.add(m.value);
    for (const value of Object.values(node)) metricNames(value, into);
  }
  return into;
}

/** Where each metric name is used: "panel <title>" / "alert <name>". */
async function usedNames(): Promise<Map<string, string[]>> {
  const uses = new Map<string, string[]>();
  const add = async (expr: string, where: string) => {
    for (const name of metricNames(await parseQuery(withGrafanaVariables(expr))))
      uses.set(name, [...(uses.get(name) ?? []), where]);
  };
  for (const panel of panels)
    for (const target of panel.targets ?? []) await add(target.expr, `panel "${panel.title}"`);
  for (const rule of rules) await add(rule.expr, `alert ${rule.alert ?? rule.record}`);
  return uses;
}

describe('the operators dashboard and alert rules', () => {
  let ingest: FunctionProcess;
  let persist: FunctionProcess;
  let redis: Redis;
  let mongo: MongoClient;
  const stream = unique('obs:events');
  const dbName = unique('obs').replaceAll('-', '_');
  const scrapes: { at: number; texts: string[] }[] = [];
  let startMs = 0;

  beforeAll(async () => {
    redis = redisClient();
    mongo = await new MongoClient(mongoUrl()).connect();
    // The source's consumer group, as RedisStreamSource makes it: without one,
    // persist's pull intake takes the whole stream itself (nothing else reads it).
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '$', 'MKSTREAM');
    const env = { STREAM_KEY: stream, MONGODB_DB: dbName, CATCHUP_BACKLOG: '100000' };
    [ingest, persist] = await Promise.all([
      startFunction('ingest', env),
      startFunction('persist', env),
    ]);
    const metricsUrl = (fn: FunctionProcess) =>
      `http://127.0.0.1:${portsOf(fn).METRICS_PORT}/metrics`;
    prometheus = await startPrometheus({
      ingest: [metricsUrl(ingest)],
      persist: [metricsUrl(persist)],
    });
    startMs = Date.now();
    const scrape = async () => {
      scrapes.push({ at: Date.now(), texts: [await metricsOf(ingest), await metricsOf(persist)] });
      await prometheus.scrapedSince(Date.now()); // Prometheus has this state too
    };
    // A few events, through ingest and then delivered to persist as the source would,
    // in two rounds a second apart (a rate needs two samples of a series).
    const round = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const res = await postJson(`${ingest.url}/events`, {
          type: 'obs.test',
          source: '/obs',
          subject: `s-${i}`,
          data: { i },
        });
        expect(res.status).toBe(202);
      }
      const entries = await redis.xrange(stream, '-', '+');
      expect(entries).toHaveLength(to - from);
      for (const [id, fields] of entries) {
        const res = await fetch(persist.url, sourceDelivery(id, fields));
        expect(res.status).toBeLessThan(300);
      }
      await waitFor(
        async () => (await redis.xlen(stream)) === 0,
        10_000,
        () => 'the delivered entries are still in the stream',
      );
      await scrape();
    };
    await round(0, 2);
    await new Promise((r) => setTimeout(r, 1100));
    await round(2, 5);
  });

  afterAll(async () => {
    await Promise.all([ingest?.kill(), persist?.kill()]);
    await redis?.del(stream);
    await mongo?.db(dbName).dropDatabase();
    await mongo?.close();
    redis?.disconnect();
  });

  it('reads only metrics that ingest or persist export', async () => {
    const last = scrapes.at(-1)?.texts ?? [];
    const exported = new Set(last.flatMap((text) => [...exportedSeriesNames(text)]));
    // The events went through: their series are there, not only declared.
    expect(last[0]).toMatch(/^spillway_ingest_requests_total\{status="202"\} 5$/m);
    const persisted = parsePromText(last[1] ?? '')
      .filter((sample) => sample.name === 'spillway_persist_events_total')
      .reduce((sum, sample) => sum + sample.value, 0);
    expect(persisted).toBe(5);
    const uses = await usedNames();
    expect(uses.size).toBeGreaterThan(10);
    const missing = [...uses]
      .filter(([name]) => !exported.has(name))
      .map(([name, where]) => `${name} (${[...new Set(where)].join(', ')})`);
    expect(missing, 'metrics read by the dashboard or the alerts but exported by neither').toEqual(
      [],
    );
  });

  it('covers what an operator needs', async () => {
    const uses = await usedNames();
    for (const name of [
      'spillway_ingest_requests_total',
      'spillway_ingest_request_seconds_bucket',
      'spillway_persist_backlog_entries',
      'spillway_persist_lag_seconds_bucket',
      'spillway_persist_batch_docs_bucket',
      'spillway_persist_write_commands_total',
      'spillway_persist_write_budget_per_sec',
      'spillway_persist_write_rate_per_sec',
      'spillway_persist_write_latency_seconds_bucket',
      'spillway_persist_dead_letters_total',
      'spillway_persist_events_total',
      'spillway_persist_parked_total',
      'spillway_persist_deadline_misses_total',
      'spillway_persist_duplicates_total',
      'spillway_persist_refused_deliveries_total',
      'spillway_ingest_status_reads_total',
      'spillway_ingest_wait_outcomes_total',
      'spillway_ingest_waiters',
      'spillway_persist_drain_rate_per_sec',
    ])
      expect(uses.has(name), name).toBe(true);
    expect(
      panels.some((p) => p.targets?.some((t) => t.expr.includes('intake="pull"'))),
      'a catch-up/sweeper panel',
    ).toBe(true);
  });

  it("answers every panel's queries over what the functions exported", async () => {
    const endMs = Date.now();
    const query = (expr: string) =>
      prometheus.queryRange(withGrafanaVariables(expr, '10s'), startMs, endMs, 1);
    let series = 0;
    for (const panel of panels)
      for (const target of panel.targets ?? []) series += (await query(target.expr)).length;
    // Rates over the scrapes exist (ingress by status at least).
    expect(series).toBeGreaterThan(0);
    const ingress = await query(
      panels.find((p) => p.title === 'Ingress by status')?.targets?.[0]?.expr ?? '',
    );
    expect(ingress.find((s) => s.labels.status === '202')?.points.at(-1)?.v).toBeGreaterThan(0);
  });

  it('is a valid Grafana dashboard', () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    const ids = panels.map((p) => (p as unknown as { id: number }).id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      if (panel.type === 'row') continue;
      const gridPos = (panel as unknown as { gridPos: { w: number; x: number } }).gridPos;
      expect(gridPos.x + gridPos.w, panel.title).toBeLessThanOrEqual(24);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
  });
});

describe('the PrometheusRule', () => {
  it('has the Prometheus Operator shape', async () => {
    expect(ruleFile.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(ruleFile.kind).toBe('PrometheusRule');
    expect(ruleFile.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(ruleFile.spec.groups.length).toBeGreaterThan(0);
    const names = new Set<string>();
    for (const group of ruleFile.spec.groups) {
      expect(group.name).toBeTruthy();
      for (const rule of group.rules) {
        expect(rule.alert, JSON.stringify(rule)).toMatch(/^[A-Z][A-Za-z0-9]+$/);
        expect(names.has(rule.alert as string), `${rule.alert} twice`).toBe(false);
        names.add(rule.alert as string);
        await expect(parseQuery(rule.expr), rule.alert).resolves.toBeTruthy();
        if (rule.for !== undefined) expect(rule.for).toMatch(/^([1-9]\d*(ms|s|m|h|d|w|y))+$/);
        expect(['warning', 'critical']).toContain(rule.labels?.severity);
        expect(rule.annotations?.summary, rule.alert).toBeTruthy();
        expect(rule.annotations?.description, rule.alert).toBeTruthy();
        expect(Object.keys(rule).sort()).toEqual(
          expect.arrayContaining(['alert', 'expr', 'labels', 'annotations']),
        );
      }
    }
  });

  it('alerts on the backlog, stalled deliveries, the lag, dead letters, the budget and ingest 5xx', () => {
    const find = (name: string) => rules.find((r) => r.alert === name) as Rule;
    expect(find('SpillwayBacklogGrowing').for).toBe('10m');
    expect(find('SpillwayBacklogGrowing').expr).toContain('spillway_persist_backlog_entries');
    expect(find('SpillwayLagHigh').expr).toMatch(
      /histogram_quantile\(0\.99,.*spillway_persist_lag_seconds_bucket/s,
    );
    expect(find('SpillwayDeadLetters').expr).toContain('spillway_persist_dead_letters_total');
    expect(find('SpillwayWriteBudgetSaturated').for).toBe('15m');
    expect(find('SpillwayWriteBudgetSaturated').expr).toContain(
      'spillway_persist_write_commands_total',
    );
    expect(find('SpillwayIngest5xx').expr).toContain('status=~"5.."');
    expect(find('SpillwayDeliveriesStalled').expr).toContain('spillway_persist_deliveries_total');
  });
});
