/**
 * A real Prometheus (v0.316.0, built by scripts/tools.sh into .data/bin) scraping
 * the bench's functions: a temporary TSDB, a generated config (every target
 * scraped each second), a free loopback port; its HTTP API answers the report's
 * queries (query_range), the dashboard's expressions as Grafana would send them.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopProcess, waitHttpReady } from '../scripts/processes.js';
import { freePort, sleep } from './common.js';
import { repoRoot } from './profile.js';

/** One series of a query_range answer: t in ms since the epoch. */
export interface RangeSeries {
  labels: Record<string, string>;
  points: { t: number; v: number }[];
}

export interface Prometheus {
  url: string;
  proc: ChildProcess;
  /** Resolves once every target has been scraped at or after `atMs` (or after timeoutMs). */
  scrapedSince(atMs: number, timeoutMs?: number): Promise<void>;
  queryRange(
    expr: string,
    startMs: number,
    endMs: number,
    stepSec?: number,
  ): Promise<RangeSeries[]>;
  stop(): Promise<void>;
}

/** The Prometheus binary, built through scripts/tools.sh when missing (minutes, once). */
export function prometheusBinary(): string {
  const root = repoRoot();
  return execFileSync('bash', [join(root, 'scripts', 'tools.sh'), 'prometheus'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/** Grafana's variables as the dashboard's expressions use them. */
export function withGrafanaVariables(expr: string, rateInterval = '1m'): string {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('$__interval', rateInterval)
    .replaceAll('$__range', rateInterval);
}

async function api<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${url}: ${res.status} ${body.error}`);
  return body.data;
}

/**
 * Starts Prometheus scraping `jobs` (job name → metrics URLs) every `intervalSec`
 * and resolves once it is ready (/-/ready). Its log goes to `logFile` (else
 * its last lines are kept for an error); its TSDB is deleted when it stops.
 */
export async function startPrometheus(
  jobs: Record<string, string[]>,
  options: { intervalSec?: number; logFile?: string } = {},
): Promise<Prometheus> {
  const interval = options.intervalSec ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'spillway-prometheus-'));
  writeConfig(dir, jobs, interval);
  const port = await freePort();
  const { proc, output } = spawnPrometheus(dir, port, options.logFile);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopProcess(proc, { timeoutMs: 10_000 });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitHttpReady(`${url}/-/ready`, { timeoutMs: 60_000, proc, what: 'prometheus' });
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${output()}`);
  }
  const scrapedSince = scrapedSinceOf(url, Object.values(jobs).flat().length);
  // Targets are applied a few seconds after start (the scrape manager's throttle): from
  // here on every one is scraped.
  await scrapedSince(Date.now(), 30_000);
  return { url, proc, stop, scrapedSince, queryRange: queryRangeOf(url, interval) };
}

/** prometheus.yml in `dir`: every job's targets scraped each `interval` seconds. */
function writeConfig(dir: string, jobs: Record<string, string[]>, interval: number): void {
  const config = {
    global: { scrape_interval: `${interval}s`, scrape_timeout: `${Math.round(interval * 900)}ms` },
    scrape_configs: Object.entries(jobs).map(([job, urls]) => ({
      job_name: job,
      metrics_path: new URL(urls[0] ?? 'http://x/metrics').pathname,
      fallback_scrape_protocol: 'PrometheusText0.0.4',
      static_configs: [{ targets: urls.map((url) => new URL(url).host) }],
    })),
  };
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2)); // JSON is YAML
}

/** The process on `dir`'s config and TSDB; without a log file, its last output is kept. */
function spawnPrometheus(
  dir: string,
  port: number,
  logFile: string | undefined,
): { proc: ChildProcess; output: () => string } {
  const log = logFile ? openSync(logFile, 'a') : 'pipe';
  const proc = spawn(
    prometheusBinary(),
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', log, log] },
  );
  if (typeof log === 'number') closeSync(log);
  let output = '';
  proc.stderr?.on('data', (chunk) => (output = (output + chunk).slice(-4000)));
  return { proc, output: () => output };
}

/** Prometheus.scrapedSince: polls the active targets until all `targets` were scraped since. */
function scrapedSinceOf(url: string, targets: number): Prometheus['scrapedSince'] {
  return async (atMs: number, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { activeTargets } = await api<{ activeTargets: { lastScrape: string }[] }>(
        `${url}/api/v1/targets?state=active`,
      );
      const done = activeTargets.every((t) => Date.parse(t.lastScrape) >= atMs);
      if ((done && activeTargets.length >= targets) || Date.now() > deadline) return;
      await sleep(200);
    }
  };
}

/** Prometheus.queryRange: the series' points in ms, values that are not numbers left out. */
function queryRangeOf(url: string, interval: number): Prometheus['queryRange'] {
  return async (expr, startMs, endMs, stepSec = interval) => {
    const form = new URLSearchParams({
      query: expr,
      start: String(startMs / 1000),
      end: String(endMs / 1000),
      step: String(stepSec),
    });
    const data = await api<{
      result: { metric: Record<string, string>; values: [number, string][] }[];
    }>(`${url}/api/v1/query_range`, { method: 'POST', body: form });
    return data.result.map((series) => ({
      labels: series.metric,
      points: series.values
        .map(([t, v]) => ({ t: t * 1000, v: Number(v) }))
        .filter((p) => Number.isFinite(p.v)),
    }));
  };
}

/** A Grafana dashboard panel, as far as the report needs it. */
export interface DashboardPanel {
  title: string;
  type: string;
  targets?: { expr: string; legendFormat?: string }[];
  fieldConfig?: { defaults?: { unit?: string } };
}

/** The dashboard's panels (observability/grafana-dashboard.json), rows unfolded. */
export function dashboardPanels(root = repoRoot()): DashboardPanel[] {
  const dashboard = JSON.parse(
    readFileSync(join(root, 'observability', 'grafana-dashboard.json'), 'utf8'),
  ) as { panels: (DashboardPanel & { panels?: DashboardPanel[] })[] };
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** Prometheus's answers to a dashboard's queries over one time window. */
export interface DashboardAnswers {
  startMs: number;
  endMs: number;
  rateInterval: string;
  panels: (DashboardPanel & { answers: RangeSeries[][] })[];
}

/** Every panel's queries (Grafana's variables substituted) over [startMs, endMs], step 1 s. */
export async function queryDashboard(
  prometheus: Prometheus,
  panels: DashboardPanel[],
  window: { startMs: number; endMs: number; rateInterval: string },
): Promise<DashboardAnswers> {
  const answered: DashboardAnswers['panels'] = [];
  for (const panel of panels) {
    if (!panel.targets || panel.targets.length === 0) continue;
    const answers: RangeSeries[][] = [];
    for (const target of panel.targets)
      answers.push(
        await prometheus.queryRange(
          withGrafanaVariables(target.expr, window.rateInterval),
          window.startMs,
          window.endMs,
          1,
        ),
      );
    answered.push({ ...panel, answers });
  }
  return { ...window, panels: answered };
}
