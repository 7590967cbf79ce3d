/** Helpers of the receipts' tests: status reads, the database server's command count, its process. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MongoClient } from 'mongodb';
import { eventId } from '../../functions/shared/document.js';
import { ROOT } from './programs.js';

export interface StatusAnswer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  /** When the answer came (ms since the epoch): a claim is checked against what the database held then. */
  at: number;
}

/** GET (or another method) on a receipt's Location. */
export async function readReceipt(
  url: string,
  location: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<StatusAnswer> {
  const res = await fetch(`${url}${location}`, { method, headers });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
    at: Date.now(),
  };
}

/** Polls a receipt until its status is `want` (or fails after timeoutMs, saying the last answer). */
export async function statusBecomes(
  url: string,
  location: string,
  want: string,
  timeoutMs: number,
  headers: Record<string, string> = {},
): Promise<StatusAnswer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await readReceipt(url, location, headers);
    if (answer.body.status === want) return answer;
    if (Date.now() > deadline)
      throw new Error(
        `${location} is ${answer.status} ${JSON.stringify(answer.body)}, not ${want}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Commands the database server has received, of every kind (FerretDB's
 * per-command counters at DB_METRICS_URL, read over HTTP: reading them sends
 * the server no command). With mongod (no DB_METRICS_URL): serverStatus's
 * command counters, less the serverStatus reads themselves.
 */
export async function serverCommands(mongo: MongoClient): Promise<number> {
  const metricsUrl = process.env.DB_METRICS_URL;
  if (metricsUrl) {
    const text = await (await fetch(metricsUrl)).text();
    let total = 0;
    for (const m of text.matchAll(/^ferretdb_client_requests_total\{[^}]*\} (\d+)/gm))
      total += Number(m[1]);
    return total;
  }
  const status = await mongo.db('admin').command({ serverStatus: 1 });
  const counters = status.opcounters as Record<string, number | { toNumber(): number }>;
  let total = 0;
  for (const value of Object.values(counters))
    total += typeof value === 'number' ? value : value.toNumber();
  serverStatusReads++;
  return total - serverStatusReads;
}
let serverStatusReads = 0;

/** The pid of the database scripts/services.sh runs for this checkout (the tests stop and resume it). */
export function databasePid(): number {
  const dir = process.env.SPILLWAY_DATA_DIR ?? join(ROOT, '.data');
  const pid = Number(readFileSync(join(dir, 'db.pid'), 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no database pid in ${dir}/db.pid`);
  return pid;
}

/** The stored event of a posted one, or null. */
export async function storedEvent(
  mongo: MongoClient,
  database: string,
  source: string,
  id: string,
): Promise<Record<string, unknown> | null> {
  return mongo
    .db(database)
    .collection('events')
    .findOne({ _id: eventId(source, id) as never });
}

/** When a stored event was persisted (its persistedAt), ms since the epoch; NaN when there is none. */
export function persistedAtOf(doc: Record<string, unknown> | null): number {
  const at = doc?.persistedAt;
  return at instanceof Date ? at.getTime() : Number.NaN;
}
