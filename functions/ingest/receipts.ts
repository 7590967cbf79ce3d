/**
 * Receipts: what a 202 names its event's status monitor by, and the monitor's
 * reads (docs/architecture.md, "Receipts").
 *
 * A receipt is the stream id with a MAC over (the client's idempotency scope,
 * the stream, the stream id), so it cannot be guessed or forged, and one
 * tenant's receipt is nobody else's (the scope is the API key's). The MAC's key
 * is derived from RECEIPT_SECRET and the stream's nonce, kept in the stream's
 * marker (receipt-epoch-2.lua): a stream deleted and made again has another,
 * and every receipt of the old one reads 404. Without RECEIPT_SECRET the nonce
 * alone keys it: every ingest on that Redis shares it, and whoever reads Redis
 * could mint receipts (set RECEIPT_SECRET where that matters; the cluster does).
 *
 * Before this process appends to the stream on a connection, it runs
 * receipt-epoch-2.lua once on it (`ready`): a Redis restored from an older AOF
 * is recorded as such before any new id can be taken for one it lost.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { parseDeadRecord, RECEIPT_MARKER_PREFIX, splitStreamId } from '../shared/receipts.js';
import { deadRecordKey, receiptLedgerKey } from '../shared/redis/keys.js';
import type { ReceiptState, Scripts } from '../shared/redis/scripts.js';

const VERSION = 1;
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

/** The MAC key of a stream's receipts: RECEIPT_SECRET ('' when unset) and the stream's nonce. */
export function receiptKey(secret: string, nonce: string): Buffer {
  return createHmac('sha256', secret).update(`spillway-receipt\n${nonce}`).digest();
}

/** HMAC-SHA256 over (scope, stream, stream id), 128 bits kept. */
export function receiptMac(key: Buffer, scope: string, stream: string, streamId: string): Buffer {
  return createHmac('sha256', key)
    .update(`${scope}\n${stream}\n${streamId}`)
    .digest()
    .subarray(0, MAC_BYTES);
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
  /** RECEIPT_SECRET. */
  secret: string;
  log: Logger;
}

export class Receipts {
  /** The stream's nonce as last seen (undefined: not yet, or no stream). */
  private nonce: string | undefined;
  private key: { nonce: string; key: Buffer } | undefined;
  /** This connection's epoch check (undefined: not run since it connected). */
  private checked: Promise<void> | undefined;

  constructor(
    redis: Redis,
    private readonly scripts: Scripts,
    private readonly options: ReceiptOptions,
  ) {
    // A new connection may be to a restored Redis: checked again before the next append.
    redis.on('close', () => {
      this.checked = undefined;
    });
  }

  /** Resolves once this connection's epoch check ran (rejects when it could not: no append then). */
  ready(): Promise<void> {
    if (!this.checked) {
      const check: Promise<void> = this.epoch(false).then(
        () => undefined,
        (error: unknown) => {
          if (this.checked === check) this.checked = undefined;
          throw error;
        },
      );
      this.checked = check;
    }
    return this.checked;
  }

  /** The stream is missing: makes it, with its marker. */
  async create(): Promise<void> {
    await this.epoch(true);
  }

  /** The receipt of an appended entry, for this client's scope. */
  async mint(scope: string, streamId: string): Promise<string> {
    // A stream someone else made (XGROUP CREATE … MKSTREAM) has no marker yet: one is made.
    if (this.nonce === undefined) await this.epoch(false).catch(() => undefined);
    return receiptText(streamId, this.mac(scope, streamId, this.nonce ?? ''));
  }

  /** What became of the entry a receipt names, for this client's scope. */
  async read(scope: string, receipt: string): Promise<ReceiptStatus> {
    const parsed = parseReceipt(receipt);
    if (!parsed) return { state: 'invalid' };
    const { streamId } = parsed;
    let reply = await this.status(streamId);
    if (reply.state === 'unmarked') {
      await this.epoch(false);
      reply = await this.status(streamId);
    }
    if (reply.state === 'nostream' || reply.state === 'unmarked') return { state: 'invalid' };
    this.nonce = reply.nonce;
    if (!timingSafeEqual(parsed.mac, this.mac(scope, streamId, reply.nonce)))
      return { state: 'invalid' };
    return statusOf(streamId, reply);
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

  private async epoch(create: boolean): Promise<void> {
    const { streamKey, ttlMs, log } = this.options;
    const reply = await this.scripts.receiptEpoch(
      { stream: streamKey, ledger: receiptLedgerKey(streamKey) },
      { prefix: RECEIPT_MARKER_PREFIX, nonce: randomBytes(16).toString('hex'), ttlMs, create },
    );
    if (reply.nonce !== '') this.nonce = reply.nonce;
    if (reply.restored)
      log.warn(
        { stream: streamKey, epoch: reply.epoch },
        "Redis restarted: the ids after the stream's last one up to now are recorded as a gap (their receipts answer 404 unknown)",
      );
  }

  private mac(scope: string, streamId: string, nonce: string): Buffer {
    if (this.key?.nonce !== nonce)
      this.key = { nonce, key: receiptKey(this.options.secret, nonce) };
    return receiptMac(this.key.key, scope, this.options.streamKey, streamId);
  }
}

function statusOf(streamId: string, reply: ReceiptState): ReceiptStatus {
  switch (reply.state) {
    case 'accepted':
      return { state: 'accepted', streamId };
    case 'persisted':
      return { state: 'persisted', streamId };
    case 'dead':
      return { state: 'dead', streamId, ...parseDeadRecord(reply.record) };
    case 'unknown':
      return { state: 'unknown', streamId, why: reply.why };
    case 'expired':
      return { state: 'unknown', streamId, why: 'older than IDEMPOTENCY_TTL_SEC' };
    default:
      return { state: 'invalid' };
  }
}
