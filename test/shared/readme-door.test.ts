/**
 * The README's first two commands are the user's door: one brings the pipeline
 * up, one runs this suite. CI (.ci/run) runs the second exactly as written,
 * before anything of its own, and installs nothing itself.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/programs.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
/** The shell commands of the README's code blocks, in order. */
const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
  (m[1] as string).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')),
);
/** .ci/run's command lines (comments, echoes and blank lines dropped). */
const ciLines = ci
  .split('\n')
  .map((l) => l.replace(/\s+#.*$/, '').trim())
  .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('echo '));

describe("the README's two commands", () => {
  it('come first: one starts the pipeline, one runs the suite, each installing what it needs', () => {
    expect(blocks[0]).toEqual(['npm ci && npm start']);
    expect(blocks[1]).toEqual(['npm ci && npm test']);
    const scripts = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts;
    // both start with the services script, which installs Redis and the database when missing
    expect(scripts.test).toMatch(/^bash scripts\/services\.sh up\b/);
    expect(readFileSync(join(ROOT, 'scripts/pipeline.ts'), 'utf8')).toContain('ensureServices');
  });

  it('are what CI runs, the test one before any check of its own', () => {
    const firstNpm = ciLines.findIndex((l) => l.startsWith('npm ') && l !== 'npm --version');
    expect(ciLines[firstNpm]).toBe(blocks[1]?.[0]);
    for (const check of ['npm run typecheck', 'npm run lint'])
      expect(ciLines.indexOf(check)).toBeGreaterThan(firstNpm);
  });

  it('leave installing to the project: CI installs nothing itself', () => {
    expect(
      ciLines.filter((l) => /apt-get|go install|pip install|npm install|curl /.test(l)),
    ).toEqual([]);
  });
});
