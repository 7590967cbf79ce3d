/**
 * The alert rules (observability/alerts.yaml) through promtool, built by the
 * suite's own path (scripts/tools.sh): `promtool check rules` on the rule file,
 * `promtool test rules` on observability/alerts.test.yaml (each alert fires on
 * series that mean it and stays quiet on look-alikes), and the stalled-source
 * alert over the series the real functions export while their source is silent
 * and while it delivers.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parsePromText } from '../../bench/prom-text.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';
import {
  type FunctionProcess,
  metricsOf,
  mongoUrl,
  postJson,
  redisClient,
  sourceDelivery,
  startFunction,
  unique,
} from '../support/helpers.js';
import { ROOT } from '../support/programs.js';
import { projectTool } from '../support/tools.js';

interface Rule {
  alert: string;
  expr: string;
  annotations?: Record<string, string>;
}
interface Group {
  name: string;
  rules: Rule[];
}
const ruleFile = parse(readFileSync(join(ROOT, 'observability', 'alerts.yaml'), 'utf8')) as {
  spec: { groups: Group[] };
};
const alerts = ruleFile.spec.groups.flatMap((g) => g.rules.map((r) => r.alert));

let promtool = '';
beforeAll(() => {
  // Built from the Go module proxy on first use: minutes.
  promtool = projectTool('promtool');
}, 900_000);

/** The rule groups as a plain Prometheus rule file, without annotations (alerts.test.yaml says why). */
function rulesFile(dir: string, groups: Group[] = ruleFile.spec.groups): string {
  const plain = structuredClone(groups);
  for (const group of plain) for (const rule of group.rules) delete rule.annotations;
  const file = join(dir, 'alerts.rules.yaml');
  writeFileSync(file, stringify({ groups: plain }));
  return file;
}

function promtoolRun(args: string[], cwd: string) {
  const out = spawnSync(promtool, args, { cwd, encoding: 'utf8' });
  return { status: out.status, output: out.stdout + out.stderr };
}

describe('promtool', () => {
  it('checks the rule file, templates included (and a broken rule fails)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-rules-'));
    const good = join(dir, 'rules.yaml');
    writeFileSync(good, stringify({ groups: ruleFile.spec.groups }));
    const ok = promtoolRun(['check', 'rules', good], dir);
    expect(ok.status, ok.output).toBe(0);
    expect(ok.output).toContain(`SUCCESS: ${alerts.length} rules found`);
    const broken = structuredClone(ruleFile.spec.groups);
    (broken[0]?.rules[0] as Rule).expr = 'sum(rate(spillway_persist_backlog_entries[5m]) >';
    writeFileSync(good, stringify({ groups: broken }));
    expect(promtoolRun(['check', 'rules', good], dir).status).not.toBe(0);
  });

  it('passes the unit tests, and every alert has one that fires and one that stays quiet', () => {
    const tests = parse(readFileSync(join(ROOT, 'observability', 'alerts.test.yaml'), 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts?: unknown[] }[] }[];
    };
    const checks = tests.tests.flatMap((t) => t.alert_rule_test);
    for (const alert of alerts) {
      const mine = checks.filter((c) => c.alertname === alert);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${alert} fires in a test`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${alert} stays quiet in a test`,
      ).toBe(true);
    }
    const dir = mkdtempSync(join(tmpdir(), 'spillway-rules-'));
    rulesFile(dir);
    copyFileSync(join(ROOT, 'observability', 'alerts.test.yaml'), join(dir, 'alerts.test.yaml'));
    const run = promtoolRun(['test', 'rules', 'alerts.test.yaml'], dir);
    expect(run.status, run.output).toBe(0);
    expect(run.output).toContain('SUCCESS');
    // The tests bite: an alert that fires whatever the deliveries fails them.
    const loose = structuredClone(ruleFile.spec.groups);
    for (const group of loose)
      for (const rule of group.rules)
        if (rule.alert === 'SpillwayDeliveriesStalled')
          rule.expr = rule.expr.replace('[5m])) == 0', '[5m])) >= 0');
    rulesFile(dir, loose);
    const failed = promtoolRun(['test', 'rules', 'alerts.test.yaml'], dir);
    expect(failed.status).not.toBe(0);
    expect(failed.output).toContain('SpillwayDeliveriesStalled');
  });
});

/**
 * Scrapes of real processes as promtool input series: scrape i is minute i
 * (time compressed: the rule's windows see the scrapes, not the seconds
 * between them). Only series present in every scrape are kept.
 */
function inputSeries(scrapes: Record<string, string>[]): { series: string; values: string }[] {
  const values = new Map<string, number[]>();
  scrapes.forEach((scrape, i) => {
    for (const [instance, text] of Object.entries(scrape))
      for (const sample of parsePromText(text)) {
        if (!Number.isFinite(sample.value)) continue;
        const labels = { ...sample.labels, instance };
        const key = `${sample.name}{${Object.entries(labels)
          .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
          .join(',')}}`;
        const list = values.get(key) ?? [];
        if (list.length === i) list.push(sample.value);
        values.set(key, list);
      }
  });
  return [...values]
    .filter(([, list]) => list.length === scrapes.length)
    .map(([series, list]) => ({ series, values: list.join(' ') }));
}

describe('SpillwayDeliveriesStalled over what the functions export', () => {
  let ingest: FunctionProcess;
  let persist: FunctionProcess;
  let redis: Redis;
  let mongo: MongoClient;
  const stream = unique('stall:events');
  const dbName = unique('stall').replaceAll('-', '_');

  beforeAll(async () => {
    redis = redisClient();
    mongo = await new MongoClient(mongoUrl()).connect();
    // The source's group, as RedisStreamSource makes it; entries stay unswept for the test.
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '$', 'MKSTREAM');
    const env = {
      STREAM_KEY: stream,
      MONGODB_DB: dbName,
      CATCHUP_BACKLOG: '100000',
      STALE_AFTER_MS: '3600000',
      // One document a write: a grant fills its write from the stream's front, and a
      // delivery would otherwise take every entry with it; so the backlog grows.
      MAX_BATCH_DOCS: '1',
    };
    [ingest, persist] = await Promise.all([
      startFunction('ingest', env),
      startFunction('persist', env),
    ]);
  });

  afterAll(async () => {
    await Promise.all([ingest?.kill(), persist?.kill()]);
    await redis?.del(stream);
    await mongo?.db(dbName).dropDatabase();
    await mongo?.close();
    redis?.disconnect();
  });

  /** 14 rounds of 3 accepted events; with `deliver`, the source delivers one of each round's. */
  async function scrapes(deliver: boolean): Promise<Record<string, string>[]> {
    const out: Record<string, string>[] = [];
    let last = '-';
    for (let round = 0; round < 14; round++) {
      for (let i = 0; i < 3; i++) {
        const res = await postJson(`${ingest.url}/events`, {
          type: 'stall.test',
          subject: `r${round}-${i}`,
          data: { round, i },
        });
        expect(res.status).toBe(202);
      }
      const fresh = await redis.xrange(stream, last === '-' ? '-' : `(${last}`, '+');
      last = fresh.at(-1)?.[0] ?? last;
      if (deliver) {
        const [id, fields] = fresh[0] as [string, string[]];
        const res = await fetch(persist.url, sourceDelivery(id, fields));
        expect(res.status).toBeLessThan(300);
      }
      // persist reads the backlog every 250 ms
      await new Promise((r) => setTimeout(r, 400));
      out.push({ ingest: await metricsOf(ingest), persist: await metricsOf(persist) });
    }
    return out;
  }

  function alertsAt13m(series: { series: string; values: string }[]): string {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-stall-'));
    rulesFile(dir);
    const test = {
      rule_files: ['alerts.rules.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: series,
          // what promtool got is in its failure message: expect none, read what fired
          alert_rule_test: [{ eval_time: '13m', alertname: 'SpillwayDeliveriesStalled' }],
        },
      ],
    };
    writeFileSync(join(dir, 'stall.test.yaml'), stringify(test));
    const run = promtoolRun(['test', 'rules', 'stall.test.yaml'], dir);
    return run.status === 0 ? 'quiet' : run.output;
  }

  it('fires while events are accepted and the source delivers nothing', async () => {
    const series = inputSeries(await scrapes(false));
    expect(series.some((s) => s.series.startsWith('spillway_persist_deliveries_total{'))).toBe(
      true,
    );
    const result = alertsAt13m(series);
    expect(result).toContain('alertname="SpillwayDeliveriesStalled", severity="critical"');
  });

  it('stays quiet while the source delivers, though the backlog grows', async () => {
    const series = inputSeries(await scrapes(true));
    const backlog = series.find((s) => s.series.startsWith('spillway_persist_backlog_entries{'));
    expect(Number(backlog?.values.split(' ').at(-1))).toBeGreaterThan(0);
    expect(alertsAt13m(series)).toBe('quiet');
  });
});
