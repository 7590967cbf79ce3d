/**
 * The local runner supervises like a platform: a child that dies is started
 * again, one that keeps dying gives up the pipeline, and a child that cannot
 * start stops `npm start` with a clear message and a non-zero exit.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { spawnEntry } from '../../scripts/processes.js';
import { Supervisor } from '../../scripts/supervisor.js';

const dir = mkdtempSync(join(tmpdir(), 'spillway-supervisor-'));
function script(name: string, text: string): URL {
  const path = join(dir, name);
  writeFileSync(path, text);
  return pathToFileURL(path);
}

function supervisor(lines: string[], gaveUp: string[]) {
  return new Supervisor({
    maxRestarts: 2,
    restartWindowMs: 60_000,
    firstDelayMs: 20,
    maxDelayMs: 100,
    readyTimeoutMs: 10_000,
    log: (line) => lines.push(line),
    onGiveUp: (_name, reason) => gaveUp.push(reason),
  });
}

const waitUntil = async (check: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('the supervisor', () => {
  it('starts a killed child again, with a log line and a restart count', async () => {
    const lines: string[] = [];
    const gaveUp: string[] = [];
    const sup = supervisor(lines, gaveUp);
    await sup.start({
      name: 'sleeper',
      entry: script('sleeper.mjs', 'setInterval(() => {}, 1000);\n'),
      env: {},
      stopTimeoutMs: 2000,
    });
    const first = sup.pid('sleeper') as number;
    process.kill(first, 'SIGKILL');
    await waitUntil(() => (sup.pid('sleeper') ?? first) !== first, 10_000);
    expect(lines.join('\n')).toMatch(/sleeper exited \(signal SIGKILL\).*restart 1/);
    await sup.stopAll([['sleeper']]);
    expect(gaveUp).toEqual([]);
  });

  it('gives up a child that keeps dying, saying which and how', async () => {
    const lines: string[] = [];
    const gaveUp: string[] = [];
    const sup = supervisor(lines, gaveUp);
    await sup.start({
      name: 'crasher',
      entry: script('crasher.mjs', 'process.exit(3);\n'),
      env: {},
      stopTimeoutMs: 2000,
    });
    await waitUntil(() => gaveUp.length > 0, 10_000);
    expect(gaveUp[0]).toMatch(/crasher exited \(code 3\) 3 times within 60 s/);
    await sup.stopAll([]);
  });

  it('SIGKILLs a child that does not stop within its stop timeout', async () => {
    const lines: string[] = [];
    const sup = supervisor(lines, []);
    // Ready (its SIGTERM handler in place) once it answers on its port.
    await sup.start({
      name: 'stubborn',
      entry: script(
        'stubborn.mjs',
        [
          "import { createServer } from 'node:http';",
          "process.on('SIGTERM', () => {});",
          'createServer((req, res) => res.end()).listen(19_479);',
        ].join('\n'),
      ),
      env: {},
      readyUrl: 'http://127.0.0.1:19479/',
      stopTimeoutMs: 300,
    });
    const started = Date.now();
    await sup.stopAll([['stubborn']]);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(lines.join('\n')).toMatch(/stubborn did not stop within 300 ms of SIGTERM; killing it/);
  });
});

describe('npm start when a function cannot start', () => {
  it('stops with a clear message and exit code 1', async () => {
    const run = spawnEntry('scripts/pipeline.ts', {
      env: { DB_WRITE_OPS_PER_SEC: '0', PORT: '19480', METRICS_PORT: '20480', LOG_LEVEL: 'warn' },
      capture: true,
    });
    const result = await Promise.race([
      run.exited,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000)),
    ]);
    if (!result) run.proc.kill('SIGKILL');
    expect(result?.code, run.output()).toBe(1);
    expect(run.output()).toMatch(/DB_WRITE_OPS_PER_SEC="0" is not an integer/);
    expect(run.output()).toMatch(/pipeline: could not start: persist exited before it was ready/);
  });
});
