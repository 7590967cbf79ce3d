/**
 * A run's three outputs: bench/results/<timestamp>.json (every sample, every
 * row), <timestamp>.html (self-contained: tables and inline SVG charts) and
 * <timestamp>.md (the summary).
 */
import type { TopLevelSpec } from 'vega-lite';
import {
  adaptiveSpec,
  dashboardSpecs,
  ingestLatencySpec,
  ingestThroughputSpec,
  persistSpec,
  renderSvg,
  spikeSpec,
} from './charts.js';
import { fmt, int, type Machine, markdownTable } from './common.js';
import { cpuProfileText, type IngestResult, SERVERS, type ServerId } from './scenarios/ingest.js';
import type { PersistResult } from './scenarios/persist.js';
import type { SpikeResult } from './scenarios/spike.js';
import { type Target, verdict } from './targets.js';

export interface BenchRun {
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: Machine;
  smoke: boolean;
  /** What was shortened against the full length, in words (empty: nothing). */
  shortened: string[];
  scenarios: {
    ingest?: IngestResult;
    persist?: PersistResult;
    spike?: SpikeResult;
    /** The flood, one row per persist replica count. */
    flood?: SpikeResult[];
  };
  targets: Target[];
  /** Scenarios that failed, with their error. */
  failures: Record<string, string>;
}

/** x ms (n.nn× bare) — a latency beside the bare node:http figure of the same run. */
function besideBare(value: number | undefined | null, bare: number | undefined): string {
  if (value === undefined || value === null) return '—';
  return bare
    ? `${fmt(value)} ms (${fmt(value / bare)}× bare)`
    : `${fmt(value)} ms (no bare figure)`;
}

function targetRows(targets: Target[]): string[][] {
  return [
    ['target', 'measured', 'ratio / count', 'goal', 'verdict', 'missed by'],
    ...targets.map((t) => [
      t.name,
      t.measured,
      t.goal.op === '==' ? int(t.value) : fmt(t.value, 3),
      `${t.goal.op === '==' ? '=' : t.goal.op === '<=' ? '≤' : '≥'} ${t.goal.limit}`,
      `**${verdict(t)}**`,
      t.miss ?? '',
    ]),
  ];
}

function ingestRows(result: IngestResult): string[][] {
  const bare = result.servers.a?.paced?.latencyMs;
  const rows = [
    ['server', 'saturated req/s', '× bare', 'ref p50', 'ref p95', 'ref p99', 'ref errors'],
  ];
  const bareRps = result.servers.a?.saturation?.rps;
  for (const id of Object.keys(SERVERS) as ServerId[]) {
    const r = result.servers[id];
    if (!r) continue;
    const l = r.paced?.latencyMs;
    rows.push([
      r.label + (r.error ? ' (FAILED)' : ''),
      int(r.saturation?.rps),
      bareRps && r.saturation ? fmt(r.saturation.rps / bareRps) : '—',
      besideBare(l?.p50, bare?.p50),
      besideBare(l?.p95, bare?.p95),
      besideBare(l?.p99, bare?.p99),
      int(r.paced?.errors.total),
    ]);
  }
  return rows;
}

function persistRows(result: PersistResult): string[][] {
  return [
    ['run', 'docs', 's', 'docs/s', '× ceiling', 'write cmds/s', 'most in 1 s', 'IOPS'],
    ...result.rows.map((r) => [
      r.name + (r.note ? ` (${r.note})` : ''),
      int(r.docs),
      fmt(r.seconds, 1),
      int(r.docsPerSec),
      fmt(r.docsPerSec / result.ceiling, 3),
      fmt(r.writesPerSec, 1),
      int(r.maxWritesInOneSecond),
      fmt(r.iops, 0),
    ]),
  ];
}

function spikeRows(spike: SpikeResult, bare: IngestResult['servers']['a']): string[][] {
  const s = spike.summary;
  const b = bare?.paced?.latencyMs;
  return [
    ['figure', 'value'],
    [
      'requests offered / answered / 202',
      `${int(s.offered)} / ${int(s.answered)} / ${int(s.accepted)}`,
    ],
    [
      'errors (by kind)',
      `${int(s.errors)}${Object.keys(s.errorsByKind).length ? ` ${JSON.stringify(s.errorsByKind)}` : ''}`,
    ],
    ['latency p50 over the load', besideBare(s.latencyMs.p50, b?.p50)],
    ['latency p95 over the load', besideBare(s.latencyMs.p95, b?.p95)],
    ['latency p99 over the load', besideBare(s.latencyMs.p99, b?.p99)],
    ['peak backlog', `${int(s.peakBacklog)} entries at ${int(s.peakBacklogAt)} s`],
    [
      'drain of the largest backlog',
      s.drain
        ? `${int(s.drain.backlog)} entries at ${int(s.drain.peakAt)} s → ≤ 1 % ${s.drain.emptyAt === null ? 'never' : `at ${int(s.drain.emptyAt)} s`}: ${int(s.drain.rate)} docs/s committed, ${int(s.drain.arrivalRate)}/s arriving; predicted ${fmt(s.drain.predictedSec, 1)} s`
        : 'under one second of the ceiling: not timed',
    ],
    [
      'one budget slot during that drain',
      s.drainSlot
        ? `${int(s.drainSlot.slotMs)} ms a write of ${int(s.drainSlot.docsPerWrite)} docs: the command ${int(s.drainSlot.writeMs)} ms (forming the batch at the grant ${int(s.drainSlot.formMs)} ms of it), spacing ${fmt(s.drainSlot.spacingMs, 1)} ms, the rest ${int(s.drainSlot.idleMs)} ms`
        : 'not measured',
    ],
    [
      'left when the load ended',
      `${int(s.afterLoad.backlog)} entries, stream empty ${s.afterLoad.seconds === null ? 'not within the drain timeout' : `${fmt(s.afterLoad.seconds, 2)} s later`}`,
    ],
    [
      'busiest sliding second at the server',
      `${int(s.busiestSecond)} write commands (budget ${spike.budget})`,
    ],
    ['documents stored / 202 answers', `${int(s.storedDocuments)} / ${int(s.accepted)}`],
    ['raw insertMany ceiling', `${int(spike.ceiling.docsPerSec)} docs/s (${spike.ceiling.from})`],
  ];
}

/** What a run of a profile was: its stages, think time, parts and budget, in one line. */
function loadLine(spike: SpikeResult): string {
  return `${spike.options.stages.map((s) => `${s.durationSec} s → ${s.target} VUs`).join(', ')}; think ${spike.thinkTimeMs.mean} ms ± ${spike.thinkTimeMs.jitter * 100} %; ingest × ${spike.ingestWorkers}, relay, persist × ${spike.persistWorkers} (the drain: relay, persist and the database at nice ${spike.drainNice ?? 0}, as a cluster gives the edge the CPU it requests); database write budget ${spike.budget}/s (${spike.budgetFrom}), blkio IOPS limit ${spike.iopsLimit ?? 'none'}.`;
}

const FLOOD_TITLE = 'Flood: a spike bigger than the database, drained at its ceiling';
const floodRowTitle = (row: SpikeResult) =>
  `${row.persistWorkers} persist replica${row.persistWorkers === 1 ? '' : 's'}`;

/** The title, the command and the machine, what makes the figures less than full, the targets. */
function markdownHead(run: BenchRun): string[] {
  const m = run.machine;
  const out = [
    `# Spillway benchmark, ${run.startedAt.slice(0, 19).replace('T', ' ')} UTC`,
    '',
    `\`${run.command}\` on ${m.cpus} × ${m.cpuModel}, node ${m.node}, load average at the start ${m.loadavg.map((l) => l.toFixed(2)).join(' ')}; ${run.startedAt} → ${run.finishedAt}.`,
  ];
  if (run.smoke)
    out.push('', '**Smoke run**: seconds per scenario, tiny loads; the figures mean nothing.');
  if (run.shortened.length > 0)
    out.push(
      '',
      `**Shortened against the full length** (\`--full\` runs it): ${run.shortened.join('; ')}.`,
    );
  for (const [name, error] of Object.entries(run.failures))
    out.push('', `**${name} FAILED**: ${error}`);
  if (run.targets.length > 0) {
    out.push('', '## Targets', '', markdownTable(targetRows(run.targets)));
  }
  return out;
}

/** The spike, then every flood row: the same table each, beside the same bare figures. */
function markdownSpikes(
  run: BenchRun,
  charts: { spikeSvg?: string; floodSvgs?: string[] },
): string[] {
  const { ingest, spike, flood } = run.scenarios;
  const out: string[] = [];
  if (spike) {
    out.push('', "## Spike: the whole pipeline under the profile's stages", '');
    out.push(loadLine(spike));
    out.push('', markdownTable(spikeRows(spike, ingest?.servers.a)));
    if (charts.spikeSvg) out.push('', `![spike](${charts.spikeSvg})`);
  }
  if (flood && flood.length > 0) out.push('', `## ${FLOOD_TITLE}`);
  for (const [i, row] of (flood ?? []).entries()) {
    out.push('', `### ${floodRowTitle(row)}`, '', loadLine(row));
    out.push('', markdownTable(spikeRows(row, ingest?.servers.a)));
    const svg = charts.floodSvgs?.[i];
    if (svg) out.push('', `![flood, ${floodRowTitle(row)}](${svg})`);
  }
  return out;
}

function markdownIngest(ingest: IngestResult): string[] {
  const out = ['', '## Ingest against its ceilings', ''];
  out.push(
    `Reference load: ${int(ingest.options.vus)} paced VUs (≈${int(ingest.profile.offeredRps)} req/s), ${ingest.options.pacedSec} s; saturation: ${int(ingest.options.connections)} connections, ${ingest.options.saturationSec} s. Latencies beside bare node:http of this run.`,
  );
  out.push('', markdownTable(ingestRows(ingest)));
  if (ingest.cpuProfile) {
    out.push(
      '',
      `### CPU profile of ingest at the reference load`,
      '',
      `\`node --cpu-prof\` on the lean host (one process), ${int(ingest.options.vus)} paced VUs; p95 ${besideBare(ingest.cpuProfile.paced.latencyMs.p95, ingest.servers.a?.paced?.latencyMs.p95)} under the profiler. Heaviest functions by self time (${ingest.cpuProfile.file}):`,
      '',
      '```',
      cpuProfileText(ingest.cpuProfile),
      '```',
    );
  }
  return out;
}

function markdownPersist(persist: PersistResult): string[] {
  const out = ['', '## Persist against the database', ''];
  out.push(
    `Database at ${persist.iopsLimit ?? 'unlimited'} IOPS (blkio). The raw insertMany ceiling (b) is ${int(persist.ceiling)} docs/s.`,
  );
  out.push('', markdownTable(persistRows(persist)));
  if (persist.lag)
    out.push(
      '',
      `Lag (acknowledged → persisted) at 565 events/s: p50 ${persist.lag.p50} ms, p99 ${persist.lag.p99} ms, max ${persist.lag.max} ms.`,
    );
  if (persist.replicas) {
    const r = persist.replicas;
    out.push(
      '',
      `${r.label}: ${int(r.docsPerSec)} docs/s (${fmt(r.docsPerSec / persist.ceiling, 3)} × ceiling); most write commands in any one second at the server: ${r.maxWritesInOneSecond} (budget ${r.budget}).`,
    );
  }
  if (persist.adaptive) out.push(...markdownAdaptive(persist.adaptive));
  return out;
}

/** The adaptive run second by second: the limit moved, the rate followed. */
function markdownAdaptive(a: NonNullable<PersistResult['adaptive']>): string[] {
  return [
    '',
    `### Adaptive write rate: IOPS ${a.phases.map((p) => `${p.iops} for ${p.seconds} s`).join(', ')}`,
    '',
    markdownTable([
      ['s', 'IOPS limit', 'adaptive rate/s', 'write p99 ms', 'server writes'],
      ...a.seconds.map((s) => [
        String(s.t),
        String(s.iopsLimit),
        fmt(s.rate, 1),
        fmt(s.latencyP99Ms, 0),
        s.writes === null ? '—' : String(s.writes),
      ]),
    ]),
  ];
}

/** Every scenario's warnings, in the order the report shows the scenarios' sections. */
function runWarnings(run: BenchRun): string[] {
  const { ingest, persist, spike, flood } = run.scenarios;
  return [
    ...(ingest?.warnings ?? []),
    ...(persist?.warnings ?? []),
    ...(spike?.warnings ?? []),
    ...(flood ?? []).flatMap((row) => row.warnings),
  ];
}

/** The Markdown summary. */
export function markdown(
  run: BenchRun,
  charts: { spikeSvg?: string; floodSvgs?: string[] } = {},
): string {
  const { ingest, persist } = run.scenarios;
  const out = [
    ...markdownHead(run),
    ...markdownSpikes(run, charts),
    ...(ingest ? markdownIngest(ingest) : []),
    ...(persist ? markdownPersist(persist) : []),
  ];
  const warnings = runWarnings(run);
  if (warnings.length > 0) out.push('', '## Warnings', '', ...warnings.map((w) => `- ${w}`));
  return `${out.join('\n')}\n`;
}

const esc = (text: string) =>
  text.replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c,
  );

function htmlTable(rows: string[][]): string {
  const [head, ...body] = rows;
  const cell = (text: string) => esc(text).replace(/\*\*(.+?)\*\*/g, '<b class="v-$1">$1</b>');
  return `<table><thead><tr>${(head ?? []).map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body
    .map((row) => `<tr>${row.map((c) => `<td>${cell(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

export interface RenderedCharts {
  spike?: string;
  /** One per flood row. */
  flood: string[];
  dashboard: { title: string; svg: string; series: number }[];
  ingestThroughput?: string;
  ingestLatency?: string;
  persist?: string;
  adaptive?: string;
}

/** Every chart of a run, as SVG. */
export async function renderCharts(run: BenchRun): Promise<RenderedCharts> {
  const { ingest, persist, spike, flood } = run.scenarios;
  const render = (spec: TopLevelSpec) => renderSvg(spec);
  const charts: RenderedCharts = { dashboard: [], flood: [] };
  const secondByRow = (row: SpikeResult) =>
    spikeSpec(row.seconds, {
      budget: row.budget,
      iopsLimit: row.iopsLimit,
      loadEndedAt: row.summary.loadEndedAt,
    });
  for (const row of flood ?? []) charts.flood.push(await render(secondByRow(row)));
  if (spike) {
    charts.spike = await render(secondByRow(spike));
    for (const panel of dashboardSpecs(spike.dashboard))
      charts.dashboard.push({
        title: panel.title,
        svg: await render(panel.spec),
        series: panel.series,
      });
  }
  if (ingest) {
    charts.ingestThroughput = await render(ingestThroughputSpec(ingest));
    charts.ingestLatency = await render(ingestLatencySpec(ingest));
  }
  if (persist) {
    charts.persist = await render(persistSpec(persist));
    if (persist.adaptive)
      charts.adaptive = await render(
        adaptiveSpec(persist.adaptive.seconds, persist.adaptive.budget),
      );
  }
  return charts;
}

/** The title, the command and the machine, what makes the figures less than full, the targets. */
function htmlHead(run: BenchRun): string[] {
  const m = run.machine;
  const parts = [
    `<h1>Spillway benchmark, ${esc(run.startedAt.slice(0, 19).replace('T', ' '))} UTC</h1>`,
    `<p><code>${esc(run.command)}</code> on ${m.cpus} × ${esc(m.cpuModel)}, node ${esc(m.node)}, load average at the start ${m.loadavg.map((l) => l.toFixed(2)).join(' ')}; ${esc(run.startedAt)} → ${esc(run.finishedAt)}.</p>`,
  ];
  if (run.smoke)
    parts.push(
      '<p class="note"><b>Smoke run</b>: seconds per scenario, tiny loads; the figures mean nothing.</p>',
    );
  if (run.shortened.length > 0)
    parts.push(
      `<p class="note"><b>Shortened against the full length</b> (<code>--full</code> runs it): ${esc(run.shortened.join('; '))}.</p>`,
    );
  for (const [name, error] of Object.entries(run.failures))
    parts.push(`<p class="note"><b>${esc(name)} FAILED</b>: ${esc(error)}</p>`);
  if (run.targets.length > 0) parts.push('<h2>Targets</h2>', htmlTable(targetRows(run.targets)));
  return parts;
}

/** The spike's table and chart, then the operators' dashboard as it looked meanwhile. */
function htmlSpike(spike: SpikeResult, run: BenchRun, charts: RenderedCharts): string[] {
  const parts = [
    "<h2>Spike: the whole pipeline under the profile's stages</h2>",
    htmlTable(spikeRows(spike, run.scenarios.ingest?.servers.a)),
  ];
  if (charts.spike) parts.push(`<figure>${charts.spike}</figure>`);
  if (charts.dashboard.length > 0) {
    parts.push(
      "<h2>The operators' dashboard during the spike</h2>",
      `<p>The panels of <code>observability/grafana-dashboard.json</code>, their queries answered by a real Prometheus (<code>query_range</code>, step 1 s) that scraped both functions' <code>/metrics</code> every second during the run (<code>$__rate_interval</code> = ${esc(spike.dashboard.rateInterval)}). A panel without data names series the functions did not export in this run.</p>`,
      '<div class="grid">',
      ...charts.dashboard.map(
        (panel) =>
          `<figure>${panel.series > 0 ? panel.svg : `<div class="empty"><b>${esc(panel.title)}</b><br>no data in this run</div>`}</figure>`,
      ),
      '</div>',
    );
  }
  return parts;
}

/** Every flood row: its load, its table and its chart. */
function htmlFlood(run: BenchRun, charts: RenderedCharts): string[] {
  const { ingest, flood } = run.scenarios;
  const parts: string[] = [];
  if (flood && flood.length > 0) parts.push(`<h2>${esc(FLOOD_TITLE)}</h2>`);
  for (const [i, row] of (flood ?? []).entries()) {
    parts.push(`<h3>${esc(floodRowTitle(row))}</h3>`, `<p>${esc(loadLine(row))}</p>`);
    parts.push(htmlTable(spikeRows(row, ingest?.servers.a)));
    if (charts.flood[i]) parts.push(`<figure>${charts.flood[i]}</figure>`);
  }
  return parts;
}

/** Ingest's and persist's rows, with their charts (and ingest's CPU profile). */
function htmlRows(run: BenchRun, charts: RenderedCharts): string[] {
  const { ingest, persist } = run.scenarios;
  const parts: string[] = [];
  if (ingest) {
    parts.push('<h2>Ingest against its ceilings</h2>', htmlTable(ingestRows(ingest)));
    for (const svg of [charts.ingestThroughput, charts.ingestLatency])
      if (svg) parts.push(`<figure>${svg}</figure>`);
    if (ingest.cpuProfile)
      parts.push(
        '<h3>CPU profile of ingest at the reference load</h3>',
        `<pre>${esc(cpuProfileText(ingest.cpuProfile))}</pre>`,
      );
  }
  if (persist) {
    parts.push('<h2>Persist against the database</h2>', htmlTable(persistRows(persist)));
    if (charts.persist) parts.push(`<figure>${charts.persist}</figure>`);
    if (charts.adaptive)
      parts.push('<h3>Adaptive write rate</h3>', `<figure>${charts.adaptive}</figure>`);
  }
  return parts;
}

/** The self-contained HTML report. */
export function html(run: BenchRun, charts: RenderedCharts): string {
  const { spike } = run.scenarios;
  const parts = [
    ...htmlHead(run),
    ...(spike ? htmlSpike(spike, run, charts) : []),
    ...htmlFlood(run, charts),
    ...htmlRows(run, charts),
  ];
  const warnings = runWarnings(run);
  if (warnings.length > 0)
    parts.push(
      '<h2>Warnings</h2>',
      `<ul>${warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>`,
    );
  return htmlPage(run, parts);
}

/** The page around the report's parts: one file, its style inline, no script. */
function htmlPage(run: BenchRun, parts: string[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Spillway benchmark ${esc(run.startedAt)}</title>
<style>
body { font: 14px/1.45 Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.v-MET { color: #1a7f37; } .v-NOT { color: #c62828; }
b.v-NOT\\ MET { color: #c62828; } b.v-NOT\\ MEASURED { color: #777; }
.note { background: #fff8e1; padding: 6px 10px; border-left: 3px solid #f9a825; }
figure { margin: 1em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 8px; }
.empty { border: 1px dashed #ccc; padding: 2em; color: #777; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
</style></head><body>
${parts.join('\n')}
</body></html>
`;
}
