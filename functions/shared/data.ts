/**
 * An event's `data`: accepted only if it can be stored exactly, kept exactly as
 * posted from the body to the database and back (docs/architecture.md, "What is
 * stored how").
 *
 * Ingest parses JSON without losing anything (lossless-json: every number keeps
 * its digits) and refuses, naming the path, what no database could keep: text
 * that is not valid Unicode (a lone surrogate) and nesting deeper than
 * MAX_DATA_DEPTH. The stream entry carries the data as canonical JSON text with
 * its numbers as posted.
 *
 * Persist maps that text to what any MongoDB-wire server stores (`toStored`):
 *   - a number that is exactly a double is a double, an integer up to 64 bits a
 *     Long; any other number (beyond 64 bits, more digits than a double holds,
 *     -0) is `{"%n": "<its JSON text>"}`;
 *   - an array that sits directly in an array is `{"%a": [...]}` (some
 *     MongoDB-wire servers, FerretDB among them, refuse nested arrays);
 *   - an object key is percent-encoded where a database refuses it or where it
 *     could be mistaken for a marker: `%` → `%25`, `.` → `%2E`, NUL → `%00`, a
 *     leading `$` → `%24`. Every other key is stored as it is.
 * Both are reversible: `fromStored` gives back the value as posted.
 */
import { isLosslessNumber, LosslessNumber, parse, stringify } from 'lossless-json';
import { BSON, Long } from 'mongodb';

/**
 * Nesting deeper than this, as stored (an array directly in an array counts twice,
 * for its marker object), is refused: a MongoDB document nests at most 100 levels.
 */
export const MAX_DATA_DEPTH = 90;
/** The key of the marker object that holds a number no BSON number type holds exactly. */
export const NUMBER_MARKER = '%n';
/** The key of the marker object that holds an array that sits directly in an array. */
export const ARRAY_MARKER = '%a';

export class DataError extends Error {
  override name = 'DataError';

  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(`${problem} at ${path}`);
  }
}

/**
 * JSON text → value, every number kept as written. Throws SyntaxError, and
 * refuses a key given twice with different values (lossless-json's rule).
 *
 * Most bodies hold only numbers that a double prints back exactly as written,
 * and no repeated key: for them the engine's JSON.parse gives the same value
 * (plain numbers, which every reader here takes as written, `storedNumber`
 * storing them as the same doubles) about 20 times faster than lossless-json,
 * which reads text a character at a time (73 µs against 4 µs for a 4 KiB
 * event). Anything else (a number a double would change or store otherwise, a
 * key given twice, text JSON.parse refuses) is parsed by lossless-json: its
 * LosslessNumbers, its errors.
 */
export function parseJson(text: string): unknown {
  return parsedAsDoubles(text) ?? parse(text);
}

/** A JSON string (and whether a colon follows it: a key), or a JSON number. */
const TOKEN = /"(?:[^"\\]|\\.)*"(\s*:)?|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const INT53 = 2 ** 53;

/** JSON.parse's value when it is the same as lossless-json's (see parseJson); else undefined. */
function parsedAsDoubles(text: string): unknown {
  // Read token by token from the start, strings whole, so a digit or a colon
  // inside a string is never taken for a number or a key.
  let keys = 0;
  for (const [token, colon] of text.matchAll(TOKEN)) {
    if (token.charCodeAt(0) === 0x22) {
      if (colon !== undefined) keys++;
      continue;
    }
    const n = Number(token);
    if (String(n) !== token || Math.abs(n) > INT53) return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  // A key given twice leaves fewer keys than the text names.
  return keyCount(value) === keys ? value : undefined;
}

function keyCount(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  let count = 0;
  if (Array.isArray(value)) {
    for (const item of value) count += keyCount(item);
    return count;
  }
  for (const key of Object.keys(value)) {
    count += 1 + keyCount((value as Record<string, unknown>)[key]);
  }
  return count;
}

/** Value → canonical JSON text (no spaces; numbers as they were posted). */
export function jsonText(value: unknown): string {
  return stringify(value) as string;
}

function pathOf(path: string, key: string | number): string {
  return typeof key === 'number'
    ? `${path}[${key}]`
    : /^[A-Za-z_][A-Za-z0-9_]*$/.test(key)
      ? `${path}.${key}`
      : `${path}[${JSON.stringify(key)}]`;
}

/**
 * Refuses, naming the path, a value no database can keep exactly: text that is not
 * valid Unicode, or nesting deeper than MAX_DATA_DEPTH. The walk keeps the keys
 * it is under and spells the path out only when it refuses.
 */
export function checkData(value: unknown, path = 'data', depth = 0): void {
  const under: Array<string | number> = [];
  const refuse = (problem: string): never => {
    throw new DataError(under.reduce<string>(pathOf, path), problem);
  };
  const walk = (node: unknown, level: number): void => {
    if (typeof node === 'string') {
      if (!node.isWellFormed()) refuse('text is not valid Unicode (a lone surrogate)');
      return;
    }
    if (node === null || typeof node !== 'object' || isLosslessNumber(node)) return;
    if (level >= MAX_DATA_DEPTH)
      refuse(`nesting is deeper than ${MAX_DATA_DEPTH} levels as stored`);
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const item: unknown = node[i];
        under.push(i);
        walk(item, level + (Array.isArray(item) ? 2 : 1));
        under.pop();
      }
      return;
    }
    for (const key of Object.keys(node)) {
      under.push(key);
      if (!key.isWellFormed()) refuse('a key is not valid Unicode (a lone surrogate)');
      walk((node as Record<string, unknown>)[key], level + 1);
      under.pop();
    }
  };
  walk(value, depth);
}

// --- numbers ------------------------------------------------------------------

const INT = /^-?(0|[1-9]\d*)$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const BIG_INT53 = BigInt(INT53);

/** A decimal number's exact value, as sign, digits without leading/trailing zeros, exponent. */
function exact(text: string): string {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return text;
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = match;
  let digits = `${whole}${fraction}`;
  let power = BigInt(exponent) - BigInt(fraction.length);
  digits = digits.replace(/^0+/, '');
  if (digits === '') return `${sign}0`;
  const trailing = digits.length - digits.replace(/0+$/, '').length;
  digits = digits.slice(0, digits.length - trailing);
  power += BigInt(trailing);
  return `${sign}${digits}e${power}`;
}

/** The BSON-ready form of one JSON number (its text as posted). */
function storedNumber(text: string): unknown {
  if (INT.test(text)) {
    // -0 as text: some servers drop the sign of a zero.
    if (text === '-0') return { [NUMBER_MARKER]: text };
    const n = BigInt(text);
    if (n >= -BIG_INT53 && n <= BIG_INT53) return Number(text);
    if (n >= INT64_MIN && n <= INT64_MAX) return Long.fromBigInt(n);
    return { [NUMBER_MARKER]: text };
  }
  const double = Number(text);
  // Written as the double prints: exact, finite, and not -0 (String(-0) is "0").
  if (String(double) === text) return double;
  // A double only when it is exactly the posted number (and not -0, which some servers drop).
  if (Number.isFinite(double) && !Object.is(double, -0) && exact(String(double)) === exact(text))
    return double;
  return { [NUMBER_MARKER]: text };
}

// --- keys ---------------------------------------------------------------------

/** Percent-encodes what a database refuses in a key (and `%` itself, so that it decodes). */
export function encodeKey(key: string): string {
  const escaped = key.replace(
    /[%.\0]/g,
    (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`,
  );
  return escaped.startsWith('$') ? `%24${escaped.slice(1)}` : escaped;
}

export function decodeKey(key: string): string {
  return key.replace(/%([0-9A-F]{2})/g, (_, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}

/** Sets a key as an own property, `__proto__` included. */
function own(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

// --- to and from the database ----------------------------------------------------

/** The stream entry's data text → the value persist writes. */
export function toStored(text: string): unknown {
  return storedValue(parseJson(text));
}

function storedValue(value: unknown): unknown {
  if (isLosslessNumber(value)) return storedNumber((value as LosslessNumber).value);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value))
    return value.map((item) =>
      Array.isArray(item) ? { [ARRAY_MARKER]: storedValue(item) } : storedValue(item),
    );
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) own(out, encodeKey(key), storedValue(item));
  return out;
}

/** What the database holds → the data as posted (numbers as LosslessNumber where a double would not do). */
export function fromStored(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  // The Node driver hands back, as raw BSON, documents inside an array under a key
  // named like an Object.prototype property (`constructor`, `valueOf`, …): its
  // default fieldsAsRaw is `{}`. Nothing Spillway stores is binary: read them.
  if (value instanceof Uint8Array) return fromStored(BSON.deserialize(value));
  if (value instanceof Long || (value as { _bsontype?: string })._bsontype === 'Long')
    return new LosslessNumber(String(value));
  if (typeof (value as { toBigInt?: unknown }).toBigInt === 'function')
    return new LosslessNumber(String(value));
  if (Array.isArray(value)) return value.map(fromStored);
  const entries = Object.entries(value);
  const [only] = entries;
  if (entries.length === 1 && only) {
    if (only[0] === NUMBER_MARKER && typeof only[1] === 'string')
      return new LosslessNumber(only[1]);
    if (only[0] === ARRAY_MARKER && Array.isArray(only[1])) return fromStored(only[1]);
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of entries) own(out, decodeKey(key), fromStored(item));
  return out;
}

/** The JSON text of a stored event's data, numbers as posted: what a reader of `events` wants. */
export function storedDataText(value: unknown): string {
  return jsonText(fromStored(value));
}

/** Two JSON texts hold the same value (numbers compared by value, key order ignored). */
export function sameJson(a: string, b: string): boolean {
  return canonical(parseJson(a)) === canonical(parseJson(b));
}

function canonical(value: unknown): string {
  if (isLosslessNumber(value)) return `n:${exact((value as LosslessNumber).value)}`;
  if (typeof value === 'number') return `n:${exact(Object.is(value, -0) ? '-0' : String(value))}`;
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  return `{${Object.keys(value)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
    .join(',')}}`;
}
