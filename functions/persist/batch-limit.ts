/**
 * The largest batch, adapted to how fast the database takes documents, in one
 * place. Each write the database answered says its speed then: the documents
 * it held ÷ its command's latency. The largest batch aims at what that speed
 * writes in AIM × DB_LATENCY_TARGET_MS:
 *   - a write slower than the target cuts it to that, at most once per
 *     cooldown (one slow period, one cut);
 *   - a write the database did not answer halves it (no speed is known), at
 *     most once per cooldown too, and so does a slow command of no documents
 *     (an index made);
 *   - a write within the target that held at least half the largest batch
 *     (so its speed says something of a full one) lets it grow to that, by at
 *     most GROWTH times per write;
 * never below a minimum, never above MAX_BATCH_DOCS.
 *
 * Why aim, not halve and step: a database's fixed cost per command (its commit,
 * its journal) is paid once per write, so the largest writes within the target
 * take the most documents per second: at 100 IOPS a write of 1,000 documents
 * took 0.45 to 0.5 ms a document, one of 2,500 or more 0.37 to 0.39 ms. Halving
 * on a slow write and adding a fixed step on a fast one kept the batches between
 * a third and two thirds of what the target allows. Backing off the rate alone
 * cannot bring a slow disk's write latency down (fewer writes make each batch
 * larger); smaller batches do, and what is not written yet waits in the stream,
 * which is what it is for.
 *
 * The budget shared by every replica keeps one figure in Redis
 * (budget-release-1.lua applies this rule, with these figures, to every
 * replica's writes); a budget of this process alone keeps a BatchLimit.
 */
import type { BatchRule } from '../shared/redis/scripts.js';

/** The rule's figures for a MAX_BATCH_DOCS. */
export function batchRule(maxBatchDocs: number): BatchRule {
  return { minBatch: Math.min(10, maxBatchDocs), cooldownMs: 1000, aim: 0.85, growth: 1.25 };
}

/** One write, as the rule sees it. */
export interface BatchWrite {
  /** Its command's latency, ms. */
  latencyMs: number;
  /** The database answered it. */
  ok: boolean;
  /** The documents it held. */
  docs: number;
}

/**
 * The largest batch after a write: `mayCut` says whether the cooldown since the
 * last cut has passed (a slow or unanswered write outside it changes nothing).
 */
export function adapt(
  batch: number,
  write: BatchWrite,
  targetMs: number,
  rule: BatchRule,
  maxBatch: number,
  mayCut: boolean,
): number {
  const { latencyMs, ok, docs } = write;
  const fit = Math.floor((docs * rule.aim * targetMs) / Math.max(latencyMs, 1));
  if (!ok || latencyMs > targetMs) {
    if (!mayCut) return batch;
    const known = ok && docs > 0;
    return Math.max(rule.minBatch, known ? Math.min(batch, fit) : Math.floor(batch / 2));
  }
  if (docs * 2 < batch) return batch;
  return Math.min(maxBatch, Math.max(batch, Math.min(Math.floor(batch * rule.growth), fit)));
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

  /** One write's outcome. */
  observe(write: BatchWrite): void {
    const slow = !write.ok || write.latencyMs > this.targetMs;
    const mayCut = this.now() - this.lastCut >= this.rule.cooldownMs;
    const { targetMs, rule, maxBatchDocs } = this;
    this.value = adapt(this.value, write, targetMs, rule, maxBatchDocs, mayCut);
    if (slow && mayCut) this.lastCut = this.now();
  }
}
