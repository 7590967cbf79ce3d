/**
 * The largest batch, adapted to the database's write latency (AIMD), in one
 * place: a write slower than the target (or failed) halves it, at most once
 * per cooldown, down to a minimum; a fast one adds a step back, up to
 * MAX_BATCH_DOCS. Backing off the rate alone cannot bring a slow disk's write
 * latency down (fewer writes make each batch larger); smaller batches do, and
 * what is not written yet waits in the stream, which is what it is for.
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
      this.value = Math.min(this.maxBatchDocs, this.value + this.rule.stepDocs);
      return;
    }
    if (this.now() - this.lastCut < this.rule.cooldownMs) return;
    this.lastCut = this.now();
    this.value = Math.max(this.rule.minBatch, Math.floor(this.value / 2));
  }
}
