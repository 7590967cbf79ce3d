/**
 * The part of PromQL the operators' dashboard and alert rules use: parsed into
 * a tree (to list the metric names an expression reads), and evaluated over
 * series sampled by the benchmark (to draw the dashboard's panels from a real
 * run, as Prometheus would have them).
 *
 * Parsed: numbers, strings, selectors with label matchers (=, !=, =~, !~) and a
 * range, function calls, aggregations (sum, max, min, avg, count, with by /
 * without before or after), binary operators (* / % + - comparisons with bool,
 * and / or / unless) with on / ignoring / group_left / group_right, unary minus,
 * parentheses, offset, and subqueries [range:step].
 *
 * Evaluated: rate, irate, increase, delta, deriv, the *_over_time functions,
 * histogram_quantile, clamp_min, clamp_max, abs, vector, scalar; aggregations;
 * binary operators between scalars, between a vector and a scalar, and between
 * vectors matched one-to-one on their labels (less __name__, or as on/ignoring
 * say). rate and increase are the counter's growth over the samples inside the
 * window (resets handled) without Prometheus's extrapolation to its edges.
 */

// --- the tree ---------------------------------------------------------------------

export type Matcher = { label: string; op: '=' | '!=' | '=~' | '!~'; value: string };

export type Node =
  | { type: 'number'; value: number }
  | { type: 'string'; value: string }
  | { type: 'selector'; name: string; matchers: Matcher[]; rangeMs?: number; offsetMs?: number }
  | { type: 'call'; fn: string; args: Node[] }
  | {
      type: 'aggregate';
      op: string;
      grouping: { mode: 'by' | 'without'; labels: string[] } | undefined;
      param: Node | undefined;
      expr: Node;
    }
  | {
      type: 'binary';
      op: string;
      lhs: Node;
      rhs: Node;
      bool: boolean;
      matching: { mode: 'on' | 'ignoring'; labels: string[] } | undefined;
    }
  | { type: 'unary'; op: '-'; expr: Node }
  | { type: 'subquery'; expr: Node; rangeMs: number; stepMs: number };

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'count',
  'stddev',
  'stdvar',
  'topk',
  'bottomk',
  'quantile',
  'group',
  'count_values',
]);

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool']);

type Token = { kind: 'ident' | 'number' | 'string' | 'duration' | 'op' | 'punct'; text: string };

const DURATION_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  y: 31_536_000_000,
};

/** "5m", "1h30m", "250ms" → ms. */
export function durationMs(text: string): number {
  let total = 0;
  let rest = text;
  while (rest !== '') {
    const m = /^(\d+)(ms|s|m|h|d|w|y)/.exec(rest);
    if (!m) throw new Error(`bad duration ${JSON.stringify(text)}`);
    total += Number(m[1]) * (DURATION_MS[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  return total;
}

const LEXEMES: { kind: Token['kind']; re: RegExp; inBracket?: boolean }[] = [
  { kind: 'duration', re: /^(\d+(ms|s|m|h|d|w|y))+/, inBracket: true },
  { kind: 'string', re: /^"((?:[^"\\]|\\.)*)"|^'((?:[^'\\]|\\.)*)'|^`([^`]*)`/ },
  { kind: 'duration', re: /^(\d+(ms|s|m|h|d|w|y))+(?![\w.])/ },
  { kind: 'number', re: /^(0x[0-9a-fA-F]+|\d*\.?\d+(e[+-]?\d+)?|Inf|NaN)(?![\w])/ },
  { kind: 'ident', re: /^[a-zA-Z_:][a-zA-Z0-9_:]*/ },
  { kind: 'op', re: /^(==|!=|>=|<=|=~|!~|[-+*/%^<>=])/ },
  { kind: 'punct', re: /^[(){}[\],:]/ },
];

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let bracket = false; // inside [...]: durations
  while (i < source.length) {
    const c = source[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < source.length && source[i] !== '\n') i++;
      continue;
    }
    const rest = source.slice(i);
    const lexeme = LEXEMES.find((l) => (bracket || !l.inBracket) && l.re.test(rest));
    const m = lexeme?.re.exec(rest);
    if (!lexeme || !m) throw new Error(`unexpected ${JSON.stringify(c)} at ${i} in ${source}`);
    const text =
      lexeme.kind === 'string' ? (m[1] ?? m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1') : m[0];
    if (text === '[' && lexeme.kind === 'punct') bracket = true;
    if (text === ']' && lexeme.kind === 'punct') bracket = false;
    tokens.push({ kind: lexeme.kind, text });
    i += m[0].length;
  }
  return tokens;
}

const PRECEDENCE: Record<string, number> = {
  or: 1,
  and: 2,
  unless: 2,
  '==': 3,
  '!=': 3,
  '<=': 3,
  '<': 3,
  '>=': 3,
  '>': 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
  atan2: 5,
  '^': 6,
};

/** Parses a PromQL expression of the subset above; throws on anything else. */
export function parsePromQL(source: string): Node {
  const tokens = tokenize(source);
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => {
    const token = tokens[pos++];
    if (!token) throw new Error(`unexpected end of ${source}`);
    return token;
  };
  const expect = (text: string) => {
    const token = next();
    if (token.text !== text)
      throw new Error(`expected ${text}, got ${token.text} in ${source} (token ${pos})`);
  };
  const isPunct = (text: string) => peek()?.kind === 'punct' && peek()?.text === text;

  function labelList(): string[] {
    expect('(');
    const labels: string[] = [];
    while (!isPunct(')')) {
      labels.push(next().text);
      if (isPunct(',')) next();
    }
    expect(')');
    return labels;
  }

  function binaryOp(): string | undefined {
    const token = peek();
    if (!token) return undefined;
    if (token.kind === 'op' && token.text in PRECEDENCE) return token.text;
    if (token.kind === 'ident' && ['and', 'or', 'unless', 'atan2'].includes(token.text))
      return token.text;
    return undefined;
  }

  function expression(minPrecedence = 0): Node {
    let lhs = unary();
    for (;;) {
      const op = binaryOp();
      if (op === undefined) break;
      const precedence = PRECEDENCE[op] as number;
      if (precedence <= minPrecedence && !(op === '^' && precedence === minPrecedence)) break;
      next();
      let bool = false;
      let matching: { mode: 'on' | 'ignoring'; labels: string[] } | undefined;
      if (peek()?.text === 'bool') {
        next();
        bool = true;
      }
      if (peek()?.text === 'on' || peek()?.text === 'ignoring') {
        const mode = next().text as 'on' | 'ignoring';
        matching = { mode, labels: labelList() };
      }
      if (peek()?.text === 'group_left' || peek()?.text === 'group_right') {
        next();
        if (isPunct('(')) labelList();
      }
      // ^ is right-associative; the others left.
      const rhs = expression(op === '^' ? precedence - 1 : precedence);
      lhs = { type: 'binary', op, lhs, rhs, bool, matching };
    }
    return lhs;
  }

  function unary(): Node {
    const token = peek();
    if (token?.kind === 'op' && (token.text === '-' || token.text === '+')) {
      next();
      const expr = unary();
      return token.text === '-' ? { type: 'unary', op: '-', expr } : expr;
    }
    return postfix(primary());
  }

  function postfix(node: Node): Node {
    let out = node;
    for (;;) {
      if (isPunct('[')) {
        next();
        const range = durationMs(next().text);
        if (isPunct(':')) {
          next();
          const step = isPunct(']') ? 0 : durationMs(next().text);
          expect(']');
          out = { type: 'subquery', expr: out, rangeMs: range, stepMs: step };
        } else {
          expect(']');
          if (out.type !== 'selector') throw new Error(`a range needs a selector in ${source}`);
          out = { ...out, rangeMs: range };
        }
      } else if (peek()?.kind === 'ident' && peek()?.text === 'offset') {
        next();
        const offset = durationMs(next().text);
        if (out.type === 'selector') out = { ...out, offsetMs: offset };
      } else return out;
    }
  }

  function primary(): Node {
    const token = next();
    if (token.kind === 'number') return { type: 'number', value: Number(token.text) };
    if (token.kind === 'string') return { type: 'string', value: token.text };
    if (token.kind === 'punct' && token.text === '(') {
      const inner = expression();
      expect(')');
      return inner;
    }
    if (token.kind === 'punct' && token.text === '{') {
      pos--;
      return selector('');
    }
    if (token.kind !== 'ident') throw new Error(`unexpected ${token.text} in ${source}`);
    if (
      AGGREGATIONS.has(token.text) &&
      (isPunct('(') || ['by', 'without'].includes(peek()?.text ?? ''))
    ) {
      let grouping: { mode: 'by' | 'without'; labels: string[] } | undefined;
      if (peek()?.text === 'by' || peek()?.text === 'without')
        grouping = { mode: next().text as 'by' | 'without', labels: labelList() };
      expect('(');
      let param: Node | undefined;
      let expr = expression();
      if (isPunct(',')) {
        next();
        param = expr;
        expr = expression();
      }
      expect(')');
      if (peek()?.text === 'by' || peek()?.text === 'without')
        grouping = { mode: next().text as 'by' | 'without', labels: labelList() };
      return { type: 'aggregate', op: token.text, grouping, param, expr };
    }
    if (isPunct('(') && !KEYWORDS.has(token.text)) {
      next();
      const args: Node[] = [];
      while (!isPunct(')')) {
        args.push(expression());
        if (isPunct(',')) next();
      }
      expect(')');
      return { type: 'call', fn: token.text, args };
    }
    return selector(token.text);
  }

  function selector(name: string): Node {
    const matchers: Matcher[] = [];
    let metric = name;
    if (isPunct('{')) {
      next();
      while (!isPunct('}')) {
        const label = next().text;
        const op = next().text as Matcher['op'];
        if (!['=', '!=', '=~', '!~'].includes(op))
          throw new Error(`bad matcher ${label}${op} in ${source}`);
        const value = next();
        if (value.kind !== 'string') throw new Error(`matcher value must be a string in ${source}`);
        if (label === '__name__' && op === '=') metric = value.text;
        else matchers.push({ label, op, value: value.text });
        if (isPunct(',')) next();
      }
      expect('}');
    }
    if (metric === '') throw new Error(`a selector without a metric name in ${source}`);
    return { type: 'selector', name: metric, matchers };
  }

  const tree = expression();
  if (pos !== tokens.length)
    throw new Error(`unexpected ${tokens[pos]?.text} at token ${pos} in ${source}`);
  return tree;
}

/** Every metric name an expression reads. */
export function metricNames(node: Node, into = new Set<string>()): Set<string> {
  switch (node.type) {
    case 'selector':
      into.add(node.name);
      break;
    case 'call':
      for (const arg of node.args) metricNames(arg, into);
      break;
    case 'aggregate':
      if (node.param) metricNames(node.param, into);
      metricNames(node.expr, into);
      break;
    case 'binary':
      metricNames(node.lhs, into);
      metricNames(node.rhs, into);
      break;
    case 'unary':
    case 'subquery':
      metricNames(node.expr, into);
      break;
  }
  return into;
}

/** Grafana's interval variables, replaced by a fixed window for parsing and local evaluation. */
export function withGrafanaVariables(expr: string, rateInterval = '1m'): string {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('$__interval', rateInterval)
    .replaceAll('$__range', rateInterval);
}

// --- evaluation -------------------------------------------------------------------

/** Series sampled at common times (ms); a series absent from a scrape has undefined there. */
export interface SeriesStore {
  times: number[];
  series: { name: string; labels: Record<string, string>; values: (number | undefined)[] }[];
}

type Labels = Record<string, string>;
type Vector = { labels: Labels; value: number }[];
type Value = { kind: 'scalar'; value: number } | { kind: 'vector'; vector: Vector };
type RangeVector = { labels: Labels; points: { t: number; v: number }[] }[];

const keyOf = (labels: Labels, drop: (name: string) => boolean = () => false) =>
  Object.keys(labels)
    .filter((name) => !drop(name))
    .sort()
    .map((name) => `${name}=${labels[name]}`)
    .join(',');

function matches(labels: Labels, matcher: Matcher): boolean {
  const value = labels[matcher.label] ?? '';
  switch (matcher.op) {
    case '=':
      return value === matcher.value;
    case '!=':
      return value !== matcher.value;
    case '=~':
      return new RegExp(`^(?:${matcher.value})$`).test(value);
    case '!~':
      return !new RegExp(`^(?:${matcher.value})$`).test(value);
  }
}

const withoutName = (labels: Labels): Labels => {
  const { __name__: _, ...rest } = labels;
  return rest;
};

/** Prometheus's histogram_quantile over one histogram's buckets. */
export function bucketQuantile(q: number, buckets: { le: number; count: number }[]): number {
  const sorted = [...buckets].sort((x, y) => x.le - y.le);
  if (sorted.length < 2 || sorted.at(-1)?.le !== Number.POSITIVE_INFINITY) return Number.NaN;
  const total = sorted.at(-1)?.count ?? 0;
  if (total === 0 || Number.isNaN(total)) return Number.NaN;
  if (q < 0) return Number.NEGATIVE_INFINITY;
  if (q > 1) return Number.POSITIVE_INFINITY;
  const rank = q * total;
  let i = sorted.findIndex((b) => b.count >= rank);
  if (i === sorted.length - 1) return sorted[sorted.length - 2]?.le ?? Number.NaN;
  if (i < 0) i = sorted.length - 1;
  const bucket = sorted[i] as { le: number; count: number };
  const start = i === 0 ? Math.min(0, bucket.le) : (sorted[i - 1]?.le ?? 0);
  const below = i === 0 ? 0 : (sorted[i - 1]?.count ?? 0);
  const inBucket = bucket.count - below;
  if (inBucket === 0) return bucket.le;
  return start + (bucket.le - start) * ((rank - below) / inBucket);
}

function counterIncrease(points: { t: number; v: number }[]): number {
  let increase = 0;
  for (let i = 1; i < points.length; i++) {
    const prev = (points[i - 1] as { v: number }).v;
    const cur = (points[i] as { v: number }).v;
    increase += cur >= prev ? cur - prev : cur; // a reset starts from 0
  }
  return increase;
}

/** Evaluates an expression at time index `at` of the store. */
export function evaluate(node: Node, store: SeriesStore, at: number): Value {
  const now = store.times[at] ?? 0;

  function rangeOf(n: Node): RangeVector {
    if (n.type !== 'selector' || n.rangeMs === undefined)
      throw new Error('a range function needs a selector with a range');
    const end = now - (n.offsetMs ?? 0);
    const start = end - n.rangeMs;
    const out: RangeVector = [];
    for (const series of store.series) {
      if (series.name !== n.name || !n.matchers.every((m) => matches(series.labels, m))) continue;
      const points: { t: number; v: number }[] = [];
      for (let i = 0; i < store.times.length; i++) {
        const t = store.times[i] as number;
        const v = series.values[i];
        if (t > start && t <= end && v !== undefined) points.push({ t, v });
      }
      if (points.length > 0)
        out.push({ labels: { __name__: series.name, ...series.labels }, points });
    }
    return out;
  }

  const vec = (v: Value): Vector => {
    if (v.kind !== 'vector') throw new Error('expected a vector');
    return v.vector;
  };
  const scalarOf = (n: Node): number => {
    const v = ev(n);
    if (v.kind !== 'scalar') throw new Error('expected a scalar');
    return v.value;
  };

  function overRange(
    n: Node,
    f: (points: { t: number; v: number }[]) => number | undefined,
  ): Value {
    const vector: Vector = [];
    for (const series of rangeOf(n)) {
      const value = f(series.points);
      if (value !== undefined && !Number.isNaN(value))
        vector.push({ labels: withoutName(series.labels), value });
    }
    return { kind: 'vector', vector };
  }

  function ev(n: Node): Value {
    switch (n.type) {
      case 'number':
        return { kind: 'scalar', value: n.value };
      case 'string':
        throw new Error('a string is not a value');
      case 'selector': {
        if (n.rangeMs !== undefined) throw new Error('a range vector outside a function');
        const vector: Vector = [];
        for (const series of store.series) {
          if (series.name !== n.name || !n.matchers.every((m) => matches(series.labels, m)))
            continue;
          // The latest sample at or before now (within 5 minutes, as Prometheus's lookback).
          for (let i = at; i >= 0; i--) {
            const v = series.values[i];
            if (v !== undefined) {
              if (now - (store.times[i] as number) <= 300_000)
                vector.push({ labels: { __name__: series.name, ...series.labels }, value: v });
              break;
            }
          }
        }
        return { kind: 'vector', vector };
      }
      case 'unary': {
        const v = ev(n.expr);
        if (v.kind === 'scalar') return { kind: 'scalar', value: -v.value };
        return {
          kind: 'vector',
          vector: v.vector.map((s) => ({ labels: withoutName(s.labels), value: -s.value })),
        };
      }
      case 'call':
        return call(n.fn, n.args);
      case 'aggregate':
        return aggregate(n);
      case 'binary':
        return binary(n);
      case 'subquery':
        throw new Error('subqueries are not evaluated here');
    }
  }

  function call(fn: string, args: Node[]): Value {
    const arg = (i: number) => args[i] as Node;
    switch (fn) {
      case 'rate':
        return overRange(arg(0), (p) => {
          if (p.length < 2) return undefined;
          const seconds = ((p.at(-1)?.t ?? 0) - (p[0]?.t ?? 0)) / 1000;
          return seconds > 0 ? counterIncrease(p) / seconds : undefined;
        });
      case 'irate':
        return overRange(arg(0), (p) => {
          if (p.length < 2) return undefined;
          const last = p.at(-1) as { t: number; v: number };
          const prev = p.at(-2) as { t: number; v: number };
          const diff = last.v >= prev.v ? last.v - prev.v : last.v;
          return diff / ((last.t - prev.t) / 1000);
        });
      case 'increase': {
        const range = (arg(0) as { rangeMs?: number }).rangeMs ?? 0;
        return overRange(arg(0), (p) => {
          if (p.length < 2) return undefined;
          const seconds = ((p.at(-1)?.t ?? 0) - (p[0]?.t ?? 0)) / 1000;
          return seconds > 0 ? (counterIncrease(p) / seconds) * (range / 1000) : undefined;
        });
      }
      case 'delta':
        return overRange(arg(0), (p) =>
          p.length < 2 ? undefined : (p.at(-1)?.v ?? 0) - (p[0]?.v ?? 0),
        );
      case 'deriv':
        return overRange(arg(0), (p) => {
          if (p.length < 2) return undefined;
          const n = p.length;
          const mt = p.reduce((s, x) => s + x.t, 0) / n;
          const mv = p.reduce((s, x) => s + x.v, 0) / n;
          let num = 0;
          let den = 0;
          for (const x of p) {
            num += (x.t - mt) * (x.v - mv);
            den += (x.t - mt) ** 2;
          }
          return den === 0 ? undefined : (num / den) * 1000;
        });
      case 'max_over_time':
        return overRange(arg(0), (p) => Math.max(...p.map((x) => x.v)));
      case 'min_over_time':
        return overRange(arg(0), (p) => Math.min(...p.map((x) => x.v)));
      case 'avg_over_time':
        return overRange(arg(0), (p) => p.reduce((s, x) => s + x.v, 0) / p.length);
      case 'sum_over_time':
        return overRange(arg(0), (p) => p.reduce((s, x) => s + x.v, 0));
      case 'last_over_time':
        return overRange(arg(0), (p) => p.at(-1)?.v);
      case 'histogram_quantile': {
        const q = scalarOf(arg(0));
        const groups = new Map<
          string,
          { labels: Labels; buckets: { le: number; count: number }[] }
        >();
        for (const s of vec(ev(arg(1)))) {
          const le = s.labels.le;
          if (le === undefined) continue;
          const labels = withoutName(s.labels);
          delete labels.le;
          const key = keyOf(labels);
          const group = groups.get(key) ?? { labels, buckets: [] };
          group.buckets.push({
            le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le),
            count: s.value,
          });
          groups.set(key, group);
        }
        const vector: Vector = [];
        for (const group of groups.values()) {
          const value = bucketQuantile(q, group.buckets);
          if (!Number.isNaN(value)) vector.push({ labels: group.labels, value });
        }
        return { kind: 'vector', vector };
      }
      case 'clamp_min':
      case 'clamp_max': {
        const limit = scalarOf(arg(1));
        const f = fn === 'clamp_min' ? Math.max : Math.min;
        return {
          kind: 'vector',
          vector: vec(ev(arg(0))).map((s) => ({
            labels: withoutName(s.labels),
            value: f(s.value, limit),
          })),
        };
      }
      case 'abs':
        return {
          kind: 'vector',
          vector: vec(ev(arg(0))).map((s) => ({
            labels: withoutName(s.labels),
            value: Math.abs(s.value),
          })),
        };
      case 'vector':
        return { kind: 'vector', vector: [{ labels: {}, value: scalarOf(arg(0)) }] };
      case 'scalar': {
        const v = vec(ev(arg(0)));
        return {
          kind: 'scalar',
          value: v.length === 1 ? (v[0] as { value: number }).value : Number.NaN,
        };
      }
      default:
        throw new Error(`function ${fn} is not evaluated here`);
    }
  }

  function aggregate(n: Extract<Node, { type: 'aggregate' }>): Value {
    const input = vec(ev(n.expr));
    const groups = new Map<string, { labels: Labels; values: number[] }>();
    for (const s of input) {
      let labels: Labels = {};
      if (n.grouping?.mode === 'by')
        for (const name of n.grouping.labels) {
          const value = s.labels[name];
          if (value !== undefined) labels[name] = value;
        }
      else if (n.grouping?.mode === 'without') {
        labels = withoutName(s.labels);
        for (const name of n.grouping.labels) delete labels[name];
      }
      const key = keyOf(labels);
      const group = groups.get(key) ?? { labels, values: [] };
      group.values.push(s.value);
      groups.set(key, group);
    }
    const vector: Vector = [];
    for (const group of groups.values()) {
      const v = group.values;
      let value: number;
      switch (n.op) {
        case 'sum':
          value = v.reduce((x, y) => x + y, 0);
          break;
        case 'max':
          value = Math.max(...v);
          break;
        case 'min':
          value = Math.min(...v);
          break;
        case 'avg':
          value = v.reduce((x, y) => x + y, 0) / v.length;
          break;
        case 'count':
          value = v.length;
          break;
        default:
          throw new Error(`aggregation ${n.op} is not evaluated here`);
      }
      vector.push({ labels: group.labels, value });
    }
    return { kind: 'vector', vector };
  }

  function binary(n: Extract<Node, { type: 'binary' }>): Value {
    const lhs = ev(n.lhs);
    const rhs = ev(n.rhs);
    const arithmetic = (op: string, x: number, y: number): number => {
      switch (op) {
        case '+':
          return x + y;
        case '-':
          return x - y;
        case '*':
          return x * y;
        case '/':
          return x / y;
        case '%':
          return x % y;
        case '^':
          return x ** y;
        case '==':
          return x === y ? 1 : 0;
        case '!=':
          return x !== y ? 1 : 0;
        case '>':
          return x > y ? 1 : 0;
        case '<':
          return x < y ? 1 : 0;
        case '>=':
          return x >= y ? 1 : 0;
        case '<=':
          return x <= y ? 1 : 0;
        default:
          throw new Error(`operator ${op} is not evaluated here`);
      }
    };
    const comparison = ['==', '!=', '>', '<', '>=', '<='].includes(n.op);
    if (lhs.kind === 'scalar' && rhs.kind === 'scalar')
      return { kind: 'scalar', value: arithmetic(n.op, lhs.value, rhs.value) };
    if (lhs.kind === 'scalar' || rhs.kind === 'scalar') {
      // A vector and a scalar, either way round: each sample with the scalar, the
      // operands in their written order (`-`, `/`, `<` … are not symmetric).
      const vector: Vector = [];
      for (const s of lhs.kind === 'vector' ? lhs.vector : vec(rhs)) {
        const r = arithmetic(
          n.op,
          lhs.kind === 'scalar' ? lhs.value : s.value,
          rhs.kind === 'scalar' ? rhs.value : s.value,
        );
        if (comparison && !n.bool) {
          if (r === 1) vector.push(s);
        } else vector.push({ labels: withoutName(s.labels), value: r });
      }
      return { kind: 'vector', vector };
    }
    const m = n.matching;
    const matchKey = (labels: Labels) =>
      m?.mode === 'on'
        ? keyOf(labels, (name) => !m.labels.includes(name))
        : keyOf(labels, (name) => name === '__name__' || (m?.labels.includes(name) ?? false));
    const right = new Map<string, { labels: Labels; value: number }>();
    for (const s of vec(rhs)) right.set(matchKey(s.labels), s);
    const vector: Vector = [];
    if (n.op === 'and' || n.op === 'unless') {
      for (const s of vec(lhs))
        if (right.has(matchKey(s.labels)) === (n.op === 'and')) vector.push(s);
      return { kind: 'vector', vector };
    }
    if (n.op === 'or') {
      const left = vec(lhs);
      const seen = new Set(left.map((s) => matchKey(s.labels)));
      return {
        kind: 'vector',
        vector: [...left, ...vec(rhs).filter((s) => !seen.has(matchKey(s.labels)))],
      };
    }
    for (const s of vec(lhs)) {
      const other = right.get(matchKey(s.labels));
      if (!other) continue;
      const r = arithmetic(n.op, s.value, other.value);
      if (comparison && !n.bool) {
        if (r === 1) vector.push(s);
      } else vector.push({ labels: withoutName(s.labels), value: r });
    }
    return { kind: 'vector', vector };
  }

  return ev(node);
}

/** A range query: the expression at every time of the store, one series per label set. */
export function evaluateRange(
  expr: string,
  store: SeriesStore,
): { labels: Labels; points: { t: number; v: number }[] }[] {
  const tree = parsePromQL(expr);
  const out = new Map<string, { labels: Labels; points: { t: number; v: number }[] }>();
  for (let i = 0; i < store.times.length; i++) {
    const value = evaluate(tree, store, i);
    const vector = value.kind === 'scalar' ? [{ labels: {}, value: value.value }] : value.vector;
    for (const s of vector) {
      if (!Number.isFinite(s.value)) continue;
      const key = keyOf(s.labels);
      const series = out.get(key) ?? { labels: s.labels, points: [] };
      series.points.push({ t: store.times[i] as number, v: s.value });
      out.set(key, series);
    }
  }
  return [...out.values()];
}
