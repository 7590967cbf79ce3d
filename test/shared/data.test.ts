import fc from 'fast-check';
import {
  isLosslessNumber,
  parse as losslessParse,
  stringify as losslessStringify,
} from 'lossless-json';
import { BSON, Long } from 'mongodb';
import { describe, expect, it } from 'vitest';
import {
  checkData,
  DataError,
  decodeKey,
  encodeKey,
  fromStored,
  jsonText,
  MAX_DATA_DEPTH,
  NUMBER_MARKER,
  parseJson,
  sameJson,
  storedDataText,
  toStored,
} from '../../functions/shared/data.js';

describe('numbers', () => {
  it.each([
    ['42', 42],
    ['-7', -7],
    ['0.1', 0.1],
    ['1.10', 1.1],
    ['1e300', 1e300],
    ['9007199254740992', 9007199254740992],
  ])('stores %s as the double it exactly is', (text, value) => {
    expect(toStored(text)).toBe(value);
  });

  it.each([
    ['9007199254740993', '9007199254740993'],
    ['-9223372036854775808', '-9223372036854775808'],
    ['9223372036854775807', '9223372036854775807'],
    // Past 2^53, yet a double prints them back exactly.
    ['9007199254740994', '9007199254740994'],
    ['18014398509481984', '18014398509481984'],
  ])('stores the 64-bit integer %s as a Long', (text, value) => {
    const stored = toStored(text);
    expect(stored).toBeInstanceOf(Long);
    expect(String(stored)).toBe(value);
  });

  it.each([
    '9223372036854775808',
    '18446744073709551616',
    '-0',
    '-0.0',
    '0.10000000000000001',
    '1e400',
    '1e-400',
    '3.141592653589793238462643383279502884197',
  ])('keeps %s, which no BSON number holds exactly, as its text', (text) => {
    expect(toStored(text)).toEqual({ [NUMBER_MARKER]: text });
  });

  it('reads every kind back as the same number', () => {
    for (const text of ['0.1', '9007199254740993', '18446744073709551616', '-0', '1e400', '12'])
      expect(storedDataText(toStored(text))).toBe(text);
  });
});

/** What lossless-json reads of a text: its value, or its message when it refuses the text. */
function losslessRead(text: string): { value: unknown } | { refused: string } {
  try {
    return { value: losslessParse(text) };
  } catch (error) {
    return { refused: (error as Error).message };
  }
}

describe('parsing', () => {
  it('gives plain numbers when a double keeps every number as written, and LosslessNumbers otherwise', () => {
    expect(parseJson('{"a":1.5,"b":-7,"c":9007199254740992}')).toEqual({
      a: 1.5,
      b: -7,
      c: 9007199254740992,
    });
    for (const other of ['1.0', '9007199254740993', '1e300', '-0']) {
      const value = parseJson(`{"a":1.5,"b":${other}}`) as Record<string, unknown>;
      expect(isLosslessNumber(value.a) && isLosslessNumber(value.b)).toBe(true);
    }
  });

  it('does not take a digit or a colon inside a string for a number or a key', () => {
    expect(parseJson('{"a":"1.0: \\"2.50\\":","b":[3]}')).toEqual({ a: '1.0: "2.50":', b: [3] });
    expect(isLosslessNumber((parseJson('{"a:":"x","n":2.50}') as { n: unknown }).n)).toBe(true);
  });

  it('refuses a key given twice with different values, and takes one given twice alike', () => {
    expect(() => parseJson('{"a":1,"a":2}')).toThrow(/Duplicate key 'a'/);
    expect(() => parseJson('{"x":{"a":"s","a":"t"}}')).toThrow(/Duplicate key 'a'/);
    expect(jsonText(parseJson('{"a":{"b":1},"a":{"b":1}}'))).toBe('{"a":{"b":1}}');
  });

  it("answers text that is not JSON with lossless-json's error", () => {
    for (const text of ['{"a":01}', '{"a":1.}', '[1,]', '{"a" 1}', '']) {
      const read = losslessRead(text);
      if (!('refused' in read)) throw new Error(`lossless-json took ${text}`);
      expect(() => parseJson(text)).toThrow(read.refused);
    }
  });

  it('reads every JSON text as lossless-json does (10,000 generated texts)', () => {
    const number = fc.oneof(
      fc.double().filter(Number.isFinite).map(String),
      fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
      fc.constantFrom(
        '1.0',
        '-0',
        '1e5',
        '2.50',
        '0.1',
        '1E-7',
        '9007199254740993',
        '1152921504606846976',
        '18014398509481984',
      ),
    );
    const json: fc.Arbitrary<string> = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        number,
        fc.string().map((s) => JSON.stringify(s)),
        fc.constantFrom('true', 'false', 'null'),
        fc.array(tie('value') as fc.Arbitrary<string>).map((items) => `[${items.join(', ')}]`),
        fc
          .array(
            fc.tuple(
              fc.constantFrom('a', 'b', '1', 'a:', '"', 'x y'),
              tie('value') as fc.Arbitrary<string>,
            ),
          )
          .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)} :${v}`).join(',')}}`),
      ),
    })).value;
    fc.assert(
      fc.property(json, (text) => {
        const read = losslessRead(text);
        if ('refused' in read) {
          expect(() => parseJson(text)).toThrow(read.refused);
          return;
        }
        const expected = losslessStringify(read.value) as string;
        expect(jsonText(parseJson(text))).toBe(expected);
        expect(BSON.serialize({ v: toStored(text) })).toEqual(
          BSON.serialize({ v: toStored(expected) }),
        );
        // Stored as lossless-json's path stores it (a 1.0 beside it takes that path).
        expect(BSON.serialize(toStored(`{"v":${text}}`) as BSON.Document)).toEqual(
          BSON.serialize({ v: (toStored(`{"v":${text},"w":1.0}`) as { v: unknown }).v }),
        );
      }),
      { numRuns: 10_000 },
    );
  });
});

describe('keys', () => {
  it('encodes what a database refuses, and only that', () => {
    expect(encodeKey('a.b')).toBe('a%2Eb');
    expect(encodeKey('$where')).toBe('%24where');
    expect(encodeKey('x$')).toBe('x$');
    expect(encodeKey('a\u0000b')).toBe('a%00b');
    expect(encodeKey('100%')).toBe('100%25');
    expect(encodeKey('%n')).toBe('%25n');
    expect(encodeKey('plain_key')).toBe('plain_key');
  });

  it('decodes every key back (10,000 generated keys)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 20 }), (key) => {
        expect(decodeKey(encodeKey(key))).toBe(key);
        const encoded = encodeKey(key);
        expect(encoded.includes('.') || encoded.includes('\u0000') || encoded.startsWith('$')).toBe(
          false,
        );
      }),
      { seed: 20_261_128, numRuns: 10_000 },
    );
  });

  it('keeps __proto__ as a key, not a prototype', () => {
    const stored = toStored('{"__proto__":{"x":1},"a":2}') as Record<string, unknown>;
    expect(Object.keys(stored)).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(stored)).toBe(Object.prototype);
    expect(storedDataText(stored)).toBe('{"__proto__":{"x":1},"a":2}');
  });

  it('never takes user data for the number marker', () => {
    const text = '{"%n":"5","b":{"%n":"x"}}';
    expect(toStored(text)).toEqual({ '%25n': '5', b: { '%25n': 'x' } });
    expect(storedDataText(toStored(text))).toBe(text);
  });
});

describe('what cannot be stored exactly', () => {
  it('names the path of a lone surrogate, in a value or a key', () => {
    expect(() => checkData(parseJson('{"a":[1,"\\ud800"]}'))).toThrow(DataError);
    expect(() => checkData(parseJson('{"a":[1,"\\ud800"]}'))).toThrow(/at data\.a\[1\]/);
    expect(() => checkData(parseJson('{"\\udfff":1}'))).toThrow(/key is not valid Unicode/);
  });

  it(`refuses nesting deeper than ${MAX_DATA_DEPTH} levels as stored, and takes ${MAX_DATA_DEPTH}`, () => {
    const objects = (depth: number) => parseJson(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
    expect(() => checkData(objects(MAX_DATA_DEPTH))).not.toThrow();
    expect(() => checkData(objects(MAX_DATA_DEPTH + 1))).toThrow(/deeper than 90 levels/);
    // An array directly in an array is stored in a marker object: it counts twice.
    const arrays = (depth: number) => parseJson(`${'['.repeat(depth)}${']'.repeat(depth)}`);
    expect(() => checkData(arrays(45))).not.toThrow();
    expect(() => checkData(arrays(46))).toThrow(/deeper than 90 levels as stored/);
  });
});

describe('reading back', () => {
  it('reads documents the driver hands back as raw BSON (arrays under a key like "constructor")', () => {
    const raw = BSON.serialize({ '%a': [1, 2] });
    expect(storedDataText({ constructor: [Buffer.from(raw)] })).toBe('{"constructor":[[1,2]]}');
  });
});

describe('nested arrays', () => {
  it('stores an array in an array inside a marker object, and reads it back', () => {
    const text = '[[1,[2]],{"k":[[]]}]';
    expect(toStored(text)).toEqual([{ '%a': [1, { '%a': [2] }] }, { k: [{ '%a': [] }] }]);
    expect(storedDataText(toStored(text))).toBe(text);
    expect(storedDataText(toStored('{"%a":[1]}'))).toBe('{"%a":[1]}');
  });
});

describe('sameJson', () => {
  it('compares numbers by value, key order aside, and keeps -0 apart from 0', () => {
    expect(sameJson('{"a":1.10,"b":[1e2]}', '{"b":[100],"a":1.1}')).toBe(true);
    expect(sameJson('0', '-0')).toBe(false);
    expect(sameJson('9007199254740993', '9007199254740992')).toBe(false);
    expect(jsonText(fromStored({ a: Long.fromString('123456789012345678') }))).toBe(
      '{"a":123456789012345678}',
    );
  });
});
