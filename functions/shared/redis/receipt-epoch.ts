/**
 * The receipts' epoch check (receipt-epoch-2.lua) for every client that
 * appends to the stream: ingest and the dead-letter replay use this one
 * helper, and only it builds the script's arguments (docs/architecture.md,
 * "Receipts", fact 3).
 *
 * A Redis restored from an older AOF must be recorded as such before any new
 * id can be taken for one it lost. So the check runs on every connection
 * before anything is appended on it: at each `ready` (its command is the
 * first this client sends on the new connection) and `ready()` resolves only
 * once it ran. That holds only on a client made with APPENDER_OPTIONS: it
 * sends nothing while disconnected (no offline queue) and never resends a
 * command across a reconnect (ioredis would, ahead of the check: an XADD in
 * flight when the connection dropped would reach the restored Redis first).
 */
import { randomBytes } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from '../logger.js';
import { RECEIPT_MARKER_PREFIX } from '../receipts.js';
import { receiptLedgerKey } from './keys.js';
import type { Scripts } from './scripts.js';

/**
 * The options of a client that appends to the stream (beside createRedis's).
 * Give it a `commandTimeout` too: a command in flight when its connection
 * drops is then neither resent nor answered, and only its timeout ends it.
 */
export const APPENDER_OPTIONS = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
} as const satisfies RedisOptions;

export interface EpochCheckOptions {
  streamKey: string;
  /** How long receipts answer (IDEMPOTENCY_TTL_SEC), ms. */
  ttlMs: number;
  log: Logger;
}

/** At most this long between two checks while appending: the ledger outlives every receipt. */
const MAX_REFRESH_MS = 60_000;

export class EpochCheck {
  /** This connection's check (undefined: not run since it connected, or it failed). */
  private checked: Promise<void> | undefined;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;
  private readonly refreshMs: number;

  constructor(
    redis: Redis,
    private readonly scripts: Scripts,
    private readonly options: EpochCheckOptions,
  ) {
    this.refreshMs = Math.min(MAX_REFRESH_MS, options.ttlMs / 2);
    // A new connection may be to a restored Redis: checked again before the next append.
    redis.on('close', () => {
      this.checked = undefined;
    });
    redis.on('ready', () => {
      this.ready().catch((error: unknown) =>
        options.log.warn({ err: error }, "could not check the stream's receipts"),
      );
    });
  }

  /**
   * Resolves once this connection's check ran (rejects when it could not:
   * nothing may be appended then). While appending, the check runs again in
   * the background at least every half of the receipts' life (the ledger it
   * keeps expires twice that life after the last one).
   */
  ready(): Promise<void> {
    if (!this.checked) {
      const check: Promise<void> = this.run(false).then(
        () => undefined,
        (error: unknown) => {
          if (this.checked === check) this.checked = undefined;
          throw error;
        },
      );
      this.checked = check;
    } else if (performance.now() - this.checkedAt > this.refreshMs && !this.refreshing) {
      this.refreshing = this.run(false)
        .catch((error: unknown) => this.options.log.debug({ err: error }, 'epoch refresh failed'))
        .finally(() => {
          this.refreshing = undefined;
        });
    }
    return this.checked;
  }

  /** The stream is missing: makes it, with its marker. */
  async create(): Promise<void> {
    await this.run(true);
  }

  /** The stream was found without its marker (someone else made it again): marks it. */
  async mark(): Promise<void> {
    await this.run(false);
  }

  private async run(create: boolean): Promise<void> {
    const { streamKey, ttlMs, log } = this.options;
    const reply = await this.scripts.receiptEpoch(
      { stream: streamKey, ledger: receiptLedgerKey(streamKey) },
      {
        prefix: RECEIPT_MARKER_PREFIX,
        markerName: randomBytes(8).toString('hex'),
        ttlMs,
        create,
      },
    );
    this.checkedAt = performance.now();
    if (reply.restored)
      log.warn(
        { stream: streamKey, epoch: reply.epoch },
        "Redis restarted: the ids after the stream's last one up to now are recorded as a gap (their receipts answer 404 unknown)",
      );
  }
}
