/**
 * What the database said about one insertMany, read by positive evidence only.
 *
 * The rule: a document counts as committed only when the server said so, i.e.
 * it was inserted, or refused as a duplicate `_id` (it is already stored: every
 * write is idempotent by `_id`). Everything else means "not committed":
 *   - a bulk error whose inserted count and write errors do not account for every
 *     document (the mongodb driver reports a server that went away as a
 *     MongoBulkWriteError with no write errors at all), a write concern error, a
 *     network error, a server selection timeout: `unavailable`, retry them all;
 *   - a refusal of the whole command that a document's content explains (the
 *     driver cannot serialize it, it is too large): `split`, with `content` set;
 *   - any error shape nobody foresaw: `split` too, without `content`: not
 *     committed, and retried in smaller batches so that whatever it is cannot
 *     hold back the documents that are fine.
 * A document-level refusal (a write error) is `content` only for codes that
 * are known to describe the document itself; other codes are retried.
 */
import { BSON, MongoBulkWriteError, MongoError, MongoInvalidArgumentError } from 'mongodb';

const DUPLICATE_KEY = 11000;

/** Every write persist sends: acknowledged once journaled (what the verdict reads is then durable). */
export const WRITE_CONCERN = { w: 1, j: true } as const;

/** Server error codes that describe the document, not the server's state. */
const CONTENT_CODES = new Set([
  2, // BadValue: e.g. a key with "." or "$" on servers that refuse them
  14, // TypeMismatch
  15, // Overflow
  52, // DollarPrefixedFieldName
  53, // InvalidIdField
  55, // InvalidDBRef
  56, // EmptyFieldName
  57, // DottedFieldName
  10334, // BSONObjectTooLarge
  17280, // KeyTooLong
]);

/** Error names of the driver for a server it could not reach or that did not answer. */
const UNAVAILABLE_NAMES = new Set([
  'MongoNetworkError',
  'MongoNetworkTimeoutError',
  'MongoServerSelectionError',
  'MongoTopologyClosedError',
  'MongoNotConnectedError',
  'MongoOperationTimeoutError',
  'MongoWriteConcernError',
]);

export interface Refusal {
  code: number | undefined;
  message: string;
  /** The code is known to describe the document itself. */
  content: boolean;
}

export type InsertVerdict =
  /** Every document is stored; those at the indexes in `duplicates` were stored before. */
  | { kind: 'committed'; duplicates: number[] }
  /** The server accounted for every document; those in `refused` are not stored. */
  | { kind: 'partial'; refused: Map<number, Refusal>; duplicates: number[] }
  | { kind: 'unavailable'; reason: string }
  | { kind: 'split'; reason: string; content: boolean };

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.name}${code === undefined ? '' : ` ${String(code)}`}: ${error.message}`;
  }
  return String(error);
}

function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (UNAVAILABLE_NAMES.has(error.name)) return true;
  if (error instanceof MongoError) {
    return (
      error.hasErrorLabel('RetryableWriteError') ||
      error.hasErrorLabel('ResetPool') ||
      error.hasErrorLabel('SystemOverloadedError')
    );
  }
  return false;
}

/** The document's content explains the error: the driver or the server refused the document. */
function isContent(error: unknown): boolean {
  if (error instanceof BSON.BSONError) return true;
  if (error instanceof MongoInvalidArgumentError)
    return /larger than the maximum/i.test(error.message);
  if (error instanceof MongoError && typeof error.code === 'number')
    return CONTENT_CODES.has(error.code);
  return false;
}

/** Reads the error of an insertMany of `count` documents; see the rule above. */
export function insertVerdict(error: unknown, count: number): InsertVerdict {
  if (error instanceof MongoBulkWriteError) {
    if (error.writeConcernError)
      return { kind: 'unavailable', reason: `write concern error: ${describe(error)}` };
    const writeErrors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
    const inserted = error.insertedCount;
    const indexes = new Set(writeErrors.map((w) => w.index));
    const accounted =
      typeof inserted === 'number' &&
      inserted + writeErrors.length === count &&
      indexes.size === writeErrors.length &&
      [...indexes].every((i) => Number.isInteger(i) && i >= 0 && i < count);
    if (!accounted)
      return {
        kind: 'unavailable',
        reason: `the server accounted for ${inserted ?? 0} inserted and ${writeErrors.length} refused of ${count} documents: ${describe(error)}`,
      };
    const refused = new Map<number, Refusal>();
    const duplicates: number[] = [];
    for (const w of writeErrors) {
      if (w.code === DUPLICATE_KEY) {
        duplicates.push(w.index);
        continue;
      }
      const code = typeof w.code === 'number' ? w.code : undefined;
      refused.set(w.index, {
        code,
        message: String(w.errmsg ?? 'refused'),
        content: code !== undefined && CONTENT_CODES.has(code),
      });
    }
    return refused.size === 0
      ? { kind: 'committed', duplicates }
      : { kind: 'partial', refused, duplicates };
  }
  if (error instanceof MongoError && error.code === DUPLICATE_KEY && count === 1)
    return { kind: 'committed', duplicates: [0] };
  if (isUnavailable(error)) return { kind: 'unavailable', reason: describe(error) };
  return { kind: 'split', reason: describe(error), content: isContent(error) };
}
