/** Helpers shared by the tests: real function processes on real sockets. */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudEvent, HTTP } from 'cloudevents';
import { Redis } from 'ioredis';
import { sourceEventFor } from '../../functions/shared/entry.js';
import { readStatus } from '../../functions/shared/status.js';
import { sampleServerWrites } from '../../scripts/db-writes.js';
import { hasExited, spawnEntry, waitHttpReady } from '../../scripts/processes.js';

export const redisUrl = () => process.env.REDIS_URL as string;
export const mongoUrl = () => process.env.MONGODB_URL as string;

/** A name no other test uses (streams, subjects, idempotency keys). */
export const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

export function redisClient(): Redis {
  const redis = new Redis(redisUrl(), { maxRetriesPerRequest: 2 });
  // A failed command fails the test; the connection event needs a listener of its own.
  redis.on('error', () => undefined);
  return redis;
}

export interface FunctionProcess {
  url: string;
  proc: ChildProcess;
  output: () => string;
  /** Sends a signal and resolves with the exit code. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

let nextPort = 18_080 + (process.pid % 200) * 10;
const METRICS_OFFSET = 1000;

/** The ports of a running function, to start its replacement on the same ones. */
export function portsOf(fn: FunctionProcess): { PORT: string; METRICS_PORT: string } {
  const port = Number(new URL(fn.url).port);
  return { PORT: String(port), METRICS_PORT: String(port + METRICS_OFFSET) };
}

/** The Prometheus text a function serves on its metrics port. */
export async function metricsOf(fn: FunctionProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${portsOf(fn).METRICS_PORT}/metrics`)).text();
}

/** Spawns a TypeScript entry point of the project, collecting its output. */
function spawnTs(entry: string, env: Record<string, string>) {
  const child = spawnEntry(entry, { env, capture: true });
  const exited = child.exited.then(({ code }) => code);
  return {
    url: '',
    proc: child.proc,
    exited,
    output: child.output,
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!hasExited(child.proc)) child.proc.kill(signal);
      return exited;
    },
  };
}

/** Starts `functions/host/main.ts` (the deployed host) for a target in a child process. */
export async function startFunction(
  target: 'ingest' | 'persist',
  env: Record<string, string> = {},
  readyPath = '/readyz',
): Promise<FunctionProcess> {
  const port = env.PORT ? Number(env.PORT) : nextPort++;
  const child = spawnTs('functions/host/main.ts', {
    FUNCTION_TARGET: target,
    PORT: String(port),
    METRICS_PORT: String(port + METRICS_OFFSET),
    LOG_LEVEL: 'warn',
    ...env,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttpReady(`${url}${readyPath}`, {
      timeoutMs: 60_000,
      proc: child.proc,
      what: target,
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}:\n${child.output()}`);
  }
  return { ...child, url };
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text);
  } catch {
    json = { text };
  }
  return { status: res.status, headers: res.headers, body: json };
}

/** Starts the local relay (eventing/relay/main.ts) in a child process; resolves once it says it is ready. */
export async function startRelay(env: Record<string, string>): Promise<FunctionProcess> {
  const statusFile = join(tmpdir(), `spillway-relay-${randomUUID().slice(0, 8)}.json`);
  const child = spawnTs('eventing/relay/main.ts', {
    LOG_LEVEL: 'info',
    ...env,
    STATUS_FILE: statusFile,
  });
  const deadline = Date.now() + 30_000;
  while (readStatus(statusFile)?.ready !== true) {
    if (child.proc.exitCode !== null)
      throw new Error(`relay exited with ${child.proc.exitCode}:\n${child.output()}`);
    if (Date.now() > deadline) throw new Error(`relay not started after 30 s:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

/**
 * Samples the test database server's write commands every intervalMs (MONGODB_URL,
 * and DB_METRICS_URL when set) until stopped: scripts/db-writes.ts's sampler.
 */
export function sampleDbWrites(intervalMs: number) {
  return sampleServerWrites({
    mongodbUrl: mongoUrl(),
    metricsUrl: process.env.DB_METRICS_URL,
    intervalMs,
  });
}

/** Polls until check() is true, or fails with what() after timeoutMs. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: () => Promise<string> | string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await what()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Posts n events to ingest, `concurrency` at a time; returns the 202 answers in order. */
export async function postMany(
  url: string,
  n: number,
  concurrency: number,
  event: (i: number) => unknown,
): Promise<Array<{ id: string; seq: number }>> {
  const out: Array<{ id: string; seq: number }> = new Array(n);
  let next = 0;
  const agent = async () => {
    while (next < n) {
      const i = next++;
      const res = await postJson(`${url}/events`, event(i));
      if (res.status !== 202)
        throw new Error(`post ${i} got ${res.status} ${JSON.stringify(res.body)}`);
      out[i] = res.body as { id: string; seq: number };
    }
  };
  await Promise.all(Array.from({ length: concurrency }, agent));
  return out;
}

/**
 * A delivery as RedisStreamSource makes it of a stream entry: a CloudEvent in
 * binary mode, encoded by the CloudEvents SDK; `attributes` override its parts.
 */
export function sourceDelivery(
  streamId: string,
  data: unknown,
  attributes: Record<string, unknown> = {},
): RequestInit {
  const event = {
    ...sourceEventFor(streamId, [], '127.0.0.1:6390', 'spillway:events'),
    data,
    ...attributes,
  };
  const message = HTTP.binary(new CloudEvent(event, false));
  return {
    method: 'POST',
    headers: message.headers as Record<string, string>,
    body: message.body as string,
  };
}
