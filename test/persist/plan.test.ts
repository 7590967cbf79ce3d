/**
 * plan(): what becomes of each item of a write, for every kind of verdict (the
 * table in functions/persist/plan.ts), without a server.
 */
import { describe, expect, it } from 'vitest';
import { plan, suspect } from '../../functions/persist/plan.js';
import type { InsertVerdict, Refusal } from '../../functions/persist/verdict.js';

interface Row {
  name: string;
  verdict: InsertVerdict;
  /** Attempts each item had before this write. */
  attempts: number[];
  serverAnswers: boolean;
  want: {
    committed: number[];
    duplicates?: number[];
    dead?: Array<[number, string]>;
    failure?: { items: number[]; reason: string; halves: boolean; detail: RegExp };
    split?: [number[], number[]];
    unavailable?: boolean;
    suspect?: boolean;
  };
}

const refusal = (code: number, content: boolean): Refusal => ({
  code,
  message: `code ${code}`,
  content,
});

const rows: Row[] = [
  {
    name: 'committed: every item, none held before',
    verdict: { kind: 'committed', duplicates: [] },
    attempts: [0, 0, 0],
    serverAnswers: false,
    want: { committed: [0, 1, 2] },
  },
  {
    name: 'committed with duplicates: all committed, the held ones named',
    verdict: { kind: 'committed', duplicates: [0, 2] },
    attempts: [0, 1, 0],
    serverAnswers: false,
    want: { committed: [0, 1, 2], duplicates: [0, 2] },
  },
  {
    name: 'partial: a content refusal is dead, the rest committed',
    verdict: {
      kind: 'partial',
      refused: new Map([[1, refusal(57, true)]]),
      duplicates: [],
    },
    attempts: [0, 0, 0],
    serverAnswers: false,
    want: { committed: [0, 2], dead: [[1, '57: code 57']] },
  },
  {
    name: 'partial: a refusal not known to be the content is retried, a duplicate committed',
    verdict: {
      kind: 'partial',
      refused: new Map([
        [0, refusal(91, false)],
        [2, refusal(2, true)],
      ]),
      duplicates: [1],
    },
    attempts: [0, 0, 0, 0],
    serverAnswers: false,
    want: {
      committed: [1, 3],
      duplicates: [1],
      dead: [[2, '2: code 2']],
      failure: { items: [0], reason: 'refused', halves: false, detail: /not known/ },
    },
  },
  {
    name: 'unavailable, first try: all retried whole, the database unavailable',
    verdict: { kind: 'unavailable', reason: 'MongoNetworkError: closed' },
    attempts: [0, 0],
    serverAnswers: true,
    want: {
      committed: [],
      unavailable: true,
      suspect: false,
      failure: { items: [0, 1], reason: 'unavailable', halves: false, detail: /closed/ },
    },
  },
  {
    name: 'unavailable again while the server answers a ping: the batch is suspect, retried in halves',
    verdict: { kind: 'unavailable', reason: 'MongoNetworkError: closed' },
    attempts: [1, 0, 1],
    serverAnswers: true,
    want: {
      committed: [],
      unavailable: false,
      suspect: true,
      failure: {
        items: [0, 1, 2],
        reason: 'unknown',
        halves: true,
        detail: /server answers: split/,
      },
    },
  },
  {
    name: 'unavailable again, the server does not answer: retried whole',
    verdict: { kind: 'unavailable', reason: 'timeout' },
    attempts: [1, 1],
    serverAnswers: false,
    want: {
      committed: [],
      unavailable: true,
      suspect: true,
      failure: { items: [0, 1], reason: 'unavailable', halves: false, detail: /timeout/ },
    },
  },
  {
    name: 'unavailable, one item tried before: never split (nothing to split)',
    verdict: { kind: 'unavailable', reason: 'timeout' },
    attempts: [3],
    serverAnswers: true,
    want: {
      committed: [],
      unavailable: true,
      suspect: false,
      failure: { items: [0], reason: 'unavailable', halves: false, detail: /timeout/ },
    },
  },
  {
    name: 'split by content, one item: it is the offender, dead',
    verdict: { kind: 'split', reason: 'BSONError: too large', content: true },
    attempts: [0],
    serverAnswers: false,
    want: { committed: [], dead: [[0, 'BSONError: too large']] },
  },
  {
    name: 'split by content, several: halves at once (the first half the larger)',
    verdict: { kind: 'split', reason: 'BSONError', content: true },
    attempts: [0, 0, 0, 0, 0],
    serverAnswers: false,
    want: {
      committed: [],
      split: [
        [0, 1, 2],
        [3, 4],
      ],
    },
  },
  {
    name: 'split, not content (an error nobody foresaw): not committed, retried in halves',
    verdict: { kind: 'split', reason: 'TypeError: odd', content: false },
    attempts: [0, 0],
    serverAnswers: false,
    want: {
      committed: [],
      failure: { items: [0, 1], reason: 'unknown', halves: true, detail: /odd/ },
    },
  },
  {
    name: 'split, not content, one item: retried (never dead without evidence)',
    verdict: { kind: 'split', reason: 'TypeError: odd', content: false },
    attempts: [0],
    serverAnswers: false,
    want: {
      committed: [],
      failure: { items: [0], reason: 'unknown', halves: true, detail: /odd/ },
    },
  },
];

describe('plan', () => {
  it.each(rows)('$name', (row) => {
    const items = row.attempts.map((attempts, index) => ({ index, ticket: { attempts } }));
    const out = plan(row.verdict, items, row.serverAnswers);
    const at = (list: Array<{ index: number }>) => list.map((item) => item.index);
    expect(at(out.committed)).toEqual(row.want.committed);
    expect(at(out.duplicates)).toEqual(row.want.duplicates ?? []);
    expect(out.dead.map(({ item, reason }) => [item.index, reason])).toEqual(row.want.dead ?? []);
    expect(out.split?.map(at)).toEqual(row.want.split);
    expect(out.unavailable).toBe(row.want.unavailable ?? false);
    if (row.want.failure) {
      expect(out.failure).toBeDefined();
      const { items: failed, reason, halves, detail } = out.failure ?? {};
      expect({ items: at(failed ?? []), reason, halves }).toEqual({
        items: row.want.failure.items,
        reason: row.want.failure.reason,
        halves: row.want.failure.halves,
      });
      expect(detail).toMatch(row.want.failure.detail);
    } else expect(out.failure).toBeUndefined();
    if (row.want.suspect !== undefined) expect(suspect(row.verdict, items)).toBe(row.want.suspect);
  });

  it('accounts for every item exactly once (committed, dead, failed or split)', () => {
    for (const row of rows) {
      const items = row.attempts.map((attempts, index) => ({ index, ticket: { attempts } }));
      const out = plan(row.verdict, items, row.serverAnswers);
      const seen = [
        ...out.committed,
        ...out.dead.map(({ item }) => item),
        ...(out.failure?.items ?? []),
        ...(out.split?.flat() ?? []),
      ].map((item) => item.index);
      expect(seen.sort(), row.name).toEqual(items.map((item) => item.index));
    }
  });
});
