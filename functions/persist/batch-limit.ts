/**
 * The largest batch, adapted to the database's write latency (AIMD), in one
 * place. A write slower than the target (or failed) cuts it, at most once per
 * cooldown, down to a minimum: by the write's overshoot (to target ÷ latency of
 * itself), and at least by half. A write within half the target adds a step
 * back, up to MAX_BATCH_DOCS; one between half the target and the target
 * leaves it. Backing off the rate alone cannot bring a slow disk's write
 * latency down (fewer writes make each batch larger); smaller batches do, and
 * what is not written yet waits in the stream, which is what it is for.
 *
 * Why a cut by the overshoot and a band that holds: a grant fills its write up
 * to the largest batch whenever the stream holds a backlog, so every write is
 * as large as the figure, and its latency follows the figure at once. Halving
 * alone takes a second per halving to come down from a figure many times too
 * large, and a step added by every fast write climbs straight back into slow
 * writes; a write already at three quarters of the target is where the
 * figure should stay.
 *
 * The budget shared by every replica keeps one figure in Redis
 * (budget-release-1.lua applies this rule, with these figures, to every
 * replica's writes); a budget of this process alone keeps a BatchLimit.
 */
import type { BatchRule } from '../shared/redis/scripts.js';

/** The rule's figures for a MAX_BATCH_DOCS. */
export function batchRule(maxBatchDocs: number): BatchRule {
  return {
    minBatch: Math.min(10, maxBatchDocs),
    stepDocs: Math.max(1, Math.floor(maxBatchDocs / 50)),
    cooldownMs: 1000,
  };
}

/** The rule over the writes of one process. */
export class BatchLimit {
  private value: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  private readonly rule: BatchRule;

  constructor(
    private readonly maxBatchDocs: number,
    private readonly targetMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.value = maxBatchDocs;
    this.rule = batchRule(maxBatchDocs);
  }

  get docs(): number {
    return this.value;
  }

  /** One write's outcome: its latency, and whether the database answered it. */
  observe(latencyMs: number, ok: boolean): void {
    if (ok && latencyMs <= this.targetMs) {
      if (latencyMs <= this.targetMs / 2)
        this.value = Math.min(this.maxBatchDocs, this.value + this.rule.stepDocs);
      return;
    }
    if (this.now() - this.lastCut < this.rule.cooldownMs) return;
    this.lastCut = this.now();
    this.value = cut(this.value, latencyMs, this.targetMs, this.rule.minBatch);
  }
}

/** A slow or failed write's cut: by its overshoot, at least by half, never below the minimum. */
export function cut(docs: number, latencyMs: number, targetMs: number, minBatch: number): number {
  const factor = Math.min(0.5, targetMs / Math.max(latencyMs, 1));
  return Math.max(minBatch, Math.floor(docs * factor));
}
