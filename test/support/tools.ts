/** The tools the suite builds through scripts/tools.sh (into .data/bin, on first use). */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './programs.js';

/** Ensures a tool pinned in scripts/tools.sh and returns its path; building it may take minutes. */
export function projectTool(name: 'kustomize' | 'actionlint' | 'promtool'): string {
  return execFileSync('bash', [join(ROOT, 'scripts/tools.sh'), name], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}
