/**
 * What one slot of the write budget is spent on, from persist's own metrics
 * scraped before and after a run: forming the batch at the grant, the write
 * command, the spacing the budget keeps after its answer, and the rest (the
 * release, a waiting replica's next ask, no batch ready).
 */

import { SLACK_MS } from '../functions/persist/spacer.js';
import { readPart } from '../functions/shared/settings.js';
import { parsePromText } from './prom-text.js';

export interface SlotFigures {
  /** Write commands under the budget (grants used). */
  writes: number;
  docsPerWrite: number;
  /** Wall time per write: the run's seconds ÷ writes. */
  slotMs: number;
  /** Grant → command sent (part of writeMs). */
  formMs: number;
  /** Grant → answer. */
  writeMs: number;
  /** The budget's spacing after an answer at its ceiling (1010 / DB_WRITE_OPS_PER_SEC). */
  spacingMs: number;
  /** slotMs − writeMs − spacingMs. */
  idleMs: number;
}

/** Every series' value, summed over its labels. */
function sums(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const { name, value } of parsePromText(text)) out.set(name, (out.get(name) ?? 0) + value);
  return out;
}

/** The counters a slot's figures come from (persist's metrics, summed over their labels). */
export const SLOT_COUNTERS = [
  'spillway_persist_write_latency_seconds_count',
  'spillway_persist_write_latency_seconds_sum',
  'spillway_persist_form_seconds_count',
  'spillway_persist_form_seconds_sum',
] as const;

/**
 * The figures of the writes between two readings of SLOT_COUNTERS (`from`, `to`),
 * `seconds` apart, that committed `docs`; `spacingMs` is the budget's spacing
 * at its ceiling. Undefined when no write was made.
 */
export function slotBetween(
  from: ReadonlyMap<string, number>,
  to: ReadonlyMap<string, number>,
  seconds: number,
  docs: number,
  spacingMs: number,
): SlotFigures | undefined {
  const delta = (name: string) => (to.get(name) ?? 0) - (from.get(name) ?? 0);
  const writes = delta('spillway_persist_write_latency_seconds_count');
  if (!(writes > 0)) return undefined;
  const forms = delta('spillway_persist_form_seconds_count');
  const formMs = forms > 0 ? (delta('spillway_persist_form_seconds_sum') / forms) * 1000 : 0;
  const writeMs = (delta('spillway_persist_write_latency_seconds_sum') / writes) * 1000;
  const slotMs = (seconds * 1000) / writes;
  return {
    writes,
    docsPerWrite: docs / writes,
    slotMs,
    formMs,
    writeMs,
    spacingMs,
    idleMs: slotMs - writeMs - spacingMs,
  };
}

/** The budget's spacing at its ceiling, ms, for persist's settings in `env`. */
export function ceilingSpacingMs(env: Record<string, string | undefined> = {}): number {
  const { dbWriteOpsPerSec } = readPart('persist', { ...process.env, ...env });
  return SLACK_MS / dbWriteOpsPerSec;
}

/** The figures between two scrapes of persist's metrics (Prometheus text). */
export function slotFigures(
  before: string,
  after: string,
  seconds: number,
  docs: number,
  env: Record<string, string> = {},
): SlotFigures | undefined {
  return slotBetween(sums(before), sums(after), seconds, docs, ceilingSpacingMs(env));
}
