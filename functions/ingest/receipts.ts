/**
 * Receipts: what a 202 names its event's status monitor by, and the monitor's
 * reads (docs/architecture.md, "Receipts").
 *
 * A receipt is the stream id with a MAC over (the client's idempotency scope,
 * the stream, the stream id), so it cannot be guessed or forged, and one
 * tenant's receipt is nobody else's (the scope is the API key's). The MAC's
 * key is RECEIPT_SECRET (a comma-separated list: the first mints, any
 * verifies, so a secret can be rotated without turning live receipts into
 * 404s); without it, a secret made once in Redis (RECEIPT_SECRET_KEY, SET NX)
 * and shared by every ingest on that Redis, read again on every connection.
 * Nothing of the stream's own state keys the MAC, so every ingest process
 * mints the same receipt for the same entry whatever happened to the stream;
 * what a deleted stream's receipts may no longer claim, the stream's epoch
 * says (ids at or before it read 404).
 *
 * Before this process appends to the stream on a connection, the epoch check
 * has run on it (shared/redis/receipt-epoch.ts), and the secret is read.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { parseDeadRecord, RECEIPT_MARKER_PREFIX, splitStreamId } from '../shared/receipts.js';
import { deadRecordKey, RECEIPT_SECRET_KEY, receiptLedgerKey } from '../shared/redis/keys.js';
import { EpochCheck } from '../shared/redis/receipt-epoch.js';
import type { ReceiptState, Scripts } from '../shared/redis/scripts.js';
import { deadline } from '../shared/time.js';

/** 2: the MAC keyed by the secret alone (1 also keyed it with the stream's marker). */
const VERSION = 2;
const MAC_BYTES = 16;
/** version, the id's millisecond and sequence (8 bytes each), the MAC: 44 characters of base64url. */
const RECEIPT_BYTES = 1 + 8 + 8 + MAC_BYTES;
const RECEIPT_TEXT = /^[A-Za-z0-9_-]{44}$/;

/** The receipt of a stream id, with its MAC. */
export function receiptText(streamId: string, mac: Buffer): string {
  const id = splitStreamId(streamId);
  if (!id) throw new Error(`not a stream id: ${streamId}`);
  const bytes = Buffer.alloc(RECEIPT_BYTES);
  bytes.writeUInt8(VERSION, 0);
  bytes.writeBigUInt64BE(BigInt(id[0]), 1);
  bytes.writeBigUInt64BE(id[1], 9);
  mac.copy(bytes, 17, 0, MAC_BYTES);
  return bytes.toString('base64url');
}

/** The stream id and MAC a receipt holds; undefined when it is not one. */
export function parseReceipt(text: string): { streamId: string; mac: Buffer } | undefined {
  if (!RECEIPT_TEXT.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.length !== RECEIPT_BYTES || bytes.readUInt8(0) !== VERSION) return undefined;
  const ms = bytes.readBigUInt64BE(1);
  if (ms > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return { streamId: `${ms}-${bytes.readBigUInt64BE(9)}`, mac: bytes.subarray(17) };
}

/** HMAC-SHA256 keyed by the secret over (scope, stream, stream id), 128 bits kept. */
export function receiptMac(
  secret: Buffer,
  scope: string,
  stream: string,
  streamId: string,
): Buffer {
  return createHmac('sha256', secret)
    .update(`spillway-receipt\n${scope}\n${stream}\n${streamId}`)
    .digest()
    .subarray(0, MAC_BYTES);
}

/** RECEIPT_SECRET's secrets, in order (the first mints); [] when it is unset. */
export function receiptSecrets(setting: string): string[] {
  return setting
    .split(',')
    .map((secret) => secret.trim())
    .filter((secret) => secret !== '');
}

/** What the monitor answers: a state, or unknown (404) with why; `invalid`: no receipt of this client's. */
export type ReceiptStatus =
  | { state: 'accepted'; streamId: string }
  | { state: 'persisted'; streamId: string }
  | { state: 'dead'; streamId: string; reason: string; deadAt: string }
  | { state: 'unknown'; streamId: string; why: string }
  | { state: 'invalid' };

export interface ReceiptOptions {
  streamKey: string;
  /** IDEMPOTENCY_TTL_SEC, ms: how long a receipt answers. */
  ttlMs: number;
  /** RECEIPT_SECRET's secrets ([]: the one made in Redis). */
  secrets: readonly string[];
  /** REDIS_TIMEOUT_MS: reading the secret made in Redis gives up after this long. */
  timeoutMs: number;
  log: Logger;
}

export class Receipts {
  private readonly epoch: EpochCheck;
  /** The MAC keys: the first mints, any verifies (undefined: the one in Redis not read yet). */
  private keys: Buffer[] | undefined;
  /** Reading the secret made in Redis on this connection (undefined: not yet, or it failed). */
  private secretRead: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly scripts: Scripts,
    private readonly options: ReceiptOptions,
  ) {
    this.epoch = new EpochCheck(redis, scripts, options);
    if (options.secrets.length > 0) {
      this.keys = options.secrets.map((secret) => Buffer.from(secret));
      return;
    }
    // Read again on every connection: a Redis that lost it has another by then.
    redis.on('close', () => {
      this.secretRead = undefined;
    });
    redis.on('ready', () => {
      this.secret().catch((error: unknown) =>
        options.log.warn({ err: error }, "could not read the receipts' secret"),
      );
    });
  }

  /** Resolves once this connection's epoch check ran and the secret is known (else no append). */
  async ready(): Promise<void> {
    await Promise.all([this.epoch.ready(), this.secret()]);
  }

  /** The stream is missing: makes it, with its marker. */
  create(): Promise<void> {
    return this.epoch.create();
  }

  /** The receipt of an appended entry, for this client's scope (throws when no secret is known). */
  mint(scope: string, streamId: string): string {
    const key = this.keys?.[0];
    if (!key) throw new Error("the receipts' secret has not been read from Redis");
    return receiptText(streamId, receiptMac(key, scope, this.options.streamKey, streamId));
  }

  /** What became of the entry a receipt names, for this client's scope. */
  async read(scope: string, receipt: string): Promise<ReceiptStatus> {
    const parsed = parseReceipt(receipt);
    if (!parsed) return { state: 'invalid' };
    // The MAC first: a receipt that is not this client's costs Redis nothing.
    if (!this.keys) await this.secret();
    if (!this.verifies(scope, parsed.streamId, parsed.mac)) return { state: 'invalid' };
    const { streamId } = parsed;
    let reply = await this.status(streamId);
    if (reply.state === 'unmarked') {
      // A stream someone else made (XGROUP CREATE … MKSTREAM): marked now, past every id it holds.
      await this.epoch.mark();
      reply = await this.status(streamId);
    }
    return statusOf(streamId, reply);
  }

  private verifies(scope: string, streamId: string, mac: Buffer): boolean {
    const { streamKey } = this.options;
    return (this.keys ?? []).some((key) =>
      timingSafeEqual(mac, receiptMac(key, scope, streamKey, streamId)),
    );
  }

  /** The secret is known (RECEIPT_SECRET), or read on this connection. */
  private secret(): Promise<void> {
    if (this.options.secrets.length > 0) return Promise.resolve();
    if (!this.secretRead) {
      const read: Promise<void> = this.readSecret().catch((error: unknown) => {
        if (this.secretRead === read) this.secretRead = undefined;
        throw error;
      });
      this.secretRead = read;
    }
    return this.secretRead;
  }

  /** The secret made in Redis: this one when none was there (SET NX GET: one round trip). */
  private async readSecret(): Promise<void> {
    const fresh = randomBytes(32).toString('base64url');
    const kept = await deadline(
      this.redis.call('SET', RECEIPT_SECRET_KEY, fresh, 'NX', 'GET'),
      this.options.timeoutMs,
      () => new Error(`Redis did not answer within ${this.options.timeoutMs} ms`),
    );
    this.keys = [Buffer.from(typeof kept === 'string' ? kept : fresh)];
  }

  private status(streamId: string): Promise<ReceiptState> {
    const { streamKey, ttlMs } = this.options;
    return this.scripts.receiptStatus(
      {
        stream: streamKey,
        ledger: receiptLedgerKey(streamKey),
        dead: deadRecordKey(streamKey, streamId),
      },
      { prefix: RECEIPT_MARKER_PREFIX, streamId, ttlMs },
    );
  }
}

function statusOf(streamId: string, reply: ReceiptState): ReceiptStatus {
  switch (reply.state) {
    case 'accepted':
    case 'persisted':
      return { state: reply.state, streamId };
    case 'dead':
      return { state: 'dead', streamId, ...parseDeadRecord(reply.record) };
    case 'unknown':
      return { state: 'unknown', streamId, why: reply.why };
    case 'expired':
      return { state: 'unknown', streamId, why: 'older than IDEMPOTENCY_TTL_SEC' };
    case 'nostream':
      return { state: 'unknown', streamId, why: 'its stream does not exist any more' };
    case 'unmarked':
      return { state: 'unknown', streamId, why: 'its stream could not be marked' };
  }
}
