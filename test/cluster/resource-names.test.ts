/**
 * Every resource word the project hands to kubectl (the scripts' plans, the
 * end-to-end workflow, the commands the READMEs give) is one the pinned
 * upstream CRDs and Kubernetes define (test/cluster/resource-names.ts), so no
 * `kubectl wait` or `rollout` stops a real run on "the server doesn't have a
 * resource type".
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { kindsOf, RESOURCE_NAMES, resourceWords } from './resource-names.js';
import { dryRun, read, shellWords } from './support.js';

const PLAN_ENV = {
  MONGO_IOPS_DEVICE: '/dev/vdb',
  SPILLWAY_SECRETS_ENV: '/nonexistent/secrets.env',
};

/** Shell lines of a text's ```sh blocks. */
function codeLines(file: string): string[] {
  return [...read(file).matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) =>
    (m[1] as string)
      .replace(/\\\n/g, ' ')
      .split('\n')
      .filter((line) => line.includes('kubectl') && !line.trim().startsWith('#')),
  );
}

function workflowLines(): string[] {
  const workflow = parse(read('.github/workflows/e2e.yaml')) as {
    jobs: Record<string, { steps: { run?: string }[] }>;
  };
  return Object.values(workflow.jobs)
    .flatMap((job) => job.steps.map((step) => step.run ?? ''))
    .flatMap((run) => run.replace(/\\\n/g, ' ').split('\n'))
    .filter((line) => line.includes('kubectl') && !line.trim().startsWith('#'));
}

const commands: { where: string; words: string[] }[] = [
  ...dryRun('cluster/up.sh', [], PLAN_ENV).map((words) => ({ where: 'cluster/up.sh', words })),
  ...dryRun('cluster/up.sh', [], { ...PLAN_ENV, SPILLWAY_SUBNET: '10.213.0.0/16' }).map(
    (words) => ({ where: 'cluster/up.sh (another subnet)', words }),
  ),
  ...dryRun('cluster/down.sh').map((words) => ({ where: 'cluster/down.sh', words })),
  ...dryRun('cluster/redis-restart.sh', ['REDIS_APPENDFSYNC=always']).map((words) => ({
    where: 'cluster/redis-restart.sh',
    words,
  })),
  ...dryRun('cluster/replay-dead-letters.sh').map((words) => ({
    where: 'cluster/replay-dead-letters.sh',
    words,
  })),
  ...workflowLines().map((line) => ({ where: 'e2e.yaml', words: shellWords(line.trim()) })),
  ...['README.md', 'cluster/README.md'].flatMap((file) =>
    codeLines(file).map((line) => ({ where: file, words: shellWords(line.trim()) })),
  ),
].filter((c) => c.words.includes('kubectl'));

describe('resource words handed to kubectl', () => {
  it('are found in every place that runs kubectl', () => {
    const words = commands.flatMap((c) => resourceWords(c.words));
    expect(words.length).toBeGreaterThan(15);
    for (const word of ['crd', 'deployment', 'statefulset', 'ksvc', 'broker', 'trigger'])
      expect(words).toContain(word);
  });

  it.each(commands.map((c) => [c.where, c.words.join(' ').slice(0, 120), c.words] as const))(
    '%s: %s',
    (_where, _line, words) => {
      for (const word of resourceWords(words))
        expect(
          kindsOf(word),
          `"${word}" is no plural, singular or short name upstream defines`,
        ).not.toEqual([]);
    },
  );
});

describe('the pinned names', () => {
  it("resolve as kubectl's RESTMapper does: plural, singular or short name, any case, never the Kind", () => {
    expect(kindsOf('redisstreamsinks').map((k) => k.kind)).toEqual(['RedisStreamSink']);
    expect(kindsOf('RedisStreamsSink').map((k) => k.kind)).toEqual(['RedisStreamSink']);
    // upstream's singular has two s: the word up.sh once waited on matches nothing
    expect(kindsOf('redisstreamsink')).toEqual([]);
    expect(kindsOf('ksvc').map((k) => k.group)).toEqual(['serving.knative.dev']);
    expect(
      kindsOf('services')
        .map((k) => k.group)
        .sort(),
    ).toEqual(['', 'serving.knative.dev']);
    expect(kindsOf('services.serving.knative.dev').map((k) => k.kind)).toEqual(['Service']);
    expect(kindsOf('sts').map((k) => k.kind)).toEqual(['StatefulSet']);
    // short names match only as written
    expect(kindsOf('KSVC')).toEqual([]);
  });

  it('name each row by the upstream file it was read from', () => {
    for (const row of RESOURCE_NAMES) {
      expect(row.from, row.kind).toMatch(
        /^[\w-]+\/[\w-]+ ((knative-)?v\d+\.\d+\.\d+|[0-9a-f]{8}) \S+\.(ya?ml|go|json)$/,
      );
      expect(row.plural).toMatch(/^[a-z]+$/);
    }
  });

  it('parse kubectl commands into their resource words', () => {
    const words = (line: string) => resourceWords(shellWords(line));
    expect(
      words('kubectl -n s wait --for=condition=Ready broker/b redisstreamsinks/d trigger/t'),
    ).toEqual(['broker', 'redisstreamsinks', 'trigger']);
    expect(words('kubectl wait --for=condition=Established --all crd --timeout=600s')).toEqual([
      'crd',
    ]);
    expect(words('kubectl -n s get ksvc,brokers ingest -o wide')).toEqual(['ksvc', 'brokers']);
    expect(words('kubectl -n s rollout status statefulset/redis --timeout=300s')).toEqual([
      'statefulset',
    ]);
    expect(words('kubectl -n s set env statefulset/redis A=b')).toEqual(['statefulset']);
    expect(words('kubectl -n s port-forward svc/redis 6379:6379')).toEqual(['svc']);
    expect(words('kubectl -n s exec redis-0 -c redis -- redis-cli XLEN x')).toEqual([]);
    expect(words('kubectl apply -k knative')).toEqual([]);
  });
});
