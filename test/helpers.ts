/** Helpers shared by the tests: real function processes on real sockets. */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

export const redisUrl = () => process.env.REDIS_URL as string;
export const mongoUrl = () => process.env.MONGODB_URL as string;

/** A name no other test uses (streams, subjects, idempotency keys). */
export const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

export function redisClient(): Redis {
  return new Redis(redisUrl(), { maxRetriesPerRequest: 2 });
}

export interface FunctionProcess {
  url: string;
  proc: ChildProcess;
  output: () => string;
  /** Sends a signal and resolves with the exit code. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

let nextPort = 18_080 + (process.pid % 200) * 10;

/** Starts `functions/host.ts` (the deployed host) for a target in a child process. */
export async function startFunction(
  target: 'ingest' | 'persist',
  env: Record<string, string> = {},
  readyPath = '/readyz',
): Promise<FunctionProcess> {
  const port = nextPort++;
  const proc = spawn(process.execPath, ['--import', 'tsx', 'functions/host.ts'], {
    env: {
      ...process.env,
      FUNCTION_TARGET: target,
      PORT: String(port),
      METRICS_PORT: String(port + 1000),
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout?.on('data', (chunk) => (output += chunk));
  proc.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => resolve(code)),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null)
      throw new Error(`${target} exited with ${proc.exitCode}:\n${output}`);
    try {
      const res = await fetch(`${url}${readyPath}`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${target} not ready after 30 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    proc,
    output: () => output,
    kill: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
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

/** Everything in Redis that a request could have changed: keys and the stream's length. */
export async function redisSnapshot(redis: Redis, stream: string): Promise<string> {
  const keys = (await redis.keys('spillway:*')).sort();
  return JSON.stringify({ keys, len: await redis.xlen(stream), dbsize: await redis.dbsize() });
}
