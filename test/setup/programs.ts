/**
 * Holds every test process to test/support/programs.ts: starting a program the
 * README's test command does not install fails at once, naming it, on every
 * machine, even one where the program happens to be on PATH (a tool installed
 * by hand, or by another command, must never be what makes the suite pass).
 */
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { refusal } from '../support/programs.js';

type Starter = (...args: unknown[]) => unknown;
const guarded = childProcess as unknown as Record<string, Starter>;

function guard(name: string, program: (args: unknown[]) => [string, unknown[]]): void {
  const original = guarded[name] as Starter;
  guarded[name] = function (this: unknown, ...args: unknown[]) {
    const [file, rest] = program(args);
    const why = refusal(file, rest);
    if (why !== undefined) throw new Error(`the suite may not start ${file}: ${why}`);
    return original.apply(this, args);
  };
}

const fileAndArgs = (args: unknown[]): [string, unknown[]] => [
  String(args[0]),
  Array.isArray(args[1]) ? args[1] : [],
];
for (const name of ['spawn', 'spawnSync', 'execFile', 'execFileSync']) guard(name, fileAndArgs);
// fork runs Node on a module; exec runs a shell command line, which this table cannot see into.
guard('fork', () => [process.execPath, []]);
for (const name of ['exec', 'execSync']) guard(name, (args) => [`sh -c ${String(args[0])}`, []]);
syncBuiltinESMExports();
