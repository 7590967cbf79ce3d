/**
 * The project's child processes, spawned, awaited and stopped the same way by
 * the local pipeline, the tests and the benchmarks: spawn an entry point (a .js
 * file, or a .ts file through tsx), wait until it answers 200 on an HTTP path,
 * stop it with SIGTERM and kill it if it overruns.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface Spawned {
  proc: ChildProcess;
  /** Everything it wrote, when spawned with `capture`. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  /** Command-line arguments after the entry. */
  args?: readonly string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Collect stdout and stderr (else they go to this process's own, or to `stdio`). */
  capture?: boolean;
  stdio?: StdioOptions;
}

/** Runs a module of the project in a new Node process: .ts files through tsx. */
export function spawnEntry(entry: string | URL, options: SpawnOptions = {}): Spawned {
  const file = entry instanceof URL ? fileURLToPath(entry) : entry;
  const args = [
    ...(file.endsWith('.ts') ? ['--import', 'tsx', file] : [file]),
    ...(options.args ?? []),
  ];
  const proc = spawn(process.execPath, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: options.capture
      ? ['ignore', 'pipe', 'pipe']
      : (options.stdio ?? ['ignore', 'inherit', 'inherit']),
  });
  let text = '';
  proc.stdout?.on('data', (chunk) => (text += chunk));
  proc.stderr?.on('data', (chunk) => (text += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, output: () => text, exited };
}

export const hasExited = (proc: ChildProcess) => proc.exitCode !== null || proc.signalCode !== null;

/**
 * Resolves once `url` answers 2xx; rejects when the process exits first, or
 * after timeoutMs with the last answer seen.
 */
export async function waitHttpReady(
  url: string,
  options: {
    timeoutMs: number;
    proc?: ChildProcess;
    what?: string;
    /** Which answers mean ready (default: 2xx). */
    accept?: (status: number) => boolean;
  },
): Promise<void> {
  const accept = options.accept ?? ((status: number) => status >= 200 && status < 300);
  const what = options.what ?? url;
  const deadline = performance.now() + options.timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (options.proc && hasExited(options.proc))
      throw new Error(
        `${what} exited before it was ready (${options.proc.exitCode ?? options.proc.signalCode})`,
      );
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (accept(res.status)) return;
      last = `${res.status} ${body}`;
    } catch (error) {
      last = String(error);
    }
    if (performance.now() > deadline)
      throw new Error(`${what} not ready at ${url} after ${options.timeoutMs} ms (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** SIGTERM (or `signal`), then SIGKILL after timeoutMs; resolves once it exited. */
export async function stopProcess(
  proc: ChildProcess,
  options: { timeoutMs: number; signal?: NodeJS.Signals; onKill?: () => void },
): Promise<void> {
  if (hasExited(proc)) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(options.signal ?? 'SIGTERM');
  const timer = setTimeout(() => {
    options.onKill?.();
    proc.kill('SIGKILL');
  }, options.timeoutMs);
  await exited;
  clearTimeout(timer);
}
