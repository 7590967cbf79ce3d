import { describe, expect, it } from 'vitest';
import { read } from './support.js';

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

const dockerfile = instructions(read('Dockerfile'));
const stages: Instruction[][] = [];
for (const instruction of dockerfile) {
  if (instruction.keyword === 'FROM') stages.push([]);
  stages.at(-1)?.push(instruction);
}
const runtime = stages.at(-1) as Instruction[];
const nodeImage = /ARG NODE_IMAGE=(\S+)/.exec(read('Dockerfile'))?.[1] ?? '';

describe('Dockerfile', () => {
  it('is multi-stage on a pinned Node 20 image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(nodeImage).toMatch(/^node:20\.\d+\.\d+-[a-z]+-slim$/);
    for (const stage of stages) expect(stage[0]?.args).toMatch(/^\$\{NODE_IMAGE\} AS \w+$/);
  });

  it('builds with npm run build and ships production dependencies only', () => {
    const runs = dockerfile.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    expect(runs).toContain('npm run build');
    expect(runs.some((r) => r.startsWith('npm ci --omit=dev'))).toBe(true);
    const copies = runtime.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    const fromStage = (name: string) => copies.filter((c) => c.includes(`--from=${name}`));
    const depsStage = stages.find((s) => s.some((i) => i.args.startsWith('npm ci --omit=dev')));
    const depsName = /AS (\w+)$/.exec(depsStage?.[0]?.args ?? '')?.[1] as string;
    expect(fromStage(depsName).join(' ')).toContain('/app/node_modules ./node_modules');
    // node_modules reaches the runtime from the production-only stage, nowhere else
    expect(copies.filter((c) => c.includes('node_modules'))).toEqual(fromStage(depsName));
    expect(runtime.some((i) => i.keyword === 'RUN')).toBe(false);
  });

  it('runs as a non-root numeric user', () => {
    const users = runtime.filter((i) => i.keyword === 'USER').map((i) => i.args);
    expect(users).toHaveLength(1);
    expect(users[0]).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/);
  });

  it('bakes in no secret', () => {
    const settings = dockerfile.filter((i) => ['ENV', 'ARG', 'LABEL'].includes(i.keyword));
    for (const { args } of settings) {
      expect(args).not.toMatch(/KEY|SECRET|PASSWORD|TOKEN|_URL|CREDENTIAL/i);
    }
    const ignored = read('.dockerignore').split('\n');
    for (const entry of ['.git', '.data', 'node_modules', '**/.env', '**/*.env']) {
      expect(ignored).toContain(entry);
    }
    expect(dockerfile.some((i) => i.keyword === 'COPY' && /^\.\s/.test(i.args))).toBe(false);
  });

  it('starts with the command the local pipeline runs (START_COMMAND in functions/host/main.ts)', () => {
    const literal = /export const START_COMMAND = (\[[^\]]*\]) as const;/.exec(
      read('functions/host/main.ts'),
    )?.[1];
    expect(literal, 'functions/host/main.ts must export START_COMMAND').toBeDefined();
    const startCommand = JSON.parse((literal as string).replace(/'/g, '"')) as string[];
    const cmd = runtime.filter((i) => i.keyword === 'CMD');
    expect(cmd).toHaveLength(1);
    expect(JSON.parse(cmd[0]?.args as string)).toEqual(startCommand);
    expect(runtime.some((i) => i.keyword === 'ENTRYPOINT')).toBe(false);
    expect(runtime.find((i) => i.keyword === 'WORKDIR')?.args).toBe('/app');
    // FUNCTION_TARGET is chosen per Service, never fixed in the image
    expect(runtime.some((i) => i.args.includes('FUNCTION_TARGET'))).toBe(false);
  });
});
