/**
 * One grant of the write budget is one write command. The driver splits an
 * unordered insertMany into several insert commands when its documents'
 * BSON, plus a few bytes of array key each, reaches the server's
 * maxBsonObjectSize, or its count the server's maxWriteBatchSize (mongodb's
 * lib/bulk/unordered.js). So a batch is cut, at its grant, to what one command
 * holds by the same rule, measured in BSON (not in the characters of the
 * stream entry, which CJK text or arrays of numbers outgrow several times).
 */
import { BSON } from 'mongodb';

export interface CommandLimits {
  /** The server's hello: maxBsonObjectSize, bytes. */
  maxBsonObjectSize: number;
  /** The server's hello: maxWriteBatchSize, documents. */
  maxWriteBatchSize: number;
}

/** What the driver assumes of a server it has no hello from yet (lib/bulk/common.js). */
export const DRIVER_DEFAULT_LIMITS: CommandLimits = {
  maxBsonObjectSize: 16 * 1024 * 1024,
  maxWriteBatchSize: 1000,
};

/** The limits a hello reply gives, the driver's defaults for what it leaves out. */
export function limitsOf(hello: { maxBsonObjectSize?: unknown; maxWriteBatchSize?: unknown }) {
  const positive = (v: unknown, fallback: number) =>
    typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : fallback;
  return {
    maxBsonObjectSize: positive(hello.maxBsonObjectSize, DRIVER_DEFAULT_LIMITS.maxBsonObjectSize),
    maxWriteBatchSize: positive(hello.maxWriteBatchSize, DRIVER_DEFAULT_LIMITS.maxWriteBatchSize),
  };
}

/** A document's BSON size, as the driver serializes it. */
export const bsonSize = (doc: object) => BSON.calculateObjectSize(doc as BSON.Document);

/**
 * How many documents, from the first, one insert command takes: the driver starts
 * a new command before document k when the command already holds
 * maxWriteBatchSize − 1 documents or when Σ(key + size) through k reaches
 * maxBsonObjectSize. At least one (a document too large alone is the server's
 * to refuse, and the committer's to isolate).
 */
export function oneCommand(sizes: readonly number[], limits: CommandLimits): number {
  const keyBytes = String(limits.maxWriteBatchSize - 1).length + 2;
  let bytes = 0;
  for (let k = 0; k < sizes.length; k++) {
    if (k > 0 && k + 1 >= limits.maxWriteBatchSize) return k;
    bytes += keyBytes + (sizes[k] as number);
    if (k > 0 && bytes >= limits.maxBsonObjectSize) return k;
  }
  return sizes.length;
}

/** BSON sizes of the documents written, computed once per document. */
const sizes = new WeakMap<object, number>();

/** bsonSize, remembered for the document (a retried batch is not serialized to be measured again). */
export function cachedBsonSize(doc: object): number {
  let size = sizes.get(doc);
  if (size === undefined) {
    size = bsonSize(doc);
    sizes.set(doc, size);
  }
  return size;
}
