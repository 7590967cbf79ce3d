/**
 * The report's charts: Vega-Lite specifications rendered to SVG in Node (vega's
 * headless View, renderer 'none': no browser, no canvas, no network), inlined in
 * the HTML report.
 */
import * as vega from 'vega';
import type { TopLevelSpec } from 'vega-lite';
import * as vl from 'vega-lite';
import type { DashboardAnswers } from './prometheus.js';
import { type IngestResult, SERVERS, type ServerId } from './scenarios/ingest.js';
import type { PersistResult } from './scenarios/persist.js';
import type { SpikeSecond } from './scenarios/spike.js';

/** Renders a Vega-Lite specification to a standalone SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const WIDTH = 760;
const CONFIG = {
  font: 'Helvetica, Arial, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 11, gridColor: '#e8e8e8' },
  legend: { labelFontSize: 11, titleFontSize: 11, orient: 'right' as const },
  title: { fontSize: 13, anchor: 'start' as const },
  view: { stroke: '#ddd' },
};

type Row = Record<string, number | string | null>;

/** One panel of a stacked time chart: series drawn as lines, with optional rule lines. */
interface TimePanel {
  title: string;
  unit: string;
  rows: Row[]; // { t, series, value }
  rules?: { label: string; value: number; color: string }[];
  area?: boolean;
  height?: number;
  logScale?: boolean;
}

function timePanel(panel: TimePanel, xTitle: string, xDomain: [number, number], width: number) {
  const layers: object[] = [
    {
      data: { values: panel.rows },
      mark: panel.area
        ? { type: 'area', line: true, opacity: 0.35, interpolate: 'step-after' }
        : { type: 'line', interpolate: 'linear', strokeWidth: 1.4, point: false },
      encoding: {
        x: {
          field: 't',
          type: 'quantitative',
          title: xTitle,
          scale: { domain: xDomain, nice: false },
        },
        y: {
          field: 'value',
          type: 'quantitative',
          title: panel.unit,
          axis: { format: ',~g' },
          ...(panel.logScale ? { scale: { type: 'symlog' } } : {}),
        },
        color: { field: 'series', type: 'nominal', title: null },
      },
    },
  ];
  for (const rule of panel.rules ?? []) {
    layers.push({
      data: { values: [{ value: rule.value, label: rule.label }] },
      layer: [
        {
          mark: { type: 'rule', color: rule.color, strokeDash: [6, 3], strokeWidth: 1.5 },
          encoding: { y: { field: 'value', type: 'quantitative' } },
        },
        {
          mark: { type: 'text', color: rule.color, align: 'left', dx: 4, dy: -6, fontSize: 10 },
          encoding: {
            y: { field: 'value', type: 'quantitative' },
            x: { datum: xDomain[0] },
            text: { field: 'label' },
          },
        },
      ],
    });
  }
  return {
    title: panel.title,
    width,
    height: panel.height ?? 110,
    layer: layers,
    resolve: { scale: { color: 'independent' } },
  };
}

function stacked(
  panels: TimePanel[],
  xTitle: string,
  xDomain: [number, number],
  width = WIDTH,
): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: CONFIG,
    vconcat: panels.map((panel) => timePanel(panel, xTitle, xDomain, width)),
    spacing: 18,
    resolve: { scale: { color: 'independent', x: 'shared' } },
  } as unknown as TopLevelSpec;
}

const long = (seconds: SpikeSecond[], fields: [string, (s: SpikeSecond) => number | null][]) =>
  seconds.flatMap((s) =>
    fields
      .map(([series, f]) => ({ t: s.t, series, value: f(s) }))
      .filter((row) => row.value !== null && Number.isFinite(row.value)),
  );

/** What the spike's panels draw as lines: the budget, the IOPS limit, the end of the load. */
interface SpikeFigures {
  budget: number;
  iopsLimit?: number | undefined;
  loadEndedAt: number;
}

/** The spike, second by second, in stacked panels sharing the time axis. */
export function spikeSpec(seconds: SpikeSecond[], figures: SpikeFigures): TopLevelSpec {
  const end = Math.max(1, seconds.at(-1)?.t ?? 1);
  const loadEnd = { label: 'load ends', value: figures.loadEndedAt, color: '#888' };
  const spec = stacked(spikePanels(seconds, figures), 'seconds from the first VU', [0, end]);
  // The end of the load on every panel.
  for (const panel of (spec as unknown as { vconcat: { layer: object[] }[] }).vconcat)
    panel.layer.push({
      data: { values: [loadEnd] },
      mark: { type: 'rule', color: loadEnd.color, strokeDash: [2, 2] },
      encoding: { x: { field: 'value', type: 'quantitative' } },
    });
  return spec;
}

/** The spike's panels, top to bottom: the load, its latency, then what the database took. */
function spikePanels(seconds: SpikeSecond[], figures: SpikeFigures): TimePanel[] {
  return [
    {
      title: 'Requests per second: offered and answered (errors: answers ≠ 2xx and failures)',
      unit: 'req/s',
      rows: long(seconds, [
        ['offered', (s) => s.offered],
        ['answered', (s) => s.answered],
        ['errors', (s) => s.errors],
      ]),
    },
    {
      title: 'Latency of the answers in each second',
      unit: 'ms',
      rows: long(seconds, [
        ['p50', (s) => s.p50],
        ['p95', (s) => s.p95],
        ['p99', (s) => s.p99],
      ]),
      logScale: true,
    },
    {
      title: 'Backlog: entries in the stream, not yet in the database (XLEN)',
      unit: 'entries',
      rows: long(seconds, [['backlog', (s) => s.backlog]]),
      area: true,
    },
    {
      title: 'Persisted documents per second (spillway_persist_events_total)',
      unit: 'docs/s',
      rows: long(seconds, [['persisted', (s) => s.persisted]]),
    },
    {
      title: 'Write commands per second counted at the database server, and the budget',
      unit: 'commands/s',
      rows: long(seconds, [
        ['write commands', (s) => s.writes],
        ['adaptive rate', (s) => s.writeRate],
      ]),
      rules: [{ label: `budget ${figures.budget}/s`, value: figures.budget, color: '#d62728' }],
    },
    {
      title: "IOPS consumed by the database's blkio group",
      unit: 'IOPS',
      rows: long(seconds, [['IOPS', (s) => s.iops]]),
      rules:
        figures.iopsLimit !== undefined
          ? [{ label: `limit ${figures.iopsLimit}`, value: figures.iopsLimit, color: '#d62728' }]
          : [],
    },
  ];
}

interface Bar {
  label: string;
  value: number;
  kind: 'ceiling' | 'Spillway';
}

function barsSpec(title: string, unit: string, bars: Bar[], log = false): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: CONFIG,
    title,
    width: WIDTH - 180,
    data: { values: bars.filter((bar) => Number.isFinite(bar.value)) },
    encoding: {
      y: { field: 'label', type: 'nominal', sort: null, title: null },
      x: {
        field: 'value',
        type: 'quantitative',
        title: unit,
        ...(log ? { scale: { type: 'log' } } : {}),
      },
    },
    layer: [
      {
        mark: { type: 'bar', height: 16 },
        encoding: {
          color: {
            field: 'kind',
            type: 'nominal',
            title: null,
            scale: { domain: ['ceiling', 'Spillway'], range: ['#9e9e9e', '#1f77b4'] },
          },
        },
      },
      {
        mark: { type: 'text', align: 'left', dx: 3, fontSize: 10 },
        encoding: { text: { field: 'value', type: 'quantitative', format: ',.0f' } },
      },
    ],
  } as unknown as TopLevelSpec;
}

/** Saturated req/s of every ingest row, the two ceilings beside them. */
export function ingestThroughputSpec(result: IngestResult): TopLevelSpec {
  const bars: Bar[] = [];
  for (const id of Object.keys(SERVERS) as ServerId[]) {
    const rps = result.servers[id]?.saturation?.rps;
    if (rps === undefined) continue;
    bars.push({
      label: SERVERS[id].label,
      value: rps,
      kind: id === 'a' || id === 'b' ? 'ceiling' : 'Spillway',
    });
  }
  return barsSpec(
    `Ingest at saturation (${result.options.connections} connections, closed loop)`,
    'req/s',
    bars,
  );
}

/** Reference-load latency percentiles of every ingest row, bare node:http first. */
export function ingestLatencySpec(result: IngestResult): TopLevelSpec {
  const rows: Row[] = [];
  for (const id of Object.keys(SERVERS) as ServerId[]) {
    const latency = result.servers[id]?.paced?.latencyMs;
    // A row that waits for the database is timed by its commits: not on ingest's scale.
    if (!latency || SERVERS[id].wait > 0) continue;
    for (const p of ['p50', 'p95', 'p99'] as const)
      rows.push({ server: SERVERS[id].label, percentile: p, value: latency[p] });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: CONFIG,
    title: `Reference load (${result.options.vus} paced VUs, ≈${Math.round(result.profile.offeredRps)} req/s): latency`,
    data: { values: rows },
    width: WIDTH - 180,
    mark: { type: 'bar', height: { band: 0.8 } },
    encoding: {
      y: { field: 'server', type: 'nominal', sort: null, title: null },
      yOffset: { field: 'percentile', sort: ['p50', 'p95', 'p99'] },
      x: { field: 'value', type: 'quantitative', title: 'ms' },
      color: { field: 'percentile', type: 'nominal', title: null, sort: ['p50', 'p95', 'p99'] },
    },
  } as unknown as TopLevelSpec;
}

/** docs/s of every persist row, the raw insertMany ceiling beside them (log scale). */
export function persistSpec(result: PersistResult): TopLevelSpec {
  return barsSpec(
    `Persist against the database at ${result.iopsLimit ?? 'unlimited'} IOPS: documents per second`,
    'docs/s (log scale)',
    result.rows.map((row) => ({
      label: row.name,
      value: row.docsPerSec,
      kind: row.name.startsWith('(b)') ? 'ceiling' : 'Spillway',
    })),
    true,
  );
}

/** A per-second table as a chart: the adaptive run (rate, latency, server writes, IOPS limit). */
export function adaptiveSpec(
  seconds: {
    t: number;
    writes: number | null;
    rate: number | null;
    latencyP99Ms: number | null;
    iopsLimit: number;
  }[],
  budget: number,
): TopLevelSpec {
  const end = Math.max(1, seconds.at(-1)?.t ?? 1);
  const rows = (f: (s: (typeof seconds)[number]) => number | null, series: string) =>
    seconds.map((s) => ({ t: s.t, series, value: f(s) })).filter((r) => r.value !== null);
  return stacked(
    [
      {
        title: "The database's IOPS limit (blkio), lowered and raised back",
        unit: 'IOPS',
        rows: rows((s) => s.iopsLimit, 'IOPS limit'),
        area: true,
        height: 70,
      },
      {
        title: "persist's adaptive write rate and the write commands the server counted",
        unit: 'commands/s',
        rows: [...rows((s) => s.rate, 'adaptive rate'), ...rows((s) => s.writes, 'server writes')],
        rules: [{ label: `budget ${budget}/s`, value: budget, color: '#d62728' }],
      },
      {
        title: 'Write latency p99 (spillway_persist_write_latency_seconds)',
        unit: 'ms',
        rows: rows((s) => s.latencyP99Ms, 'p99'),
        logScale: true,
      },
    ],
    'seconds',
    [0, end],
  );
}

function legend(format: string | undefined, labels: Record<string, string>, expr: string): string {
  if (!format || format === '__auto')
    return Object.keys(labels).length > 0
      ? Object.entries(labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')
      : expr.slice(0, 40);
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name: string) => labels[name] ?? '');
}

const UNIT_SCALE: Record<string, { unit: string; factor: number }> = {
  s: { unit: 'ms', factor: 1000 },
  reqps: { unit: 'req/s', factor: 1 },
  ops: { unit: 'per s', factor: 1 },
  short: { unit: '', factor: 1 },
  none: { unit: '', factor: 1 },
};

/**
 * The dashboard's panels drawn from a real Prometheus's query_range answers to
 * their own expressions (bench/prometheus.ts queryDashboard), as Grafana would.
 */
export function dashboardSpecs(
  dashboard: DashboardAnswers,
): { title: string; spec: TopLevelSpec; series: number }[] {
  const t0 = dashboard.startMs;
  const end = Math.max(1, (dashboard.endMs - t0) / 1000);
  return dashboard.panels.map((panel) => {
    const unitName = panel.fieldConfig?.defaults?.unit ?? 'short';
    const scale = UNIT_SCALE[unitName] ?? { unit: unitName, factor: 1 };
    const rows: Row[] = [];
    let series = 0;
    // Counters start at 0 for every known label: a panel draws the series that moved,
    // or all of them (at 0) when none did.
    const moved = panel.answers.flat().some((s) => s.points.some((p) => p.v !== 0));
    panel.answers.forEach((answer, i) => {
      const target = panel.targets?.[i];
      for (const s of answer) {
        if (moved && s.points.every((p) => p.v === 0)) continue;
        series++;
        const name = legend(target?.legendFormat, s.labels, target?.expr ?? '');
        for (const p of s.points)
          rows.push({ t: (p.t - t0) / 1000, series: name, value: p.v * scale.factor });
      }
    });
    const spec = stacked(
      [{ title: panel.title, unit: scale.unit, rows, height: 120 }],
      'seconds from the first VU',
      [0, end],
      520,
    );
    return { title: panel.title, spec, series };
  });
}
