/** Helpers shared by the tests: real function processes on real sockets. */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

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
function spawnTs(
  entry: string,
  env: Record<string, string>,
): FunctionProcess & { exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', entry], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout?.on('data', (chunk) => (output += chunk));
  proc.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => resolve(code)),
  );
  return {
    url: '',
    proc,
    exited,
    output: () => output,
    kill: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Starts `functions/host.ts` (the deployed host) for a target in a child process. */
export async function startFunction(
  target: 'ingest' | 'persist',
  env: Record<string, string> = {},
  readyPath = '/readyz',
): Promise<FunctionProcess> {
  const port = env.PORT ? Number(env.PORT) : nextPort++;
  const child = spawnTs('functions/host.ts', {
    FUNCTION_TARGET: target,
    PORT: String(port),
    METRICS_PORT: String(port + METRICS_OFFSET),
    LOG_LEVEL: 'warn',
    ...env,
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  let last = 'no answer';
  for (;;) {
    if (child.proc.exitCode !== null)
      throw new Error(`${target} exited with ${child.proc.exitCode}:\n${child.output()}`);
    try {
      const res = await fetch(`${url}${readyPath}`, { signal: AbortSignal.timeout(5000) });
      if (res.status === 200) break;
      last = `${res.status} ${await res.text()}`;
    } catch (error) {
      last = String(error);
    }
    if (Date.now() > deadline)
      throw new Error(`${target} not ready after 60 s (last: ${last}):\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 100));
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

/** Starts the local relay (eventing/relay/main.ts) in a child process. */
export async function startRelay(env: Record<string, string>): Promise<FunctionProcess> {
  const child = spawnTs('eventing/relay/main.ts', { LOG_LEVEL: 'info', ...env });
  const deadline = Date.now() + 30_000;
  while (!child.output().includes('relay started')) {
    if (child.proc.exitCode !== null)
      throw new Error(`relay exited with ${child.proc.exitCode}:\n${child.output()}`);
    if (Date.now() > deadline) throw new Error(`relay not started after 30 s:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
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
