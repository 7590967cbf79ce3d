/**
 * The guard that keeps `npm ci && npm test` true on a fresh machine
 * (test/setup/programs.ts): a test may start only programs the README's test
 * command installs, and this holds even where another tool is on PATH.
 */
import { execFileSync, execSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROGRAMS, ROOT, refusal } from '../support/programs.js';

/** TypeScript files of the folders the suite runs code from. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts') && !name.includes('node_modules'))
    .map((name) => join(dir, name));
}

describe('programs the suite starts', () => {
  it('are refused when the README path does not install them, even when they are on PATH', () => {
    // shellcheck is on this machine's PATH once `npm run lint` ran: refused all the same
    expect(() => execFileSync('shellcheck', ['--version'])).toThrow(
      /may not start shellcheck: "shellcheck" is not installed by the README's test command/,
    );
    expect(() => spawnSync('k6', ['version'])).toThrow(/may not start k6/);
    expect(() => execFileSync('bash', ['-c', 'true'])).toThrow(/not "-c" command lines/);
    expect(() => execSync('true')).toThrow(/may not start sh -c true/);
    expect(() => execFileSync('/usr/bin/env', ['true'])).toThrow(/not a tool the project builds/);
  });

  it('are started when the table lists them', () => {
    expect(
      execFileSync(process.execPath, ['-e', 'process.stdout.write("ok")'], { encoding: 'utf8' }),
    ).toBe('ok');
    expect(execFileSync('git', ['--version'], { encoding: 'utf8' })).toMatch(/^git version/);
    expect(refusal('bash', ['scripts/services.sh', 'env'])).toBeUndefined();
    expect(refusal('bash', ['/etc/profile'])).toMatch(/not a script of the repository/);
  });

  it('are each found on this machine, from the origin the table names', () => {
    const path = (process.env.PATH ?? '').split(delimiter);
    for (const program of Object.keys(PROGRAMS)) {
      const found = path.some((dir) => {
        const file = join(dir, program);
        return existsSync(file) && statSync(file).isFile();
      });
      expect(found, `${program} (${PROGRAMS[program]})`).toBe(true);
    }
  });

  it('named literally in the code the suite runs are all in the table', () => {
    const files = [...sources('test'), ...sources('bench'), ...sources('scripts')];
    const named = new Map<string, string[]>();
    for (const file of files) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      for (const m of text.matchAll(/\b(?:spawn|spawnSync|execFile|execFileSync)\(\s*'([^']+)'/g)) {
        const program = m[1] as string;
        named.set(program, [...(named.get(program) ?? []), relative(ROOT, join(ROOT, file))]);
      }
    }
    expect(named.size).toBeGreaterThan(3);
    const unlisted = [...named]
      .filter(([program]) => program !== 'node' && !(program in PROGRAMS))
      .filter(([, where]) => !where.every((f) => f === 'test/shared/programs.test.ts'));
    expect(unlisted, 'programs started by the suite that the README path does not install').toEqual(
      [],
    );
  });
});
