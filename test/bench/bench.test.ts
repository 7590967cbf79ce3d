/**
 * The benchmark's own parts, on real processes: the VU runner following stages
 * against a real server, second by second; a real CPU profile read back; the
 * Prometheus the dashboard is drawn from; the charts rendered to SVG.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Histogram, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboardSpecs, renderSvg, spikeSpec } from '../../bench/charts.js';
import { freePort, sleep } from '../../bench/common.js';
import { topSelfFrames } from '../../bench/cpu-profile.js';
import {
  dashboardPanels,
  type Prometheus,
  queryDashboard,
  startPrometheus,
  withGrafanaVariables,
} from '../../bench/prometheus.js';
import { drainOf, type SpikeSecond } from '../../bench/scenarios/spike.js';
import { ingestTargets, spikeTargets } from '../../bench/targets.js';
import { run, type SecondFigures, stageTarget } from '../../bench/vu-runner.js';
import { type Spawned, spawnEntry, stopProcess, waitHttpReady } from '../../scripts/processes.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('the VU runner in stages mode', () => {
  let server: Spawned;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    server = spawnEntry(join(ROOT, 'bench', 'servers.ts'), {
      args: ['bare', String(port)],
      capture: true,
    });
    await waitHttpReady(`http://127.0.0.1:${port}/`, {
      timeoutMs: 30_000,
      proc: server.proc,
      accept: (status) => status > 0,
    });
  });
  afterAll(() => stopProcess(server.proc, { timeoutMs: 5000 }));

  it('ramps VUs as the stages say and accounts for every request second by second', async () => {
    const seconds: SecondFigures[] = [];
    const result = await run(
      {
        mode: 'stages',
        host: '127.0.0.1',
        port,
        connections: 30,
        connectPerTick: 30,
        connectTickMs: 100,
        thinkMeanMs: 200,
        thinkJitter: 0.5,
        warmupSec: 0,
        measureSec: 0,
        timeoutMs: 5000,
        event: { type: 't', source: '/bench-test', subjectPrefix: 'vu-' },
        keyPrefix: 'bench-test',
        path: '/events',
        stages: [
          { durationSec: 1, target: 30 },
          { durationSec: 2, target: 30 },
          { durationSec: 1, target: 0 },
        ],
      },
      (message) => {
        if (message.type === 'second') seconds.push(message.figures);
      },
    );
    expect(result.errors.total).toBe(0);
    expect(seconds.length).toBeGreaterThanOrEqual(4);
    expect(seconds.length).toBeLessThanOrEqual(6);
    // Every request sent and answered falls in exactly one second.
    expect(seconds.reduce((s, x) => s + x.offered, 0)).toBe(result.sent);
    expect(seconds.reduce((s, x) => s + x.answered, 0)).toBe(result.completed);
    expect(result.completed).toBe(result.sent);
    // 30 VUs thinking 200 ms: about 150 req/s while all are active.
    const held = seconds.filter((s) => s.vus === 30);
    expect(held.length).toBeGreaterThanOrEqual(1);
    for (const s of held) {
      expect(s.offered).toBeGreaterThan(80);
      expect(s.offered).toBeLessThan(260);
      expect(s.statuses).toEqual({ '202': s.answered });
      expect(s.p50).toBeGreaterThan(0);
      expect(s.p99).toBeGreaterThanOrEqual(s.p95);
      expect(s.p95).toBeGreaterThanOrEqual(s.p50);
    }
    expect(seconds.at(-1)?.vus).toBe(0);
  });

  it('interpolates the stages linearly from 0, as k6 ramping-vus does', () => {
    const stages = [
      { durationSec: 30, target: 10_000 },
      { durationSec: 240, target: 10_000 },
      { durationSec: 30, target: 0 },
    ];
    expect(stageTarget(stages, 0)).toBe(0);
    expect(stageTarget(stages, 15_000)).toBe(5000);
    expect(stageTarget(stages, 100_000)).toBe(10_000);
    expect(stageTarget(stages, 285_000)).toBe(5000);
    expect(stageTarget(stages, 400_000)).toBe(0);
  });
});

describe('a CPU profile', () => {
  it('names the function that burned the CPU, by self time', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-prof-'));
    const script =
      'function hotLoop(n){let x=0;for(let i=0;i<n;i++)x+=Math.sqrt(i)%7;return x}' +
      'const end=Date.now()+400;let s=0;while(Date.now()<end)s+=hotLoop(1e5);console.log(s>0)';
    const out = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '-e', script], {
      encoding: 'utf8',
    });
    expect(out.status, out.stderr).toBe(0);
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
    expect(file).toBeDefined();
    const { top, totalMs } = topSelfFrames(join(dir, file as string), 5);
    expect(totalMs).toBeGreaterThan(300);
    expect(top[0]?.functionName).toBe('hotLoop');
    expect(top[0]?.selfMs).toBeGreaterThan(totalMs * 0.3);
  });
});

describe('a real Prometheus scraping a prom-client registry', () => {
  const registry = new Registry();
  const requests = new Counter({
    name: 'spillway_ingest_requests_total',
    help: 'requests by status',
    labelNames: ['status'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'spillway_ingest_request_seconds',
    help: 'latency',
    buckets: [0.01, 0.1, 1],
    registers: [registry],
  });
  // A status known from the start that never moves (as ingest's counters are).
  requests.inc({ status: '429' }, 0);
  let server: Server;
  let prometheus: Prometheus;
  let load: NodeJS.Timeout;
  let startMs: number;
  let endMs: number;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.setHeader('content-type', registry.contentType);
      void registry.metrics().then((text) => res.end(text));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    prometheus = await startPrometheus({ ingest: [`http://127.0.0.1:${port}/metrics`] });
    // Every 100 ms: 10 answers 202 and one 503; 9 in 10 take 5 ms, 1 takes 500 ms.
    load = setInterval(() => {
      requests.inc({ status: '202' }, 10);
      requests.inc({ status: '503' }, 1);
      for (let i = 0; i < 10; i++) latency.observe(i === 0 ? 0.5 : 0.005);
    }, 100);
    startMs = Date.now();
    await sleep(8000);
    endMs = Date.now();
    await prometheus.scrapedSince(endMs);
  });
  afterAll(async () => {
    clearInterval(load);
    await prometheus?.stop();
    server?.close();
  });

  const expr = (title: string, i = 0) =>
    withGrafanaVariables(
      dashboardPanels().find((p) => p.title === title)?.targets?.[i]?.expr ?? '',
      '5s',
    );

  it("answers query_range for the dashboard's ingress panel: rates by status", async () => {
    const answer = await prometheus.queryRange(expr('Ingress by status'), startMs, endMs, 1);
    const last = (status: string) => answer.find((s) => s.labels.status === status)?.points.at(-1);
    const ok = last('202');
    const failed = last('503');
    expect(ok?.v).toBeGreaterThan(50); // 100/s when the timer keeps time
    expect(ok?.v).toBeLessThan(130);
    expect((failed?.v ?? 0) / (ok?.v ?? 1)).toBeCloseTo(0.1, 6);
    expect(Math.abs((ok?.t ?? 0) - endMs)).toBeLessThanOrEqual(1000); // step 1 s up to the end
    expect(answer.find((s) => s.labels.status === '202')?.points.length).toBeGreaterThan(4);
  });

  it('computes histogram_quantile over the buckets as Prometheus does', async () => {
    const at = async (i: number) =>
      (await prometheus.queryRange(expr('Ingest latency', i), startMs, endMs, 1))[0]?.points.at(-1)
        ?.v;
    expect(await at(0)).toBeCloseTo(0.01 * (0.5 / 0.9), 6); // p50: within the first bucket
    expect(await at(2)).toBeCloseTo(0.1 + 0.9 * ((0.99 - 0.9) / 0.1), 6); // p99: in (0.1, 1]
  });

  it('draws every dashboard panel from its answers', async () => {
    const dashboard = await queryDashboard(prometheus, dashboardPanels(), {
      startMs,
      endMs,
      rateInterval: '5s',
    });
    const specs = dashboardSpecs(dashboard);
    expect(specs.length).toBeGreaterThan(8);
    const ingress = specs.find((s) => s.title === 'Ingress by status');
    // The 429 series stays at 0 beside two that moved: not drawn.
    expect(ingress?.series).toBe(2);
    expect(specs.find((s) => s.title === 'Backlog')?.series).toBe(0); // not exported here
    const svg = await renderSvg(ingress?.spec as never);
    expect(svg).toContain('Ingress by status');
    expect(svg).not.toContain('NaN');
  });
});

describe('the charts', () => {
  it('draw the spike on stacked panels with the budget line, as SVG', async () => {
    const seconds: SpikeSecond[] = Array.from({ length: 20 }, (_, t) => ({
      t,
      vus: t * 10,
      offered: 100,
      answered: 100,
      p50: 1,
      p95: 2,
      p99: 3,
      statuses: { '202': 100 },
      errors: 0,
      errorKinds: { non2xx: 0, socket: 0, timeout: 0, connect: 0 },
      backlog: t < 10 ? t * 50 : 0,
      persisted: 100,
      writes: 20,
      iops: 60,
      writeRate: null,
    }));
    const svg = await renderSvg(
      spikeSpec(seconds, { budget: 100, iopsLimit: 100, loadEndedAt: 15 }),
    );
    expect(svg.startsWith('<svg')).toBe(true);
    for (const text of [
      'Backlog',
      'Persisted documents per second',
      'budget 100/s',
      'IOPS consumed',
      'p99',
      'offered',
    ])
      expect(svg).toContain(text);
    expect(svg).not.toContain('NaN');
  });
});

describe('the targets', () => {
  it('are ratios to the same run, and say by how much they are missed', () => {
    const targets = ingestTargets({
      options: { vus: 10_000 },
      profile: { offeredRps: 565 },
      servers: {
        a: { paced: { latencyMs: { p95: 2, p99: 4 } }, saturation: { rps: 10_000 } },
        b: { saturation: { rps: 1000 } },
        c: {
          paced: { latencyMs: { p95: 4, p99: 5 }, errors: { total: 0 }, sent: 10 },
          saturation: { rps: 3500 },
        },
      },
      ratios: { cOverA: 0.35, cOverB: 3.5 },
    } as never);
    const byName = (part: string) => targets.find((t) => t.name.includes(part));
    expect(byName('p95')?.value).toBe(2);
    expect(byName('p95')?.met).toBe(false);
    expect(byName('p95')?.miss).toContain('over by 33 %');
    expect(byName('p99')?.met).toBe(true);
    expect(byName('0.30')?.met).toBe(true);
    expect(byName('2.5')?.met).toBe(true);
    expect(byName('errors')?.met).toBe(true);
    const spike = spikeTargets({
      maxBacklog: 1_000_000,
      budget: 100,
      ceiling: { docsPerSec: 10_000, from: 'x' },
      summary: {
        errorsUnderMaxBacklog: 0,
        offered: 1,
        peakBacklog: 50_000,
        busiestSecond: 101,
        drain: { backlog: 50_000, seconds: 7, rate: 50_000 / 7, predictedSec: 5 },
        accepted: 1,
        storedDocuments: 1,
      },
    } as never);
    expect(spike.map((t) => t.met)).toEqual([true, true, false, false, false]);
    // A flood row is named by its replicas; a 202 not stored is a miss.
    const flood = spikeTargets({
      profile: 'flood',
      persistWorkers: 3,
      maxBacklog: 1_000_000,
      budget: 100,
      ceiling: { docsPerSec: 2000, from: 'x' },
      summary: {
        errorsUnderMaxBacklog: 0,
        offered: 10,
        accepted: 10,
        storedDocuments: 9,
        peakBacklog: 20_000,
        busiestSecond: 100,
        drain: { backlog: 20_000, seconds: 11, rate: 1900, predictedSec: 10 },
      },
    } as never);
    expect(flood.every((t) => t.scenario === 'flood' && t.name.startsWith('3 persist'))).toBe(true);
    expect(flood.map((t) => t.met)).toEqual([true, false, true, true, true]);
    expect(flood[1]?.miss).toBe('1 instead of 0');
  });

  it('time the drain of the largest backlog from its peak to ≤ 1 % of it', () => {
    const backlogs = [0, 500, 3000, 6000, 4000, 2000, 50, 40, 0];
    const seconds = backlogs.map((backlog, t) => ({
      t,
      backlog,
      persisted: t >= 4 ? 2500 : 100,
      statuses: { '202': 500 },
    })) as unknown as SpikeSecond[];
    const drain = drainOf(seconds, 3000);
    expect(drain).toMatchObject({ backlog: 6000, peakAt: 3, emptyAt: 6, seconds: 3 });
    expect(drain?.rate).toBeCloseTo(2500);
    expect(drain?.arrivalRate).toBeCloseTo(500);
    expect(drain?.predictedSec).toBeCloseTo(6000 / 2500);
    expect(drainOf(seconds, 7000)).toBeUndefined(); // under one second of the ceiling
  });
});
