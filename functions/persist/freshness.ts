/**
 * Whether what this process read of the stream is still as it was: only a
 * write takes an entry out, every write is under the budget's single flight,
 * and a grant says whether the previous one was this process's own
 * (budget-acquire-1.lua). So what was read after a grant that followed this
 * process's own, or at any time since, was not touched by another writer: it
 * needs no look at the stream before it is written. Anything read before the
 * last grant that followed another writer's may have been written and taken
 * out by it: the settling at a grant asks the stream about those (settle.ts).
 *
 * Reads are stamped with the count of this process's grants when they began
 * (`stamp`); every grant of the process is counted, whatever it writes
 * (`granted`, from the budget the committer writes under).
 */
import type { Grant, WriteBudget } from './spacer.js';

export class Freshness {
  private grants = 0;
  /** Reads stamped before this count may be stale. Nothing read before the first grant is trusted. */
  private trustedFrom = 1;

  /** One grant of this process, in order. */
  granted(grant: Grant): void {
    this.grants++;
    if (!grant.followsOwn) this.trustedFrom = this.grants;
  }

  /** The stamp of a read that begins now. */
  stamp(): number {
    return this.grants;
  }

  /** Whether a read stamped `readAt` is still as the stream is (undefined: not known). */
  current(readAt: number | undefined): boolean {
    return readAt !== undefined && readAt >= this.trustedFrom;
  }
}

/** The budget `budget`, with every grant it gives this process counted by `freshness`. */
export function counted(budget: WriteBudget, freshness: Freshness): WriteBudget {
  return {
    run: (write, outcome) =>
      budget.run((grant) => {
        freshness.granted(grant);
        return write(grant);
      }, outcome),
    get batchLimit() {
      return budget.batchLimit;
    },
    get singleFlight() {
      return budget.singleFlight;
    },
  };
}
