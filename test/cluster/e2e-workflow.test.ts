/**
 * The end-to-end workflow (.github/workflows/e2e.yaml) cannot run here (no Docker,
 * no Kubernetes); what it runs is checked instead: actionlint passes, and it
 * brings the cluster up and down with the scripts the README names, sends the
 * spike the README names, and ends with the verdict script.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { acceptedBy, deployedBudget } from '../../scripts/e2e-verify.js';
import { projectTool } from '../support/tools.js';
import { ROOT, read } from './support.js';

const WORKFLOW = '.github/workflows/e2e.yaml';
const workflow = parse(read(WORKFLOW)) as {
  jobs: Record<
    string,
    { steps: Array<{ name?: string; run?: string; if?: string; uses?: string }> }
  >;
};
const steps = Object.values(workflow.jobs).flatMap((job) => job.steps);
const runs = steps.map((step) => step.run ?? '').join('\n');

describe('the end-to-end workflow', () => {
  it('passes actionlint', () => {
    const actionlint = projectTool('actionlint');
    expect(() =>
      execFileSync(actionlint, [WORKFLOW], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' }),
    ).not.toThrow();
  });

  it('runs what the README tells users to run, in that order', () => {
    const readme = read('cluster/README.md');
    const order = ['cluster/up.sh', 'k6/spike-test.js', 'scripts/e2e-verify.ts', 'cluster/down.sh'];
    for (const command of ['cluster/up.sh', 'k6/spike-test.js', 'cluster/down.sh'])
      expect(readme, `cluster/README.md names ${command}`).toContain(command);
    const positions = order.map((command) => runs.indexOf(command));
    expect(
      positions.every((p) => p >= 0),
      JSON.stringify(positions),
    ).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    // The cluster comes down whatever happened.
    const down = steps.find((step) => step.run?.includes('cluster/down.sh'));
    expect(down?.if).toBe('always()');
  });

  it("installs k6 with Grafana's action pinned by commit, and builds nothing of k6", () => {
    const setup = steps.find((step) => step.uses?.startsWith('grafana/setup-k6-action@'));
    expect(setup?.uses).toMatch(/^grafana\/setup-k6-action@[0-9a-f]{40}$/);
    expect((setup as { with?: Record<string, string> }).with?.['k6-version']).toMatch(
      /^\d+\.\d+\.\d+$/,
    );
    const at = steps.indexOf(setup as (typeof steps)[number]);
    const spike = steps.findIndex((step) => step.run?.includes('k6/spike-test.js'));
    expect(at).toBeGreaterThanOrEqual(0);
    expect(spike).toBeGreaterThan(at);
    expect(runs).toMatch(/^k6 version$/m);
    expect(runs).not.toMatch(/go\.k6\.io|go (install|build)/);
  });

  it('names only files that exist', () => {
    const paths = [
      ...runs.matchAll(/\b((?:cluster|scripts|k6)\/[\w./-]+\.(?:sh|ts|js|json))\b/g),
    ].map((m) => m[1] as string);
    expect(paths.length).toBeGreaterThan(4);
    for (const path of paths) expect(existsSync(join(ROOT, path)), path).toBe(true);
    expect(runs).toContain('scripts/db-writes.ts sample');
    // The API key and the NodePort are where up.sh puts them.
    expect(read('cluster/up.sh')).toContain('.data/cluster/secrets.env');
    expect(runs).toContain('.data/cluster/secrets.env');
    expect(runs).toContain('http://localhost:30000');
  });

  it("checks against the budget the cluster is deployed with, and k6's count of 202s", () => {
    expect(deployedBudget()).toBeGreaterThan(0);
    expect(deployedBudget()).toBeLessThanOrEqual(100);
    expect(acceptedBy({ root_group: { checks: { 'accepted (202)': { passes: 42 } } } })).toBe(42);
    expect(() => acceptedBy({ root_group: { checks: {} } })).toThrow(/accepted \(202\)/);
    // The check's name is the spike script's own.
    expect(read('k6/spike-test.js')).toContain("'accepted (202)'");
  });
});
