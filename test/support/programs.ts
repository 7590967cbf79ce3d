/**
 * Every program the suite may start, and where a fresh machine gets it. The
 * README's test command (`npm ci && npm test`) is the only install path: a
 * program is here only when the machine kind ships it, or when `npm test`
 * itself installs it. test/setup/programs.ts holds every test process to this
 * table at run time, whatever else happens to be on PATH.
 */
import { isAbsolute, join, relative, resolve } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

/** Tools built into the checkout's .data/bin by scripts/tools.sh or scripts/services.sh. */
export const BUILT_TOOLS_DIR = join(ROOT, '.data', 'bin');

/** Program name → where `npm ci && npm test` on a fresh machine gets it. */
export const PROGRAMS: Record<string, string> = {
  bash: 'the machine kind (Debian base)',
  git: 'the machine kind (the checkout is a clone)',
  go: 'the machine kind (Go with its module proxy)',
  pgrep: 'the machine kind (Debian procps)',
  sysctl: 'the machine kind (Debian procps)',
  'redis-server': "scripts/services.sh (Debian's redis-server, installed when missing)",
  'redis-cli': "scripts/services.sh (Debian's redis-server, installed when missing)",
};

/** Why a program may not be started by a test, or undefined when it may. */
export function refusal(file: string, args: readonly unknown[] = []): string | undefined {
  if (file === process.execPath || file === 'node') return undefined;
  if (isAbsolute(file)) {
    const inside = relative(BUILT_TOOLS_DIR, file);
    if (!inside.startsWith('..') && !isAbsolute(inside)) return undefined;
    return `${file} is not a tool the project builds into .data/bin`;
  }
  if (!(file in PROGRAMS))
    return `"${file}" is not installed by the README's test command; install it from scripts/tools.sh or scripts/services.sh and list it in test/support/programs.ts`;
  if (file === 'bash') {
    const script = args.find((a) => typeof a === 'string' && !a.startsWith('-'));
    if (args[0] === '-c' || typeof script !== 'string')
      return 'bash runs only the project\'s own scripts here, not "-c" command lines';
    const inRepo = relative(ROOT, resolve(ROOT, script));
    if (inRepo.startsWith('..')) return `bash ${script}: not a script of the repository`;
  }
  return undefined;
}
