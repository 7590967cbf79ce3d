import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type FunctionProcess, startFunction } from '../support/helpers.js';
import { kindsOf } from './resource-names.js';
import { dryRun, loadManifests, ROOT, read } from './support.js';

/**
 * The workloads of the releases up.sh applies (knative-v1.22.1), by namespace:
 * knative/serving config/core/deployments/*.yaml; knative-extensions/net-kourier
 * config/300-controller.yaml and config/300-gateway.yaml; knative/eventing
 * config/core/deployments/*.yaml, config/channels/in-memory-channel/deployments/,
 * config/brokers/mt-channel-broker/deployments/; knative-extensions/eventing-redis
 * config/source/500-controller.yaml and config/sink/500-controller.yaml (both
 * StatefulSets: their namespaces hold no Deployment at all).
 */
const RELEASE_WORKLOADS: Record<string, string[]> = {
  'knative-serving': [
    'deployment/activator',
    'deployment/autoscaler',
    'deployment/controller',
    'deployment/webhook',
    'deployment/net-kourier-controller',
  ],
  'kourier-system': ['deployment/3scale-kourier-gateway'],
  'knative-eventing': [
    'deployment/eventing-controller',
    'deployment/eventing-webhook',
    'deployment/job-sink',
    'deployment/pingsource-mt-adapter',
    'deployment/imc-controller',
    'deployment/imc-dispatcher',
    'deployment/mt-broker-controller',
    'deployment/mt-broker-filter',
    'deployment/mt-broker-ingress',
    'statefulset/request-reply',
  ],
  'knative-sources': ['statefulset/redis-controller-manager'],
  'knative-sinks': ['statefulset/redis-controller-manager'],
};

/** RedisStreamSource spillway-events's adapter StatefulSet. */
const ADAPTER = 'redissource-spillway-events-1234';

const SCRIPTS = execFileSync('git', ['ls-files', '--', '*.sh', '.ci/run'], {
  cwd: ROOT,
  encoding: 'utf8',
})
  .split('\n')
  .filter((line) => line !== '');

describe('the shell scripts', () => {
  it('are all found, and shellcheck runs over them in npm run lint, not in the suite', () => {
    expect(SCRIPTS).toEqual(
      expect.arrayContaining(['cluster/up.sh', 'scripts/services.sh', '.ci/run']),
    );
    expect(read('scripts/lint-shell.sh')).toContain("git ls-files -- '*.sh' .ci/run");
    const scripts = JSON.parse(read('package.json')).scripts as Record<string, string>;
    expect(scripts.lint).toContain('scripts/lint-shell.sh');
    expect(scripts.test).not.toContain('shellcheck');
  });

  it.each(SCRIPTS.filter((s) => s !== 'cluster/lib.sh'))('%s is strict bash', (script) => {
    const text = read(script);
    expect(text.startsWith('#!/usr/bin/env bash\n')).toBe(true);
    expect(text).toContain('\nset -euo pipefail\n');
  });
});

describe('cluster/up.sh --dry-run', () => {
  const env = {
    MONGO_IOPS_DEVICE: '/dev/vdb',
    SPILLWAY_SECRETS_ENV: join(tmpdir(), `spillway-absent-${process.pid}.env`),
  };
  const plan = dryRun('cluster/up.sh', [], env);
  const lines = plan.map((words) => words.join(' '));
  const indexOf = (pattern: RegExp): number => {
    const at = lines.findIndex((line) => pattern.test(line));
    expect(at, `no step matches ${pattern}`).toBeGreaterThanOrEqual(0);
    return at;
  };

  it('runs nothing and prints one command per line', () => {
    expect(plan.length).toBeGreaterThan(30);
    for (const words of plan) {
      expect([
        'sysctl',
        'sudo',
        'k3d',
        'kubectl',
        'docker',
        'install',
        'sed',
        'cluster/iops-device.sh',
      ]).toContain(words[0]);
    }
  });

  it("checks first that the cluster's subnet is free among Docker's networks", () => {
    expect(plan.slice(0, 2)).toEqual([
      ['docker', 'network', 'ls', '--quiet'],
      [
        'docker',
        'network',
        'inspect',
        '--format',
        '{{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}',
        '<ids>',
      ],
    ]);
  });

  it('checks next that this host can hold MongoDB to its IOPS limit', () => {
    expect(plan.slice(2, 4)).toEqual([
      ['docker', 'info', '--format', '{{.CgroupVersion}}'],
      ['cluster/iops-device.sh', '/dev/vdb'],
    ]);
    const found = dryRun('cluster/up.sh', [], { ...env, MONGO_IOPS_DEVICE: '' });
    expect(found.slice(2, 5)).toEqual([
      ['docker', 'info', '--format', '{{.CgroupVersion}}'],
      ['docker', 'info', '--format', '{{.DockerRootDir}}'],
      ['cluster/iops-device.sh', '<DockerRootDir>'],
    ]);
  });

  it('tunes the kernel as the reference report did, before creating anything', () => {
    expect(plan.slice(4, 7)).toEqual(
      [
        'net.core.somaxconn=65535',
        'net.ipv4.tcp_tw_reuse=1',
        'net.ipv4.ip_local_port_range=1024 65535',
      ].map((setting) => [...(process.getuid?.() === 0 ? [] : ['sudo']), 'sysctl', '-w', setting]),
    );
    const skipped = dryRun('cluster/up.sh', ['--skip-sysctl'], env);
    expect(skipped.some((w) => w.includes('sysctl'))).toBe(false);
    expect(skipped.length).toBe(plan.length - 3);
  });

  it('creates the cluster from k3d.yaml before installing anything into it', () => {
    expect(plan[7]).toEqual([
      'k3d',
      'cluster',
      'create',
      '--config',
      'cluster/k3d.yaml',
      '--subnet',
      '172.28.0.0/16',
    ]);
    // k3d.yaml's own subnet is the default, and MongoDB's address is in it
    expect(read('cluster/k3d.yaml')).toMatch(/^subnet: 172\.28\.0\.0\/16$/m);
    expect(read('cluster/mongodb.yaml')).toContain('- 172.28.200.10');
    expect(lines.some((l) => l.includes('patch endpointslice'))).toBe(false);
  });

  it('puts the cluster and MongoDB on another subnet when SPILLWAY_SUBNET says so', () => {
    const other = dryRun('cluster/up.sh', [], { ...env, SPILLWAY_SUBNET: '10.213.0.0/16' });
    const text = other.map((w) => w.join(' '));
    expect(text).toContain('k3d cluster create --config cluster/k3d.yaml --subnet 10.213.0.0/16');
    const run = other.find((w) => w[0] === 'docker' && w[1] === 'run') as string[];
    expect(run[run.indexOf('--ip') + 1]).toBe('10.213.200.10');
    const patch = other.find((w) => w.includes('endpointslice')) as string[];
    expect(patch.slice(0, 5)).toEqual(['kubectl', '-n', 'spillway', 'patch', 'endpointslice']);
    expect(JSON.parse(patch.at(-1) as string)).toEqual([
      { op: 'replace', path: '/endpoints/0/addresses/0', value: '10.213.200.10' },
    ]);
    expect(text.indexOf(patch.join(' '))).toBe(
      text.indexOf('kubectl apply -f cluster/mongodb.yaml') + 1,
    );
    const bad = spawnSync('bash', ['cluster/up.sh', '--dry-run'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, SPILLWAY_SUBNET: '10.213.0.0/24' },
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('SPILLWAY_SUBNET must be an IPv4 /16');
  });

  it('installs pinned releases, all of one Knative version, in dependency order', () => {
    const releases = lines.filter((l) => l.includes('/releases/download/'));
    const files = releases.map((l) => l.replace(/^.*\/releases\/download\//, ''));
    expect(files).toEqual([
      'knative-v1.22.1/serving-crds.yaml',
      'knative-v1.22.1/serving-core.yaml',
      'knative-v1.22.1/kourier.yaml',
      'knative-v1.22.1/eventing-crds.yaml',
      'knative-v1.22.1/eventing-core.yaml',
      'knative-v1.22.1/in-memory-channel.yaml',
      'knative-v1.22.1/mt-channel-broker.yaml',
      'knative-v1.22.1/redis-source.yaml',
      'knative-v1.22.1/redis-sink.yaml',
    ]);
    expect(releases.join('\n')).not.toMatch(/latest|nightly/);
    expect(releases[2]).toContain('github.com/knative-extensions/net-kourier/');
    expect(releases[7]).toContain('github.com/knative-extensions/eventing-redis/');
    expect(indexOf(/ingress-class.*kourier\.ingress\.networking\.knative\.dev/)).toBeGreaterThan(
      indexOf(/kourier\.yaml/),
    );
  });

  it('starts MongoDB with the 100 IOPS limit on both directions, on the cluster network', () => {
    const run = plan.find((w) => w[0] === 'docker' && w[1] === 'run') as string[];
    const flag = (name: string) => run[run.indexOf(name) + 1];
    expect(flag('--device-read-iops')).toBe('/dev/vdb:100');
    expect(flag('--device-write-iops')).toBe('/dev/vdb:100');
    expect(flag('--network')).toBe('k3d-spillway');
    expect(flag('--volume')).toBe('spillway-mongodb-data:/data/db');
    expect(indexOf(/^docker run/)).toBeGreaterThan(indexOf(/^k3d cluster create/));
  });

  it('waits only for workloads the applied releases really have, each the way its kind allows', () => {
    const waits = plan.filter(
      (w) => w[0] === 'kubectl' && (w.includes('wait') || w.join(' ').includes('rollout status')),
    );
    const checked = new Set<string>();
    for (const command of waits) {
      const namespace = command[command.indexOf('-n') + 1] as string;
      const at = command.includes('wait') ? command.indexOf('wait') : command.indexOf('status');
      const targets = command.slice(at + 1).filter((w) => !w.startsWith('-') && w !== namespace);
      const line = command.join(' ');
      if (targets.includes('crd')) continue;
      if (namespace === 'spillway') {
        // the project's own objects: each one a manifest defines
        for (const target of targets) {
          const [word, name] = target.split('/') as [string, string];
          // upstream's names for the word (test/cluster/resource-names.ts), never a guess
          const kinds = kindsOf(word);
          expect(kinds, `${line}: no pinned CRD or Kubernetes kind is called ${word}`).not.toEqual(
            [],
          );
          expect(
            loadManifests().filter(
              (m) =>
                kinds.some(
                  (k) =>
                    k.kind === m.object.kind &&
                    k.group ===
                      (m.object.apiVersion.includes('/') ? m.object.apiVersion.split('/')[0] : ''),
                ) && m.object.metadata.name === name,
            ),
            `${line}: no ${word} ${name} in the manifests`,
          ).toHaveLength(1);
        }
        continue;
      }
      const release = RELEASE_WORKLOADS[namespace];
      expect(release, `${line}: no release workloads known in ${namespace}`).toBeDefined();
      expect(targets, line).toHaveLength(1);
      const [target] = targets as [string];
      if (target.includes('/')) {
        expect(release, line).toContain(target);
      } else {
        expect(command, line).toContain('--all');
        expect(
          release?.some((w) => w.startsWith(`${target}/`)),
          `${line}: the release has no ${target} in ${namespace}`,
        ).toBe(true);
      }
      // a StatefulSet has no Available condition: it is waited for by rollout status
      if (line.includes('--for=condition=Available')) expect(target).toMatch(/^deployment\b/);
      checked.add(namespace);
    }
    expect([...checked].sort()).toEqual(Object.keys(RELEASE_WORKLOADS).sort());
  });

  it("removes the source release's placeholder tls-secret, and restarts its controller, before the source exists", () => {
    // eventing-redis knative-v1.22.1: config/source/tls-secret.yaml ships a
    // certificate with no body; the controller reads the Secret once, at start
    // (pkg/source/reconciler/streamsource/controller.go), and hands it to every
    // adapter, whose pool panics when the PEM does not parse
    // (pkg/source/adapter/adapter.go, newPool). An empty TLS_CERT is no way out:
    // updateTLSSecret dereferences the nil config GetTLSSecret returns for it.
    // Without the Secret the controller passes "" and the adapter dials plain TCP.
    const applied = indexOf(/^kubectl apply -f \S+\/redis-source\.yaml$/);
    const removed = indexOf(
      /^kubectl -n knative-sources delete secret tls-secret --ignore-not-found$/,
    );
    const restarted = indexOf(
      /^kubectl -n knative-sources rollout restart statefulset\/redis-controller-manager$/,
    );
    const rolledOut = lines.findLastIndex((l) =>
      /^kubectl -n knative-sources rollout status statefulset\/redis-controller-manager /.test(l),
    );
    const sourceCreated = indexOf(/^kubectl apply -k eventing$/);
    expect(removed).toBeGreaterThan(applied);
    expect(lines.slice(removed).some((l) => l.includes('redis-source.yaml'))).toBe(false);
    expect(restarted).toBeGreaterThan(removed);
    expect(rolledOut).toBeGreaterThan(restarted);
    expect(sourceCreated).toBeGreaterThan(rolledOut);
    expect(lines.filter((l) => / tls-secret/.test(l) && !l.includes(' delete '))).toEqual([]);
  });

  it('builds the image, imports it, then deploys, waits and prints the URL', () => {
    const order = [
      /^kubectl apply -f .*redis-sink\.yaml$/,
      /^kubectl apply -f eventing\/config-redis\.yaml$/,
      /^kubectl apply -f cluster\/redis\.yaml$/,
      /^kubectl -n spillway rollout status statefulset\/redis/,
      /^docker run /,
      /^kubectl apply -f cluster\/mongodb\.yaml$/,
      /^install -D -m 600 knative\/secrets\.example\.env /,
      /^kubectl -n spillway create secret generic spillway-secrets --from-env-file=/,
      /^docker build --tag dev\.local\/spillway:\S+ --file Dockerfile \.$/,
      /^k3d image import dev\.local\/spillway:\S+ --cluster spillway$/,
      /^kubectl apply -k knative$/,
      /^kubectl -n spillway wait --for=condition=Ready ksvc\/ingest ksvc\/persist/,
      /^kubectl apply -k eventing$/,
      /^kubectl -n spillway wait --for=condition=Ready broker\/spillway .*trigger\/persist/,
      /^kubectl -n spillway get ksvc ingest --output jsonpath=\{\.status\.url\}$/,
    ];
    const positions = order.map(indexOf);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(positions.at(-1)).toBe(plan.length - 1);
  });

  it('never prints a secret: the API key is generated into the file, not the plan', () => {
    const fills = lines.filter((l) => l.startsWith('sed -i'));
    expect(fills.map((l) => /\^(\w+)=/.exec(l)?.[1])).toEqual([
      'INGEST_API_KEYS',
      'INGEST_REPLAY_KEYS',
      'RECEIPT_SECRET',
    ]);
    for (const fill of fills) expect(fill).toContain('=<openssl rand -hex 32>');
    expect(lines.join('\n')).not.toMatch(/--from-literal/);
  });

  it('takes --allow-unlimited-iops', () => {
    expect(dryRun('cluster/up.sh', ['--allow-unlimited-iops'], env)).toEqual(plan);
  });

  it('rejects unknown arguments', () => {
    expect(() =>
      execFileSync('bash', ['cluster/up.sh', '--dry-run', '--bogus'], { cwd: ROOT, stdio: 'pipe' }),
    ).toThrow(/unknown argument '--bogus'/);
  });
});

/**
 * A sysfs with a disk (sda: partitions sda1, sda3), an NVMe disk with a
 * partition, and LVM's dm-0 on sda3, linked from dev/block/MAJ:MIN as the
 * kernel does.
 */
function fakeSysfs(): string {
  const sys = mkdtempSync(join(tmpdir(), 'spillway-sysfs-'));
  const devices: [string, string, boolean][] = [
    ['devices/pci0000:00/0000:00:04.0/host0/block/sda', '8:0', false],
    ['devices/pci0000:00/0000:00:04.0/host0/block/sda/sda1', '8:1', true],
    ['devices/pci0000:00/0000:00:04.0/host0/block/sda/sda3', '8:3', true],
    ['devices/pci0000:00/0000:00:05.0/nvme/nvme0/block/nvme0n1', '259:0', false],
    ['devices/pci0000:00/0000:00:05.0/nvme/nvme0/block/nvme0n1/nvme0n1p2', '259:2', true],
    ['devices/virtual/block/dm-0', '253:0', false],
  ];
  mkdirSync(join(sys, 'dev/block'), { recursive: true });
  for (const [path, number, partition] of devices) {
    mkdirSync(join(sys, path), { recursive: true });
    writeFileSync(join(sys, path, 'dev'), `${number}\n`);
    if (partition) writeFileSync(join(sys, path, 'partition'), '1\n');
    symlinkSync(join('..', '..', path), join(sys, 'dev/block', number));
  }
  mkdirSync(join(sys, 'devices/virtual/block/dm-0/slaves'));
  symlinkSync(
    '../../../../pci0000:00/0000:00:04.0/host0/block/sda/sda3',
    join(sys, 'devices/virtual/block/dm-0/slaves/sda3'),
  );
  return sys;
}

describe('cluster/iops-device.sh', () => {
  const sys = fakeSysfs();
  afterAll(() => rmSync(sys, { recursive: true, force: true }));
  const resolve = (arg: string) =>
    spawnSync('bash', ['cluster/iops-device.sh', arg], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, SPILLWAY_SYSFS: sys },
    });

  it.each([
    ['8:0', '/dev/sda', 'a whole disk stays'],
    ['8:3', '/dev/sda', 'a partition becomes its disk'],
    ['259:2', '/dev/nvme0n1', 'an NVMe partition becomes its namespace'],
    ['253:0', '/dev/dm-0', 'LVM on a partition: the dm device, never the partition under it'],
  ])('%s -> %s (%s)', (number, device) => {
    const out = resolve(number);
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout.trim()).toBe(device);
  });

  it('stops, saying why, when there is no such device or it is not a block device', () => {
    expect(resolve('9:9').status).toBe(1);
    expect(resolve('9:9').stderr).toContain('no block device 9:9');
    expect(resolve('/dev/null').status).toBe(1);
    expect(resolve('/dev/null').stderr).toContain('not a block device');
  });
});

describe('cluster/up.sh against fake docker, k3d and kubectl', () => {
  const sys = fakeSysfs();
  const bin = mkdtempSync(join(tmpdir(), 'spillway-bin-'));
  const log = join(bin, 'calls.log');
  // Logs every call; answers what up.sh asks of docker info, k3d cluster get,
  // kubectl's jsonpath and findmnt from FAKE_* variables.
  writeFileSync(
    join(bin, 'fake'),
    [
      '#!/usr/bin/env bash',
      'call="$(basename "$0") $*"',
      `printf '%s\\n' "$call" >>${log}`,
      'case "$call" in',
      '  "docker info --format {{.CgroupVersion}}") echo "$FAKE_CGROUP" ;;',
      `  "docker info --format {{.DockerRootDir}}") echo ${bin} ;;`,
      '  "docker network ls --quiet") echo "$FAKE_NETWORK_IDS" ;;',
      '  "docker network inspect"*) printf "%b\\n" "$FAKE_NETWORKS" ;;',
      '  "k3d cluster get"*) exit 1 ;;',
      '  uname*) echo "$FAKE_UNAME" ;;',
      '  kubectl*jsonpath*) echo http://ingest.spillway.127.0.0.1.sslip.io ;;',
      '  findmnt*) echo "$FAKE_FINDMNT" ;;',
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  for (const tool of ['docker', 'k3d', 'kubectl', 'findmnt', 'uname']) {
    symlinkSync(join(bin, 'fake'), join(bin, tool));
  }
  afterAll(() => {
    rmSync(sys, { recursive: true, force: true });
    rmSync(bin, { recursive: true, force: true });
  });

  interface Fake {
    cgroup: string;
    findmnt?: string;
    networks?: string;
    uname?: string;
    env?: Record<string, string>;
    /** The secrets file as it is before the run (none: up.sh makes it). */
    secrets?: string;
  }

  function up(fake: Fake, args: string[] = [], script = 'cluster/up.sh') {
    rmSync(log, { force: true });
    const secrets = join(bin, 'secrets.env');
    rmSync(secrets, { force: true });
    if (fake.secrets !== undefined) writeFileSync(secrets, fake.secrets, { mode: 0o600 });
    const flags = script === 'cluster/up.sh' ? ['--skip-sysctl'] : [];
    const result = spawnSync('bash', [script, ...flags, ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
        SPILLWAY_SYSFS: sys,
        SPILLWAY_SECRETS_ENV: secrets,
        MONGO_IOPS_DEVICE: '',
        FAKE_CGROUP: fake.cgroup,
        FAKE_FINDMNT: fake.findmnt ?? '8:3 /dev/sda3 ext4',
        FAKE_NETWORK_IDS: 'a1 b2 c3',
        FAKE_NETWORKS:
          fake.networks ?? 'bridge 172.17.0.0/16\\nhost\\nshop_default 172.20.0.0/16 fd00:1::/64',
        FAKE_UNAME: fake.uname ?? 'Linux',
        ...fake.env,
      },
    });
    const calls = readFileSync(log, 'utf8').trim().split('\n');
    const dockerRun = calls.find((c) => c.startsWith('docker run ')) ?? '';
    const made = existsSync(secrets) ? readFileSync(secrets, 'utf8') : '';
    return { ...result, calls, dockerRun, secrets: made };
  }

  it('makes the secrets file with a random API key, replay key and receipt secret', () => {
    const out = up({ cgroup: '2' });
    expect(out.status, out.stderr).toBe(0);
    for (const name of ['INGEST_API_KEYS', 'INGEST_REPLAY_KEYS', 'RECEIPT_SECRET'])
      expect(out.secrets).toMatch(new RegExp(`^${name}=[0-9a-f]{64}$`, 'm'));
    expect(out.stderr).not.toMatch(/[0-9a-f]{64}/);
  });

  it('adds a RECEIPT_SECRET to a secrets file made before receipts, and keeps the rest', () => {
    const before = 'REDIS_URL=redis://r:6379\nINGEST_API_KEYS=mine\nINGEST_REPLAY_KEYS=theirs\n';
    const out = up({ cgroup: '2', secrets: before });
    expect(out.status, out.stderr).toBe(0);
    expect(out.secrets.startsWith(before)).toBe(true);
    expect(out.secrets.slice(before.length)).toMatch(/^RECEIPT_SECRET=[0-9a-f]{64}\n$/);
    // and once it has one, it is left alone
    const again = up({ cgroup: '2', secrets: out.secrets });
    expect(again.secrets).toBe(out.secrets);
  });

  it('fills an empty RECEIPT_SECRET line, and adds one on a line of its own to a file whose last line has no line break', () => {
    const empty = 'INGEST_API_KEYS=mine\nRECEIPT_SECRET=\nINGEST_REPLAY_KEYS=theirs\n';
    const filled = up({ cgroup: '2', secrets: empty });
    expect(filled.status, filled.stderr).toBe(0);
    expect(filled.secrets).toMatch(
      /^INGEST_API_KEYS=mine\nRECEIPT_SECRET=[0-9a-f]{64}\nINGEST_REPLAY_KEYS=theirs\n$/,
    );
    const unended = 'INGEST_API_KEYS=mine\nINGEST_REPLAY_KEYS=theirs';
    const added = up({ cgroup: '2', secrets: unended });
    expect(added.status, added.stderr).toBe(0);
    expect(added.secrets).toMatch(
      /^INGEST_API_KEYS=mine\nINGEST_REPLAY_KEYS=theirs\nRECEIPT_SECRET=[0-9a-f]{64}\n$/,
    );
    expect(`${filled.stderr}${added.stderr}`).not.toMatch(/[0-9a-f]{64}/);
  });

  it("limits the whole disk under Docker's data root, not its partition", () => {
    const out = up({ cgroup: '2' });
    expect(out.status, out.stderr).toBe(0);
    expect(out.dockerRun).toContain('--device-read-iops /dev/sda:100');
    expect(out.dockerRun).toContain('--device-write-iops /dev/sda:100');
    expect(out.stderr).not.toContain('WARNING');
  });

  it("stops before creating anything when a Docker network holds addresses of the cluster's subnet", () => {
    const out = up({ cgroup: '2', networks: 'bridge 172.17.0.0/16\\ncompose_x 172.28.5.0/24' });
    expect(out.status).toBe(1);
    expect(out.stderr).toContain("overlaps Docker network 'compose_x' (172.28.5.0/24)");
    expect(out.stderr).toContain('SPILLWAY_SUBNET');
    expect(
      out.calls.filter((c) => !/^(docker network|k3d cluster get|docker info|uname)/.test(c)),
    ).toEqual([]);
    const moved = up({
      cgroup: '2',
      networks: 'compose_x 172.28.5.0/24',
      env: { SPILLWAY_SUBNET: '10.213.0.0/16' },
    });
    expect(moved.status, moved.stderr).toBe(0);
    expect(moved.calls).toContain(
      'k3d cluster create --config cluster/k3d.yaml --subnet 10.213.0.0/16',
    );
    expect(moved.dockerRun).toContain('--ip 10.213.200.10');
  });

  it.each([
    ['cluster/up.sh', []],
    ['cluster/down.sh', []],
    ['cluster/replay-dead-letters.sh', ['--dry-run']],
  ])('%s runs on Linux only, and says so elsewhere before doing anything', (script, args) => {
    const out = up({ cgroup: '2', uname: 'Darwin' }, args, script);
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(/support Linux hosts only \(WSL2 included\); this host is Darwin/);
    expect(out.calls).toEqual(['uname -s']);
    // and the READMEs say so
    expect(read('cluster/README.md')).toContain('A Linux host (WSL2 included; macOS and Windows');
    expect(read('README.md')).toContain('on a Linux host (WSL2 included');
  });

  it('limits the device-mapper device of an LVM root', () => {
    const out = up({ cgroup: '2', findmnt: '253:0 /dev/mapper/vg-root ext4' });
    expect(out.status, out.stderr).toBe(0);
    expect(out.dockerRun).toContain('--device-write-iops /dev/dm-0:100');
  });

  it.each([
    ['under cgroup v1', { cgroup: '1' }, /cgroup v1/],
    ['with no throttleable device', { cgroup: '2', findmnt: '0:45 overlay overlay' }, /overlay/],
  ])('stops %s before creating anything', (_label, fake, reason) => {
    const out = up(fake);
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(reason);
    expect(out.stderr).toContain('--allow-unlimited-iops');
    expect(
      out.calls.filter(
        (c) => !/^(uname|docker network|docker info|k3d cluster get|findmnt)/.test(c),
      ),
    ).toEqual([]);
  });

  it('with --allow-unlimited-iops, deploys MongoDB unlimited and says so, twice', () => {
    const out = up({ cgroup: '1' }, ['--allow-unlimited-iops']);
    expect(out.status, out.stderr).toBe(0);
    expect(out.dockerRun).toContain('mongo:');
    expect(out.dockerRun).not.toContain('--device-');
    expect(out.stderr.match(/WARNING: MongoDB runs WITHOUT its 100 IOPS limit/g)).toHaveLength(2);
  });
});

describe('cluster/redis-restart.sh --dry-run', () => {
  it("restarts Redis, waits for it, then restarts the source's adapter, which never reconnects", () => {
    expect(dryRun('cluster/redis-restart.sh', ['REDIS_APPENDFSYNC=always'])).toEqual([
      ['kubectl', '-n', 'spillway', 'set', 'env', 'statefulset/redis', 'REDIS_APPENDFSYNC=always'],
      ['kubectl', '-n', 'spillway', 'rollout', 'status', 'statefulset/redis', '--timeout=300s'],
      ['kubectl', '-n', 'spillway', 'rollout', 'restart', `statefulset/${ADAPTER}`],
      [
        'kubectl',
        '-n',
        'spillway',
        'rollout',
        'status',
        `statefulset/${ADAPTER}`,
        '--timeout=300s',
      ],
    ]);
    expect(dryRun('cluster/redis-restart.sh')[0]).toEqual([
      'kubectl',
      '-n',
      'spillway',
      'rollout',
      'restart',
      'statefulset/redis',
    ]);
  });

  it("names the adapter as eventing-redis's reconciler does, for the manifests' source", () => {
    // pkg/source/reconciler/streamsource/resources/receive_adapter.go (knative-v1.22.1):
    // kmeta.ChildName(fmt.Sprintf("redissource-%s-", source.Name), "1234"), a StatefulSet
    const source = loadManifests().find((m) => m.object.kind === 'RedisStreamSource');
    expect(ADAPTER).toBe(`redissource-${source?.object.metadata.name}-1234`);
    expect(ADAPTER.length).toBeLessThanOrEqual(63); // kmeta.ChildName hashes longer names
  });

  it('is what the docs tell operators to run when Redis must restart', () => {
    expect(read('cluster/redis.yaml')).toContain(
      'cluster/redis-restart.sh REDIS_APPENDFSYNC=always',
    );
    expect(read('README.md')).toContain('cluster/redis-restart.sh');
    for (const file of [
      'README.md',
      'cluster/README.md',
      'cluster/redis.yaml',
      'docs/architecture.md',
    ])
      expect(read(file), file).not.toMatch(/kubectl[^\n`]*set env[^\n`]*statefulset\/redis/);
  });
});

describe('cluster/down.sh --dry-run', () => {
  it('removes MongoDB, the cluster, then the data volume', () => {
    expect(dryRun('cluster/down.sh')).toEqual([
      ['docker', 'rm', '--force', 'spillway-mongodb'],
      ['k3d', 'cluster', 'delete', 'spillway'],
      ['docker', 'volume', 'rm', '--force', 'spillway-mongodb-data'],
    ]);
    expect(dryRun('cluster/down.sh', ['--keep-data'])).toHaveLength(2);
  });
});

describe('scripts/tools.sh --dry-run', () => {
  it('go-installs pinned versions into .data/bin', () => {
    expect(dryRun('scripts/tools.sh', ['kustomize', 'promtool'])).toEqual([
      ['mkdir', '-p', join(ROOT, '.data/bin/kustomize-v5.7.1')],
      [
        'env',
        `GOBIN=${join(ROOT, '.data/bin/kustomize-v5.7.1')}`,
        'go',
        'install',
        'sigs.k8s.io/kustomize/kustomize/v5@v5.7.1',
      ],
      ['mkdir', '-p', join(ROOT, '.data/bin/promtool-v0.316.0')],
      [
        'env',
        `GOBIN=${join(ROOT, '.data/bin/promtool-v0.316.0')}`,
        'go',
        'install',
        'github.com/prometheus/prometheus/cmd/promtool@v0.316.0',
      ],
    ]);
    // The benchmark's Prometheus: the same module and version as promtool, its own folder.
    expect(dryRun('scripts/tools.sh', ['prometheus'])).toEqual([
      ['mkdir', '-p', join(ROOT, '.data/bin/prometheus-v0.316.0')],
      [
        'env',
        `GOBIN=${join(ROOT, '.data/bin/prometheus-v0.316.0')}`,
        'go',
        'install',
        'github.com/prometheus/prometheus/cmd/prometheus@v0.316.0',
      ],
    ]);
  });

  it("installs shellcheck from Debian's packages", () => {
    expect(dryRun('scripts/tools.sh', ['shellcheck'])).toEqual([
      ['apt-get', 'update', '-qq'],
      ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', '-qq', 'shellcheck'],
    ]);
  });

  it('never builds or runs k6 (AGPL-3.0): the script refuses it, and no file of the tree installs it', () => {
    const out = spawnSync('bash', ['scripts/tools.sh', '--dry-run', 'k6'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(out.status).toBe(2);
    expect(out.stderr).toContain("unknown argument 'k6'");
    const files = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f !== '' && !f.endsWith('.svg') && f !== 'package-lock.json');
    const installing = files.filter((f) => /go\.k6\.io\/k6@|go install go\.k6\.io/.test(read(f)));
    expect(installing).toEqual([]);
  });
});

describe('cluster/replay-dead-letters.sh through a real ingest and Redis', () => {
  const port = 20000 + (process.pid % 20000);
  const KEY = 'replay-test-key-0123456789';
  const cli = (...args: string[]) =>
    execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).trim();
  let server: ReturnType<typeof spawn>;
  let ingest: FunctionProcess;

  beforeAll(async () => {
    server = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100; i++) {
      try {
        if (cli('PING') === 'PONG') break;
      } catch {
        // not up yet
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(cli('PING')).toBe('PONG');
    ingest = await startFunction('ingest', {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      INGEST_API_KEYS: 'a-plain-api-key-0123456789',
      INGEST_REPLAY_KEYS: KEY,
    });
  });

  afterAll(async () => {
    await ingest?.kill();
    server?.kill();
  });

  beforeEach(() => {
    cli('FLUSHALL');
  });

  /** Runs the script against the test's ingest and Redis; never throws. */
  function replay(env: Record<string, string> = {}, args: string[] = []) {
    const result = spawnSync('bash', ['cluster/replay-dead-letters.sh', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        REDIS_CLI: `redis-cli -p ${port}`,
        INGEST_URL: ingest.url,
        INGEST_API_KEY: KEY,
        ...env,
      },
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Dead letters as the RedisStreamSink writes them: ingest's fields, unchanged. */
  function deadLetter(i: number, extra: Record<string, string> = {}): Record<string, string> {
    return {
      id: `0190c0de-0000-7000-8000-00000000000${i}`,
      type: 'demo.created',
      source: '/demo',
      subject: i === 0 ? '' : `s${i}`,
      time: `2024-11-28T10:00:0${i}.000Z`,
      seq: String(i + 1),
      data: JSON.stringify({ n: i, text: 'it\'s "quoted" / ü' }),
      ...extra,
    };
  }

  function add(fields: Record<string, string>): string {
    return cli('XADD', 'spillway:dead-letters', '*', ...Object.entries(fields).flat());
  }

  function events(): Record<string, string>[] {
    const entries = JSON.parse(
      execFileSync(
        'redis-cli',
        ['-p', String(port), '--json', 'XRANGE', 'spillway:events', '-', '+'],
        {
          encoding: 'utf8',
        },
      ),
    ) as [string, string[]][];
    return entries.map(([, fields]) =>
      Object.fromEntries(
        Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]),
      ),
    );
  }

  it('prints its plan in a dry run: read, post to ingest, delete; no key', () => {
    const plan = dryRun('cluster/replay-dead-letters.sh', ['--batch', '7'], {
      INGEST_API_KEY: KEY,
    });
    expect(plan).toHaveLength(3);
    const [fetch, post, remove] = plan as [string[], string[], string[]];
    expect(fetch.slice(0, 8)).toEqual([
      'kubectl',
      '-n',
      'spillway',
      'exec',
      'redis-0',
      '-c',
      'redis',
      '--',
    ]);
    expect(fetch.slice(-4)).toEqual(['1', 'spillway:dead-letters', '-', '7']);
    expect(post[0]).toBe('curl');
    expect(post).toContain('Content-Type: application/cloudevents+json');
    expect(post.at(-1)).toBe('http://localhost:30000/events');
    expect(remove.slice(-3, -1)).toEqual(['XDEL', 'spillway:dead-letters']);
    expect(plan.flat().join(' ')).not.toContain(KEY);
  });

  it('posts every dead letter through ingest, which appends it as the same entry, every field kept', () => {
    const letters = Array.from({ length: 5 }, (_, i) => deadLetter(i));
    letters[1] = deadLetter(1, { key: 'the-client-key' });
    // a pretty-printed data value is still one JSON value
    letters[2] = deadLetter(2, { data: '{\n  "n": 2\n}' });
    // a CloudEvent's attributes, and a sequence number far along
    letters[3] = deadLetter(3, {
      seq: '4711',
      attributes: '{"datacontenttype":"application/json","tenant":"acme","priority":3}',
    });
    letters.map(add);
    const out = replay({}, ['--batch', '2']);
    expect(out.stderr).not.toContain(KEY);
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout).toContain(`replayed 5 dead letters through ingest (${ingest.url}/events)`);
    expect(cli('XLEN', 'spillway:dead-letters')).toBe('0');
    const appended = events();
    expect(appended).toHaveLength(5);
    appended.forEach((event, i) => {
      const letter = letters[i] as Record<string, string>;
      for (const name of ['id', 'type', 'source', 'subject', 'time']) {
        expect(event[name], name).toBe(letter[name]);
      }
      expect(JSON.parse(event.data as string)).toEqual(JSON.parse(letter.data as string));
      // what the client's 202 said: its seq and its key, not ingest's anew
      expect(event.seq, 'seq').toBe(letter.seq);
      expect(event.key, 'key').toBe(letter.key);
      expect(event.attributes && JSON.parse(event.attributes), 'attributes').toEqual(
        letter.attributes && JSON.parse(letter.attributes),
      );
    });
  });

  it('is refused by ingest with a key that is not a replay key, and stops before moving anything', () => {
    add(deadLetter(1, { key: 'k' }));
    const out = replay({ INGEST_API_KEY: 'a-plain-api-key-0123456789' });
    expect(out.status).toBe(1);
    expect(out.stderr).toContain("not one of ingest's INGEST_REPLAY_KEYS (403 replay_forbidden)");
    expect(cli('XLEN', 'spillway:dead-letters')).toBe('1');
    expect(cli('EXISTS', 'spillway:events')).toBe('0');
  });

  it('leaves what ingest refuses in the dead-letter stream, reports it and fails', () => {
    const good = add(deadLetter(1));
    const noType = add(deadLetter(2, { type: '' }));
    const notJson = add(deadLetter(3, { data: '{"n":' }));
    // data that would smuggle in attributes if it were copied as text
    const smuggler = add(deadLetter(4, { data: '1,"type":"admin.granted"' }));
    const tooLong = add(deadLetter(5, { subject: 'x'.repeat(2000) }));
    const out = replay();
    expect(out.status).toBe(1);
    expect(out.stdout).toContain('replayed 1 dead letters');
    for (const id of [noType, notJson, smuggler, tooLong]) expect(out.stderr).toContain(id);
    expect(out.stderr).toMatch(/4 refused; they stay in spillway:dead-letters/);
    expect(events().map((e) => e.id)).toEqual([deadLetter(1).id]);
    const left = cli('XRANGE', 'spillway:dead-letters', '-', '+');
    expect(left).not.toContain(good);
    for (const id of [noType, notJson, smuggler, tooLong]) expect(left).toContain(id);
    expect(cli('XLEN', 'spillway:events')).toBe('1');
  });

  it('stops at a wrong API key and moves nothing', () => {
    add(deadLetter(1));
    const out = replay({ INGEST_API_KEY: 'not-the-key' });
    expect(out.status).toBe(1);
    expect(out.stderr).toContain('ingest refused the API key (401)');
    expect(cli('XLEN', 'spillway:dead-letters')).toBe('1');
    expect(cli('EXISTS', 'spillway:events')).toBe('0');
  });

  it('appends nothing twice when it is interrupted between the post and the delete', () => {
    for (let i = 0; i < 3; i++) add(deadLetter(i));
    const dir = mkdtempSync(join(tmpdir(), 'spillway-replay-'));
    const wrapper = join(dir, 'redis-cli');
    writeFileSync(
      wrapper,
      `#!/usr/bin/env bash\nif [[ $1 == XDEL && ! -e ${dir}/failed ]]; then touch ${dir}/failed; exit 1; fi\nexec redis-cli -p ${port} "$@"\n`,
      { mode: 0o755 },
    );
    const first = replay({ REDIS_CLI: wrapper });
    expect(first.status).not.toBe(0);
    expect(cli('XLEN', 'spillway:dead-letters')).toBe('3');
    expect(cli('XLEN', 'spillway:events')).toBe('3');
    const second = replay({ REDIS_CLI: wrapper });
    expect(second.status, second.stderr).toBe(0);
    expect(cli('XLEN', 'spillway:dead-letters')).toBe('0');
    expect(cli('XLEN', 'spillway:events')).toBe('3');
    rmSync(dir, { recursive: true, force: true });
  });
});
