/**
 * Spillway's Redis scripts, loaded the BullMQ way: every script is a file in
 * `commands/`, named `<name>-<numberOfKeys>.lua` (`<name>-<k>n.lua`: k keys for
 * each of the n items of a call, the caller's count), whose header documents its
 * steps, KEYS, ARGV and replies. A line `--- @include "includes/<part>"` is
 * replaced by `commands/includes/<part>.lua` (code several scripts share, e.g.
 * the write budget's state). The loader reads the key count from the file name
 * and registers each script on a client under a versioned name
 * (`<name>:<first 8 hex of its SHA-1>`), so two versions of Spillway sharing one
 * Redis never run each other's script.
 *
 * Callers use one typed method per script: the method builds KEYS and ARGV in
 * the order the script's header gives, and reads its reply; no call site builds
 * an argument list.
 *
 * Every script persist and the relay run for the drain starts with
 * `#!lua flags=allow-oom` (Redis 7): the drain is what frees memory, so a full
 * Redis must never refuse it. Ingest's script has no flags: a full Redis
 * refuses its first write, before the XADD, and ingest answers 503.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { deadline } from '../time.js';
import type { IngestKeys } from './keys.js';

const DIR = new URL('./commands/', import.meta.url);
const FILE = /^([a-z][a-z0-9-]*)-(\d+)(n?)\.lua$/;
const INCLUDE = /^--- @include "(includes\/[a-z][a-z0-9-]*)"$/gm;

interface ScriptFile {
  name: string;
  /** The keys of a call; with `perItem`, of each of its items. */
  numberOfKeys: number;
  /** The call's items each have numberOfKeys keys (`<name>-<k>n.lua`): the call says how many in all. */
  perItem: boolean;
  lua: string;
  /** The name the script is registered under on a client. */
  command: string;
}

/** A script's text with its includes in place. */
function resolveIncludes(lua: string, file: string): string {
  return lua.replace(INCLUDE, (_line, part: string) => {
    const text = readFileSync(new URL(`${part}.lua`, DIR), 'utf8');
    if (text.startsWith('#!')) throw new Error(`${part}.lua (included by ${file}) has flags`);
    return text.trimEnd();
  });
}

/** Every script of commands/, by name. */
function loadScriptFiles(): ReadonlyMap<string, ScriptFile> {
  const scripts = new Map<string, ScriptFile>();
  for (const file of readdirSync(DIR).sort()) {
    const match = FILE.exec(file);
    if (!match) continue;
    const [, name = '', keys = '0', n = ''] = match;
    const lua = resolveIncludes(readFileSync(new URL(file, DIR), 'utf8'), file);
    const sha = createHash('sha1').update(lua).digest('hex');
    scripts.set(name, {
      name,
      numberOfKeys: Number(keys),
      perItem: n === 'n',
      lua,
      command: `${name}:${sha.slice(0, 8)}`,
    });
  }
  return scripts;
}

const SCRIPT_FILES = loadScriptFiles();

/** The script texts as Redis runs them (includes resolved), by name: for tests and tools. */
export function scriptTexts(): ReadonlyMap<string, string> {
  return new Map([...SCRIPT_FILES.values()].map((s) => [s.name, s.lua]));
}

type Arg = string | number;
type Runner = (...args: Arg[]) => Promise<unknown>;

/** Stream entries as XRANGE gives them. */
export type Entries = Array<[string, string[]]>;

/** ingest-7n.lua's limits, the same for every event of a call (its header says what each is). */
export interface IngestLimits {
  idempotencyTtlMs: number;
  rateLimitPerSec: number;
  rateWindowTtlMs: number;
  maxBacklog: number;
  sequenceTtlMs: number;
  countersTtlMs: number;
  /** MAX_DRAIN_SEC: 0, none. */
  maxDrainSec: number;
  /** The drain rate's window (includes/drain-rate.lua), s. */
  drainRateWindowSec: number;
}

/** One event of an ingest-7n.lua call: its keys and values. */
export interface IngestEvent {
  keys: IngestKeys;
  hasIdempotencyKey: boolean;
  id: string;
  source: string;
  fingerprint: string;
  /** A replayed entry's own seq; 0 lets the script assign the next. */
  fixedSeq: number;
  fields: readonly string[];
}

/** receipt-epoch-2.lua's reply. */
export interface ReceiptEpoch {
  /** The stream's epoch ('' when there is no stream). */
  epoch: string;
  /** A restore was recorded (a gap of ids that never read "persisted"). */
  restored: boolean;
}

/** receipt-status-3.lua's reply (its header gives the rule). */
export type ReceiptState =
  | { state: 'nostream' | 'unmarked' | 'expired' | 'accepted' | 'persisted' }
  | { state: 'dead'; record: string }
  | { state: 'unknown'; why: string };

/** Each state receipt-status-3.lua answers, and the name of the one value it carries, if any. */
const RECEIPT_STATE_VALUES: Record<ReceiptState['state'], 'record' | 'why' | undefined> = {
  nostream: undefined,
  unmarked: undefined,
  expired: undefined,
  accepted: undefined,
  persisted: undefined,
  dead: 'record',
  unknown: 'why',
};

/** What every write-budget script is given about the database's budget. */
export interface BudgetBounds {
  ceiling: number;
  floor: number;
  /** The caller's MAX_BATCH_DOCS: with it, the budget keeps the largest batch. */
  maxBatch: number | undefined;
}

/** How the largest batch adapts (persist's batch-limit.ts). */
export interface BatchRule {
  minBatch: number;
  cooldownMs: number;
  /** The share of the latency target a full batch aims at. */
  aim: number;
  /** The most the largest batch grows by in one write, a factor. */
  growth: number;
}

/** budget-acquire-1.lua's reply: granted, or how long to wait. */
export interface BudgetGrant {
  granted: boolean;
  rate: number;
  /** Granted: the lease's length; else when to ask again. */
  ms: number;
  batch: number | undefined;
  steps: number;
  /** Granted, and the previous grant was the same writer's (the owner up to its last colon). */
  again: boolean;
}

export interface BudgetRelease {
  released: boolean;
  rate: number;
  batch: number | undefined;
}

export interface BudgetState {
  holder: string;
  leaseLeftMs: number;
  waitMs: number;
  /** undefined: no budget yet. */
  rate: number | undefined;
  batch: number | undefined;
}

const optional = (value: unknown) =>
  value === null || value === undefined || value === false || value === ''
    ? undefined
    : Number(value);

export interface ScriptsOptions {
  /**
   * Each script call is answered within this many ms, or rejects with
   * ScriptTimeout; judged only after the replies already in the socket are
   * read (shared/time.ts `timeout`), so a process busy for longer does not
   * take a reply that came in time for none. The command goes on in Redis.
   */
  timeoutMs?: number;
}

/** A script call not answered within ScriptsOptions.timeoutMs. */
export class ScriptTimeout extends Error {
  constructor(name: string, ms: number) {
    super(`Redis did not answer script ${name} within ${ms} ms`);
    this.name = 'ScriptTimeout';
  }
}

/** Runs Spillway's scripts on one client (EVALSHA, falling back to EVAL after a Redis restart). */
export class Scripts {
  private readonly runners = new Map<string, Runner>();

  constructor(
    private readonly redis: Redis,
    private readonly options: ScriptsOptions = {},
  ) {
    for (const script of SCRIPT_FILES.values()) {
      // Without numberOfKeys, ioredis takes the count of keys as the call's first argument.
      const numberOfKeys = script.perItem ? undefined : script.numberOfKeys;
      redis.defineCommand(script.command, { numberOfKeys, lua: script.lua });
      const runner = (redis as unknown as Record<string, Runner>)[script.command];
      if (runner) this.runners.set(script.name, runner.bind(redis));
    }
  }

  /** Loads every script into Redis (on each connect: a restarted Redis has forgotten them). */
  async preload(): Promise<void> {
    await Promise.all([...SCRIPT_FILES.values()].map((s) => this.redis.script('LOAD', s.lua)));
  }

  /** ingest-7n.lua: one reply per event, in order, each `[kind, …]`. */
  async ingest(limits: IngestLimits, events: readonly IngestEvent[]): Promise<string[][]> {
    const keys: string[] = [];
    const args: Arg[] = [
      limits.idempotencyTtlMs,
      limits.rateLimitPerSec,
      limits.rateWindowTtlMs,
      limits.maxBacklog,
      limits.sequenceTtlMs,
      limits.countersTtlMs,
      limits.maxDrainSec,
      limits.drainRateWindowSec,
    ];
    for (const e of events) {
      keys.push(...e.keys);
      args.push(e.hasIdempotencyKey ? '1' : '0', e.id, e.source, e.fingerprint, e.fixedSeq);
      args.push(e.fields.length, ...e.fields);
    }
    const replies = (await this.run('ingest', keys, args)) as string[][];
    if (!Array.isArray(replies) || replies.length !== events.length)
      throw new Error(
        `ingest script gave ${Array.isArray(replies) ? replies.length : typeof replies} replies for ${events.length} events`,
      );
    return replies;
  }

  /** receipt-epoch-2.lua: the stream's epoch, its marker made (and the stream, with `create`) when missing. */
  async receiptEpoch(
    keys: { stream: string; ledger: string },
    a: { prefix: string; markerName: string; ttlMs: number; create: boolean },
  ): Promise<ReceiptEpoch> {
    const args = [a.prefix, a.markerName, a.ttlMs, a.create ? '1' : '0'];
    const reply = (await this.run('receipt-epoch', [keys.stream, keys.ledger], args)) as unknown[];
    return { epoch: String(reply[0]), restored: reply[1] === 1 };
  }

  /** receipt-status-3.lua (read only): what became of one stream id. */
  async receiptStatus(
    keys: { stream: string; ledger: string; dead: string },
    a: { prefix: string; streamId: string; ttlMs: number },
  ): Promise<ReceiptState> {
    const args = [a.prefix, a.streamId, a.ttlMs];
    const reply = (await this.run(
      'receipt-status',
      [keys.stream, keys.ledger, keys.dead],
      args,
    )) as unknown[];
    const state = String(reply[0]);
    if (!Object.hasOwn(RECEIPT_STATE_VALUES, state))
      throw new Error(`receipt-status gave an unknown reply ${JSON.stringify(reply)}`);
    const value = RECEIPT_STATE_VALUES[state as ReceiptState['state']];
    return (value ? { state, [value]: String(reply[1] ?? '') } : { state }) as ReceiptState;
  }

  /** drain-rate-report-1.lua: adds `entries` to the stream's drain rate; the rate now (undefined: unknown). */
  async drainRateReport(
    key: string,
    entries: number,
    windowSec: number,
  ): Promise<number | undefined> {
    const reply = await this.run('drain-rate-report', [key], [entries, windowSec]);
    return reply === '' || reply === null ? undefined : Number(reply);
  }

  /** dead-record-2.lua: a dead letter's record for the status monitor; the time to live it got, ms. */
  async deadRecord(
    keys: { record: string; ledger: string },
    record: string,
    ttlMs: number,
  ): Promise<number> {
    return Number(await this.run('dead-record', [keys.record, keys.ledger], [record, ttlMs]));
  }

  /** ack-delete-1.lua: XACK then XDEL; the number deleted. */
  async ackDelete(stream: string, group: string, ids: readonly string[]): Promise<number> {
    const reply = (await this.run('ack-delete', [stream], [group, ...ids])) as number[];
    return Number(reply[1]);
  }

  /** catchup-claim-2.lua: the next chunk past every replica's claims. */
  async catchupClaim(
    keys: { stream: string; cursor: string },
    a: { groupCursor: string; leftToSource: number; most: number; cursorTtlMs: number },
  ): Promise<Entries> {
    const args = [a.groupCursor, a.leftToSource, a.most, a.cursorTtlMs];
    return (await this.run('catchup-claim', [keys.stream, keys.cursor], args)) as Entries;
  }

  /** stream-present-1.lua: for each id, whether its entry is still in the stream. */
  async streamPresent(stream: string, ids: readonly string[]): Promise<boolean[]> {
    if (ids.length === 0) return [];
    const reply = (await this.run('stream-present', [stream], ids)) as number[];
    return ids.map((_, i) => reply[i] === 1);
  }

  /** stream-behind-1.lua: the oldest `count` entries added more than `waitedMs` ago (Redis's clock). */
  async streamBehind(
    stream: string,
    waitedMs: number,
    count: number,
    after?: string,
  ): Promise<Entries> {
    const args: Arg[] = [Math.round(waitedMs), count, ...(after === undefined ? [] : [after])];
    return (await this.run('stream-behind', [stream], args)) as Entries;
  }

  /** lease-take-1.lua: true when the caller now holds the lease. */
  async leaseTake(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.run('lease-take', [key], [owner, ttlMs])) === 1;
  }

  /** lease-renew-1.lua: true when the caller still holds the lease. */
  async leaseRenew(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.run('lease-renew', [key], [owner, ttlMs])) === 1;
  }

  /** lease-release-1.lua: true when it was the caller's. */
  async leaseRelease(key: string, owner: string): Promise<boolean> {
    return (await this.run('lease-release', [key], [owner])) === 1;
  }

  /** budget-acquire-1.lua. */
  async budgetAcquire(
    key: string,
    owner: string,
    leaseMs: number,
    bounds: BudgetBounds,
  ): Promise<BudgetGrant> {
    const args = [owner, leaseMs, bounds.ceiling, bounds.floor, ...batchArgs(bounds)];
    const reply = (await this.run('budget-acquire', [key], args)) as unknown[];
    return {
      granted: reply[0] === 1,
      rate: Number(reply[1]),
      ms: Number(reply[2]),
      batch: optional(reply[3]),
      steps: Number(reply[4]),
      again: reply[5] === 1,
    };
  }

  /** budget-renew-1.lua: true when the caller still holds the lease. */
  async budgetRenew(key: string, owner: string, leaseMs: number): Promise<boolean> {
    const reply = (await this.run('budget-renew', [key], [owner, leaseMs])) as unknown[];
    return reply[0] === 1;
  }

  /** budget-release-1.lua. */
  async budgetRelease(
    key: string,
    owner: string,
    write: { latencyMs: number; ok: boolean; docs: number; targetMs: number },
    bounds: BudgetBounds,
    rule: BatchRule | undefined,
  ): Promise<BudgetRelease> {
    const args: Arg[] = [owner, Math.round(write.latencyMs), write.ok ? 1 : 0, write.targetMs];
    args.push(bounds.ceiling, bounds.floor, ...batchArgs(bounds));
    if (bounds.maxBatch !== undefined && rule)
      args.push(rule.minBatch, write.docs, rule.cooldownMs, rule.aim, rule.growth);
    const reply = (await this.run('budget-release', [key], args)) as unknown[];
    const released = reply[0] === 1;
    return {
      released,
      rate: Number(released ? reply[1] : reply[2]),
      batch: optional(reply[3]),
    };
  }

  /** budget-cancel-1.lua: true when the caller held the lease. */
  async budgetCancel(key: string, owner: string): Promise<boolean> {
    const reply = (await this.run('budget-cancel', [key], [owner])) as unknown[];
    return reply[0] === 1;
  }

  /** budget-state-1.lua (read only). */
  async budgetState(key: string, bounds: BudgetBounds): Promise<BudgetState> {
    const args = [bounds.ceiling, bounds.floor, ...batchArgs(bounds)];
    const reply = (await this.run('budget-state', [key], args)) as unknown[];
    return {
      holder: String(reply[0]),
      leaseLeftMs: Number(reply[1]),
      waitMs: Number(reply[2]),
      rate: optional(reply[3]),
      batch: optional(reply[4]),
    };
  }

  /** Runs a script; the number of keys must be the one its file name says (a multiple of it, per item). */
  private run(name: string, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    const script = SCRIPT_FILES.get(name);
    const runner = this.runners.get(name);
    if (!script || !runner) throw new Error(`no Redis script commands/${name}-<keys>.lua`);
    const n = script.numberOfKeys;
    if (script.perItem ? keys.length === 0 || keys.length % n !== 0 : keys.length !== n)
      throw new Error(
        `script ${name} takes ${n} keys${script.perItem ? ' per item' : ''}, got ${keys.length}`,
      );
    const call = script.perItem ? runner(keys.length, ...keys, ...args) : runner(...keys, ...args);
    const ms = this.options.timeoutMs;
    if (ms === undefined) return call;
    return deadline(call, ms, () => new ScriptTimeout(name, ms));
  }
}

function batchArgs(bounds: BudgetBounds): number[] {
  return bounds.maxBatch === undefined ? [] : [bounds.maxBatch];
}
