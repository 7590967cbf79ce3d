/**
 * Runs the pipeline's processes the way a platform runs containers: a child that
 * exits while it should run is started again (with a growing delay, like a
 * crash-loop back-off), a child that keeps dying gives up the whole pipeline, and
 * a stop is bounded: SIGTERM, then SIGKILL after the child's stop timeout.
 */
import type { ChildProcess } from 'node:child_process';
import { hasExited, spawnEntry, stopProcess, waitHttpReady } from './processes.js';

export interface ChildSpec {
  name: string;
  /** The module to run (a .js file, or a .ts file when the supervisor itself runs under tsx). */
  entry: URL;
  env: Record<string, string>;
  /** Started (and restarted) once this answers 200; none = as soon as it is spawned. */
  readyUrl?: string;
  /** Longest wait after SIGTERM before SIGKILL. */
  stopTimeoutMs: number;
}

export interface SupervisorOptions {
  /** Restarts allowed within restartWindowMs; one more gives up the pipeline. */
  maxRestarts: number;
  restartWindowMs: number;
  /** First restart delay, doubled for each restart within the window, capped at maxDelayMs. */
  firstDelayMs: number;
  maxDelayMs: number;
  readyTimeoutMs: number;
  log(line: string): void;
  /** Called once when a child died too often; the supervisor does nothing more. */
  onGiveUp(name: string, reason: string): void;
  /** Called whenever a child is spawned (not ready yet) and once it is ready. */
  onChange?(): void;
}

interface Running {
  spec: ChildSpec;
  proc: ChildProcess | undefined;
  /** The running process answered its readyUrl (or has none). */
  ready: boolean;
  startedAt: number;
  restarts: number[];
  exited: Promise<void>;
  timer: NodeJS.Timeout | undefined;
}

/** How a child ended, for a log line: a signal when it was killed, else its exit code. */
function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`;
}

export class Supervisor {
  private readonly children = new Map<string, Running>();
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {}

  /** The pid of a running child. */
  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid;
  }

  /** Each child's pid and readiness, as data (for STATUS_FILE). */
  status(): Record<string, { pid: number | undefined; ready: boolean }> {
    const out: Record<string, { pid: number | undefined; ready: boolean }> = {};
    for (const [name, running] of this.children)
      out[name] = { pid: running.proc?.pid, ready: running.ready };
    return out;
  }

  /** Spawns the child and resolves once it is ready. */
  async start(spec: ChildSpec): Promise<void> {
    const running: Running = {
      spec,
      proc: undefined,
      ready: false,
      startedAt: 0,
      restarts: [],
      exited: Promise.resolve(),
      timer: undefined,
    };
    this.children.set(spec.name, running);
    this.spawn(running);
    await this.waitReady(running);
  }

  private spawn(running: Running): void {
    const { spec } = running;
    const { proc, exited } = spawnEntry(spec.entry, { env: spec.env });
    running.proc = proc;
    running.ready = false;
    running.startedAt = performance.now();
    running.exited = exited.then(({ code, signal }) => {
      if (!this.stopping && running.proc === proc) this.died(running, describeExit(code, signal));
    });
    this.options.log(`${spec.name} running (pid ${proc.pid})`);
    this.options.onChange?.();
  }

  private died(running: Running, how: string): void {
    const now = performance.now();
    const { name } = running.spec;
    running.restarts = running.restarts.filter((at) => now - at < this.options.restartWindowMs);
    running.restarts.push(now);
    const lived = ((now - running.startedAt) / 1000).toFixed(1);
    if (running.restarts.length > this.options.maxRestarts) {
      const reason = `${name} exited (${how}) ${running.restarts.length} times within ${this.options.restartWindowMs / 1000} s; see its log above`;
      this.options.log(`${reason}; giving up`);
      this.options.onGiveUp(name, reason);
      return;
    }
    const delay = Math.min(
      this.options.firstDelayMs * 2 ** (running.restarts.length - 1),
      this.options.maxDelayMs,
    );
    this.options.log(
      `${name} exited (${how}) after ${lived} s; restarting it in ${delay} ms (restart ${running.restarts.length}, at most ${this.options.maxRestarts} a minute)`,
    );
    running.timer = setTimeout(() => {
      if (this.stopping) return;
      this.spawn(running);
      this.waitReady(running).catch((error: Error) => this.options.log(error.message));
    }, delay);
  }

  private async waitReady(running: Running): Promise<void> {
    const { readyUrl, name } = running.spec;
    const proc = running.proc;
    if (readyUrl)
      await waitHttpReady(readyUrl, {
        timeoutMs: this.options.readyTimeoutMs,
        what: name,
        ...(proc ? { proc } : {}),
      });
    if (running.proc !== proc) return;
    running.ready = true;
    this.options.onChange?.();
  }

  /** SIGTERM, then SIGKILL after the child's stop timeout; resolves once it exited. */
  async stop(name: string): Promise<void> {
    const running = this.children.get(name);
    if (!running) return;
    clearTimeout(running.timer);
    const proc = running.proc;
    if (!proc || hasExited(proc)) return;
    await stopProcess(proc, {
      timeoutMs: running.spec.stopTimeoutMs,
      onKill: () =>
        this.options.log(
          `${name} did not stop within ${running.spec.stopTimeoutMs} ms of SIGTERM; killing it`,
        ),
    });
    await running.exited;
  }

  /** Stops every child: phase after phase, the children of one phase together (the rest last). */
  async stopAll(phases: ReadonlyArray<readonly string[]>): Promise<void> {
    this.stopping = true;
    const named = phases.flat();
    const rest = [...this.children.keys()].filter((name) => !named.includes(name));
    for (const phase of [...phases, rest]) await Promise.all(phase.map((name) => this.stop(name)));
  }

  /** Kills every child at once (a second Ctrl-C). */
  killAll(): void {
    this.stopping = true;
    for (const running of this.children.values()) {
      clearTimeout(running.timer);
      running.proc?.kill('SIGKILL');
    }
  }
}
