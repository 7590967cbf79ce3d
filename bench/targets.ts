/**
 * The targets, as ratios to ceilings measured in the same run (never absolute
 * times): each with its measured figure, its ratio, MET / NOT MET and, where
 * missed, by how much.
 */
import { fmt, int } from './common.js';
import type { IngestResult } from './scenarios/ingest.js';
import type { SpikeResult } from './scenarios/spike.js';

export interface Target {
  scenario: 'ingest' | 'spike' | 'flood';
  name: string;
  /** What was measured, in words and figures (the ceiling beside it). */
  measured: string;
  /** The measured ratio (or count) compared with the goal. */
  value: number | undefined;
  goal: { op: '<=' | '>=' | '=='; limit: number };
  met: boolean | undefined;
  /** Where missed: by how much. */
  miss?: string;
}

function judge(
  scenario: Target['scenario'],
  name: string,
  measured: string,
  value: number | undefined,
  op: Target['goal']['op'],
  limit: number,
): Target {
  const known = value !== undefined && Number.isFinite(value);
  const met = !known
    ? undefined
    : op === '<='
      ? value <= limit
      : op === '>='
        ? value >= limit
        : value === limit;
  const target: Target = { scenario, name, measured, value, goal: { op, limit }, met };
  if (known && met === false) {
    if (op === '==') target.miss = `${int(value)} instead of ${int(limit)}`;
    else if (limit === 0) target.miss = `by ${fmt(value, 2)}`;
    else {
      const off = op === '<=' ? value / limit - 1 : 1 - value / limit;
      target.miss = `${op === '<=' ? 'over' : 'short'} by ${fmt(off * 100, 0)} % (${fmt(value, 2)} against ${op} ${fmt(limit, 2)})`;
    }
  }
  return target;
}

const ms = (value: number | undefined) => `${fmt(value)} ms`;

export function ingestTargets(result: IngestResult): Target[] {
  const bare = result.servers.a;
  const noop = result.servers.b;
  const ingest = result.servers.c;
  const ratio = (x?: number, y?: number) => (x !== undefined && y ? x / y : undefined);
  const ref = ingest?.paced?.latencyMs;
  const refBare = bare?.paced?.latencyMs;
  const vus = result.options.vus;
  return [
    judge(
      'ingest',
      `reference load (${int(vus)} paced VUs, ≈${int(result.profile.offeredRps)} req/s): errors`,
      `${int(ingest?.paced?.errors.total)} errors of ${int(ingest?.paced?.sent)} requests`,
      ingest?.paced?.errors.total,
      '==',
      0,
    ),
    judge(
      'ingest',
      'reference load: ingest p95 ≤ 1.5 × bare node:http p95',
      `ingest ${ms(ref?.p95)}, bare ${ms(refBare?.p95)}`,
      ratio(ref?.p95, refBare?.p95),
      '<=',
      1.5,
    ),
    judge(
      'ingest',
      'reference load: ingest p99 ≤ 1.5 × bare node:http p99',
      `ingest ${ms(ref?.p99)}, bare ${ms(refBare?.p99)}`,
      ratio(ref?.p99, refBare?.p99),
      '<=',
      1.5,
    ),
    judge(
      'ingest',
      'saturation: ingest ≥ 0.30 × bare node:http',
      `ingest ${int(ingest?.saturation?.rps)} req/s, bare ${int(bare?.saturation?.rps)} req/s`,
      result.ratios.cOverA,
      '>=',
      0.3,
    ),
    judge(
      'ingest',
      'saturation: ingest ≥ 2.5 × Functions Framework no-op',
      `ingest ${int(ingest?.saturation?.rps)} req/s, framework no-op ${int(noop?.saturation?.rps)} req/s`,
      result.ratios.cOverB,
      '>=',
      2.5,
    ),
  ];
}

/** The targets of a run of a profile: the spike's, and each flood row's (named by its replicas). */
export function spikeTargets(result: SpikeResult): Target[] {
  const s = result.summary;
  const scenario = result.profile === 'flood' ? 'flood' : 'spike';
  const of = (name: string) =>
    scenario === 'flood' ? `${result.persistWorkers} persist replica(s): ${name}` : name;
  return [
    judge(
      scenario,
      of(`errors while the backlog is under MAX_BACKLOG (${int(result.maxBacklog)})`),
      `${int(s.errorsUnderMaxBacklog)} errors of ${int(s.offered)} requests (peak backlog ${int(s.peakBacklog)})`,
      s.errorsUnderMaxBacklog,
      '==',
      0,
    ),
    judge(
      scenario,
      of('every 202 stored (202 answers beyond the documents stored)'),
      // More documents than 202s: requests whose answer came after the client gave up.
      `${int(s.storedDocuments)} documents stored for ${int(s.accepted)} 202 answers`,
      Math.max(0, s.accepted - s.storedDocuments),
      '==',
      0,
    ),
    judge(
      scenario,
      of(
        `no one-second window over the write budget (${result.budget} write commands/s) at the server`,
      ),
      `busiest sliding second: ${int(s.busiestSecond)} write commands`,
      s.busiestSecond / result.budget,
      '<=',
      1,
    ),
    judge(
      scenario,
      of('drain rate of the largest backlog ≥ 0.9 × raw insertMany ceiling (same run)'),
      s.drain
        ? `${int(s.drain.rate)} docs/s committed while ${int(s.drain.backlog)} entries drained (${int(s.drain.arrivalRate)}/s still arriving), ceiling ${int(result.ceiling.docsPerSec)} docs/s (${result.ceiling.from})`
        : `the backlog peaked at ${int(s.peakBacklog)} entries, under one second of the ceiling (${int(result.ceiling.docsPerSec)} docs/s): no drain to time`,
      s.drain ? s.drain.rate / result.ceiling.docsPerSec : undefined,
      '>=',
      0.9,
    ),
    judge(
      scenario,
      of('largest backlog back to 0 (≤ 1 % of its peak) within 1.2 × backlog ÷ ceiling'),
      s.drain
        ? `${int(s.drain.backlog)} entries at ${int(s.drain.peakAt)} s, back to ≤ 1 % ${s.drain.emptyAt === null ? 'never' : `at ${int(s.drain.emptyAt)} s`}: ${fmt(s.drain.seconds, 0)} s; predicted ${fmt(s.drain.predictedSec, 1)} s (backlog ÷ (ceiling − arrivals); ${fmt(s.drain.atCeilingSec, 1)} s with no arrivals)`
        : `the backlog peaked at ${int(s.peakBacklog)} entries: no drain to time`,
      s.drain ? s.drain.seconds / s.drain.predictedSec : undefined,
      '<=',
      1.2,
    ),
  ];
}

export const verdict = (target: Target) =>
  target.met === undefined ? 'NOT MEASURED' : target.met ? 'MET' : 'NOT MET';

export function targetsText(targets: Target[]): string {
  return targets
    .map(
      (t) =>
        `  ${verdict(t).padEnd(12)} ${t.name}: ${t.goal.op === '==' ? int(t.value) : fmt(t.value, 3)} (${t.measured})${t.miss ? `; missed ${t.miss}` : ''}`,
    )
    .join('\n');
}
