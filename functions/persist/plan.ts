/**
 * What becomes of the items of one write, from the database's verdict on it
 * (verdict.ts): pure, so that every rule of the table below is tested without a
 * server (test/persist/plan.test.ts).
 *
 *   verdict       items                           plan
 *   committed     any                             all committed (those held before: duplicates)
 *   partial       per item                        not refused: committed; refused for its
 *                                                 content: dead; refused otherwise: retried
 *   unavailable   several, tried before, and the  retried in halves ("unknown": the batch
 *                 server answers a ping now       itself is suspect)
 *   unavailable   otherwise                       retried; the database is unavailable
 *   split         one, content                    dead
 *   split         several, content                halves tried at once (no attempt counted)
 *   split         not content (unforeseen)        retried in halves ("unknown")
 */
import type { InsertVerdict } from './verdict.js';

/** Why a write did not commit, as spillway_persist_batch_failures_total's `reason` says. */
export type FailureReason = 'refused' | 'unavailable' | 'unknown' | 'unexpected';

/** Items not committed: retried with backoff (in halves when `halves`), parked after their attempts. */
export interface Failure<T> {
  items: T[];
  reason: FailureReason;
  detail: string;
  halves: boolean;
}

export interface Plan<T> {
  /** Stored: inserted, or held before. */
  committed: T[];
  /** Of the committed, those the database held before (by _id). */
  duplicates: T[];
  /** Refused for their own content, with the refusal. */
  dead: Array<{ item: T; reason: string }>;
  /** Not committed. */
  failure: Failure<T> | undefined;
  /** A document explains the refusal: these halves are tried at once. */
  split: [T[], T[]] | undefined;
  /** The database did not answer: nothing more of this round would get through. */
  unavailable: boolean;
}

interface Tried {
  readonly ticket: { readonly attempts: number };
}

/** An unavailable verdict for a batch that failed before: worth asking whether the server answers. */
export function suspect(verdict: InsertVerdict, items: readonly Tried[]): boolean {
  return (
    verdict.kind === 'unavailable' &&
    items.length > 1 &&
    items.some((item) => item.ticket.attempts > 0)
  );
}

function empty<T>(): Plan<T> {
  return {
    committed: [],
    duplicates: [],
    dead: [],
    failure: undefined,
    split: undefined,
    unavailable: false,
  };
}

const fail = <T>(items: T[], reason: FailureReason, detail: string, halves = false) => ({
  items,
  reason,
  detail,
  halves,
});

/**
 * The plan for `items` (in the order they were written) and the verdict on them.
 * `serverAnswers`: the server answered a ping after an unavailable verdict (ask
 * only when `suspect` says so).
 */
export function plan<T extends Tried>(
  verdict: InsertVerdict,
  items: readonly T[],
  serverAnswers: boolean,
): Plan<T> {
  const out = empty<T>();
  switch (verdict.kind) {
    case 'committed':
      out.committed = [...items];
      out.duplicates = verdict.duplicates.map((i) => items[i] as T);
      return out;
    case 'partial': {
      out.duplicates = verdict.duplicates.map((i) => items[i] as T);
      const retry: T[] = [];
      items.forEach((item, index) => {
        const refusal = verdict.refused.get(index);
        if (!refusal) out.committed.push(item);
        else if (refusal.content)
          out.dead.push({ item, reason: `${refusal.code}: ${refusal.message}` });
        else retry.push(item);
      });
      if (retry.length > 0)
        out.failure = fail(retry, 'refused', `refused for a reason not known to be the document's`);
      return out;
    }
    case 'unavailable':
      // A batch that failed before while the server answers a ping now is suspect
      // itself (a server can drop the connection over one document): split it.
      if (serverAnswers && suspect(verdict, items)) {
        out.failure = fail(
          [...items],
          'unknown',
          `${verdict.reason} (the server answers: split)`,
          true,
        );
        return out;
      }
      out.unavailable = true;
      out.failure = fail([...items], 'unavailable', verdict.reason);
      return out;
    case 'split':
      if (items.length === 1 && verdict.content)
        out.dead = items.map((item) => ({ item, reason: verdict.reason }));
      else if (verdict.content) {
        const half = Math.ceil(items.length / 2);
        out.split = [items.slice(0, half), items.slice(half)];
      } else out.failure = fail([...items], 'unknown', verdict.reason, true);
      return out;
  }
}
