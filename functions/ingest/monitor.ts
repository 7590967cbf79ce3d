/**
 * The status monitor, and the answer of an accepted event. RFC 9110 (15.3.3):
 * a 202's representation "ought to describe the request's current status and
 * point to (or embed) a status monitor". So every 202 has a `Location` and a
 * `receipt` naming the monitor, GET (or HEAD) /receipts/<receipt>, which
 * answers from Redis alone (receipts.ts; a status read never costs the
 * database an I/O): `accepted`, `persisted`, `dead` (with its reason), or 404
 * for a receipt it does not know or that is not this client's.
 *
 * A client that prefers to wait (`Prefer: wait=N`, RFC 7240) gets `201
 * Created` once the monitor says the event is committed, or the usual answer
 * after N seconds (at most MAX_WAIT_SEC), whichever comes first; the monitor
 * takes the same preference while its answer would be `accepted`. Honoured,
 * the answer says so: `Preference-Applied: wait=N`.
 */
import type { ServerResponse } from 'node:http';
import type { RawRequest } from '../shared/function.js';
import { ClientError, HttpError, send } from '../shared/http.js';
import type { Logger } from '../shared/logger.js';
import type { ApiKeys } from './caller.js';
import { scopeOf } from './caller.js';
import type { IngestConfig } from './config.js';
import type { MemoryGauge } from './memory.js';
import type { ReadState, ReceiptMetrics, WaitOutcome } from './metrics.js';
import { preferredWait } from './prefer.js';
import type { ReceiptStatus, Receipts } from './receipts.js';
import type { EventStore } from './store.js';
import type { Waiters, WaitResult } from './waiters.js';

/** Where a receipt's status monitor is. */
export const RECEIPT_PATH = '/receipts/';

/** What answering a request takes (handler.ts makes them). */
export interface Parts {
  config: IngestConfig;
  store: EventStore;
  receipts: Receipts;
  waiters: Waiters;
  keys: ApiKeys;
  memory: MemoryGauge;
  metrics: ReceiptMetrics;
  log: Logger;
}

/** An event appended (or the first answer of its Idempotency-Key); no stream id: a record from before receipts. */
export interface AcceptedEvent {
  id: string;
  source: string;
  seq: number;
  streamId: string | undefined;
}

/** 202 with the receipt and its Location; or, when the client prefers to wait, 201 once committed. */
export async function answerAccepted(
  parts: Parts,
  req: RawRequest,
  res: ServerResponse,
  event: AcceptedEvent,
  scope: string,
  headers: Record<string, string>,
): Promise<void> {
  const body = { id: event.id, source: event.source, seq: event.seq };
  const { streamId } = event;
  const receipt = streamId === undefined ? undefined : mint(parts, scope, streamId);
  if (streamId === undefined || receipt === undefined) {
    send(res, 202, body, headers);
    return;
  }
  const location = { ...headers, location: `${RECEIPT_PATH}${receipt}` };
  const accepted = { ...body, receipt, status: 'accepted' };
  const wait = preferredWait(req.headers.prefer, parts.config.maxWaitSec);
  const read = () => parts.receipts.read(scope, receipt);
  const waited = wait
    ? await waitFor(parts, res, wait, read, { state: 'accepted', streamId })
    : undefined;
  if (!waited) {
    send(res, 202, accepted, location);
    return;
  }
  const applied = { ...location, 'preference-applied': `wait=${wait}` };
  const { status } = waited;
  if (status.state === 'persisted')
    send(res, 201, { ...body, receipt, status: 'persisted', ...at(waited.persistedAt) }, applied);
  else if (status.state === 'dead')
    send(res, 202, { ...body, receipt, ...statusBody(status) }, applied);
  else send(res, 202, accepted, applied);
}

/**
 * The receipt of an appended entry; undefined (logged) when none can be given:
 * the 202 then has no receipt rather than one no monitor would vouch for.
 */
function mint(parts: Parts, scope: string, streamId: string): string | undefined {
  try {
    return parts.receipts.mint(scope, streamId);
  } catch (error) {
    parts.log.warn({ err: error, streamId }, 'could not mint a receipt; answered 202 without one');
    return undefined;
  }
}

/** GET or HEAD /receipts/<receipt>: the event's status, from Redis alone. */
export async function monitor(
  parts: Parts,
  req: RawRequest,
  res: ServerResponse,
  receipt: string,
): Promise<void> {
  const scope = scopeOf(parts.keys.authorize(req));
  const read = () => parts.receipts.read(scope, receipt);
  let status: ReceiptStatus;
  try {
    status = await read();
  } catch (error) {
    parts.log.warn({ err: error }, 'redis did not answer a status read');
    throw new HttpError('unavailable', 'the event store is unavailable; retry', {
      'retry-after': '1',
    });
  }
  let headers: Record<string, string> = {};
  let persistedAt: number | undefined;
  const wait =
    status.state === 'accepted'
      ? preferredWait(req.headers.prefer, parts.config.maxWaitSec)
      : undefined;
  const waited =
    wait && status.state === 'accepted' ? await waitFor(parts, res, wait, read, status) : undefined;
  if (waited) {
    ({ status, persistedAt } = waited);
    headers = { 'preference-applied': `wait=${wait}` };
  }
  parts.metrics.read(readState(status));
  answerStatus(res, receipt, status, headers, persistedAt, parts.config.idempotencyTtlSec);
}

/**
 * Waits (Waiters) for the status to leave `accepted`, for `seconds`; undefined
 * when no waiter may be added (MAX_WAITERS): answered at once. A status read
 * that fails while waiting keeps the last one known.
 */
async function waitFor(
  parts: Parts,
  res: ServerResponse,
  seconds: number,
  read: () => Promise<ReceiptStatus>,
  last: { state: 'accepted'; streamId: string },
): Promise<WaitResult<ReceiptStatus> | undefined> {
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  let known: ReceiptStatus = last;
  const check = async () => {
    try {
      known = await read();
    } catch (error) {
      parts.log.debug({ err: error }, 'a status read failed while waiting');
    }
    return known;
  };
  const settled = (status: ReceiptStatus) => status.state !== 'accepted';
  const result = await parts.waiters.wait(
    last.streamId,
    seconds * 1000,
    check,
    settled,
    gone.signal,
  );
  parts.metrics.waited(waitOutcome(result));
  return result;
}

function waitOutcome(result: WaitResult<ReceiptStatus> | undefined): WaitOutcome {
  if (!result) return 'refused';
  if (result.end !== 'settled') return result.end;
  const { state } = result.status;
  return state === 'persisted' || state === 'dead' ? state : 'unknown';
}

const readState = (status: ReceiptStatus): ReadState => status.state;

const at = (persistedAt: number | undefined) =>
  persistedAt === undefined ? {} : { persistedAt: new Date(persistedAt).toISOString() };

function statusBody(status: ReceiptStatus) {
  if (status.state === 'dead')
    return { status: 'dead', reason: status.reason, deadAt: status.deadAt };
  return { status: status.state };
}

/** A final state may be cached by the client, for as long as the receipt answers. */
function finalCache(streamId: string, ttlSec: number): string {
  const addedMs = Number(streamId.slice(0, streamId.indexOf('-')));
  const left = Math.max(0, Math.floor((addedMs + ttlSec * 1000 - Date.now()) / 1000));
  return `private, max-age=${left}, immutable`;
}

function answerStatus(
  res: ServerResponse,
  receipt: string,
  status: ReceiptStatus,
  headers: Record<string, string>,
  persistedAt: number | undefined,
  ttlSec: number,
): void {
  const noStore = { ...headers, 'cache-control': 'no-store' };
  switch (status.state) {
    case 'invalid':
      throw new ClientError('not_found', 'no such receipt', noStore);
    case 'unknown':
      throw new ClientError('not_found', `no status for this receipt: ${status.why}`, noStore);
    case 'accepted':
      send(res, 200, { receipt, status: 'accepted' }, noStore);
      return;
    default: {
      const cache = { ...headers, 'cache-control': finalCache(status.streamId, ttlSec) };
      // When it was stored is said of a stored event only, never of a dead letter.
      const stored = status.state === 'persisted' ? at(persistedAt) : {};
      send(res, 200, { receipt, ...statusBody(status), ...stored }, cache);
    }
  }
}
