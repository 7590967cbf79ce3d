import { Broker } from '@kubernetes-models/knative/eventing.knative.dev/v1/Broker';
import { Trigger } from '@kubernetes-models/knative/eventing.knative.dev/v1/Trigger';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1/Service';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1/EndpointSlice';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import {
  k3dSimpleConfigSchema,
  redisStreamSinkSchema,
  redisStreamSourceSchema,
  type Schema,
  validate,
} from './schemas.js';
import { dryRun, loadManifests, loadYaml, type Manifest, read, yamlFiles } from './support.js';

type Validator = (object: Manifest) => void;

/** Any model class: its constructor's own data type is checked by validate(). */
function model(Model: new (data: never) => { validate(): void }): Validator {
  return (object) => new Model(object as never).validate();
}

function schema(s: Schema): Validator {
  return (object) => {
    const errors = validate(object, s);
    if (errors.length > 0) throw new Error(errors.join('\n'));
  };
}

/** apiVersion/kind -> the official model (or the CRD-derived schema). */
const VALIDATORS: Record<string, Validator> = {
  'v1/Namespace': model(Namespace),
  'v1/ConfigMap': model(ConfigMap),
  'v1/Service': model(Service),
  'apps/v1/StatefulSet': model(StatefulSet),
  'discovery.k8s.io/v1/EndpointSlice': model(EndpointSlice),
  'rbac.authorization.k8s.io/v1/ClusterRole': model(ClusterRole),
  'serving.knative.dev/v1/Service': model(KnativeService),
  'eventing.knative.dev/v1/Broker': model(Broker),
  'eventing.knative.dev/v1/Trigger': model(Trigger),
  'sources.knative.dev/v1alpha1/RedisStreamSource': schema(redisStreamSourceSchema),
  'sinks.knative.dev/v1alpha1/RedisStreamSink': schema(redisStreamSinkSchema),
};

const YAML_FILES = yamlFiles('knative', 'eventing', 'cluster');

describe('YAML files', () => {
  it('finds the deployment files', () => {
    expect(YAML_FILES).toEqual(
      expect.arrayContaining([
        'cluster/k3d.yaml',
        'cluster/redis.yaml',
        'cluster/mongodb.yaml',
        'knative/ingest.yaml',
        'knative/persist.yaml',
        'knative/kustomization.yaml',
        'eventing/redis-stream-source.yaml',
        'eventing/trigger.yaml',
      ]),
    );
  });

  it.each(YAML_FILES)('%s parses', (file) => {
    expect(loadYaml(file).length).toBeGreaterThan(0);
  });
});

describe('every Kubernetes object validates against its schema', () => {
  const objects = loadManifests().filter((m) => !m.file.endsWith('kustomization.yaml'));

  it('covers every kind the deployment uses', () => {
    const kinds = new Set(objects.map((m) => `${m.object.apiVersion}/${m.object.kind}`));
    expect([...kinds].sort()).toEqual(Object.keys(VALIDATORS).sort());
  });

  it.each(
    objects.map(
      (m) => [`${m.file}: ${m.object.kind} ${m.object.metadata?.name}`, m.object] as const,
    ),
  )('%s', (_label, object) => {
    const validator = VALIDATORS[`${object.apiVersion}/${object.kind}`];
    expect(validator, `no schema for ${object.apiVersion}/${object.kind}`).toBeDefined();
    (validator as Validator)(object);
  });

  it('the strict schemas reject a misspelled field and a missing one', () => {
    const source = objects.find((m) => m.object.kind === 'RedisStreamSource')?.object as Manifest;
    const typo = { ...source, spec: { ...source.spec, consumerGroup: 'x' } };
    expect(validate(typo, redisStreamSourceSchema)).toContain('spec: unknown field consumerGroup');
    const { stream: _stream, ...noStream } = source.spec;
    expect(validate({ ...source, spec: noStream }, redisStreamSourceSchema)).toContain(
      'spec: missing required field stream',
    );
  });

  it('the official models reject an invalid object', () => {
    expect(() =>
      new ConfigMap({ metadata: { name: 'x' }, data: { N: 1 as never } }).validate(),
    ).toThrow();
  });
});

describe('kustomizations', () => {
  // Files up.sh applies on their own: outside the spillway namespace
  // (config-redis.yaml) or cluster-wide (ClusterRoles).
  const appliedAlone = dryRun('cluster/up.sh', [], { MONGO_IOPS_DEVICE: '/dev/vdb' })
    .filter((w) => w.join(' ').startsWith('kubectl apply -f ') && !w[3]?.includes('://'))
    .map((w) => w[3] as string);

  it('up.sh applies config-redis.yaml and the ClusterRole on their own', () => {
    expect(appliedAlone).toEqual(
      expect.arrayContaining([
        'eventing/config-redis.yaml',
        'eventing/redisstreamsink-addressable-resolver.yaml',
      ]),
    );
  });

  it.each(['knative/kustomization.yaml', 'eventing/kustomization.yaml'])(
    '%s lists the other files of its folder',
    (file) => {
      const [kustomization] = loadYaml(file) as [Manifest];
      expect(kustomization.kind).toBe('Kustomization');
      const folder = file.split('/')[0] as string;
      expect(kustomization.resources.map((r: string) => `${folder}/${r}`).sort()).toEqual(
        YAML_FILES.filter((f) => f.startsWith(`${folder}/`))
          .filter((f) => !f.endsWith('kustomization.yaml') && !appliedAlone.includes(f))
          .sort(),
      );
    },
  );
});

describe('cluster/k3d.yaml', () => {
  const [config] = loadYaml('cluster/k3d.yaml') as [Manifest];

  it("validates against the fields of k3d's v1alpha5 schema", () => {
    expect(validate(config, k3dSimpleConfigSchema)).toEqual([]);
  });

  it('never names a network while fixing its subnet', () => {
    // k3d-io/k3d pkg/config/transform.go: a named network is marked external;
    // pkg/client/cluster.go (ClusterPrepNetwork) then refuses any subnet for it
    // ("cannot specify subnet for exiting network"). Unnamed, k3d creates
    // k3d-<cluster name> itself, with the subnet.
    expect(config.subnet).toBeDefined();
    expect(config.network).toBeUndefined();
  });

  it('has 1 server and 3 agents, without Traefik', () => {
    expect(config.servers).toBe(1);
    expect(config.agents).toBe(3);
    expect(config.options.k3s.extraArgs).toContainEqual({
      arg: '--disable=traefik',
      nodeFilters: ['server:*'],
    });
  });

  it("maps Kourier's port 80 and the ingest NodePort through the load balancer", () => {
    const ports = config.ports.map((p: { port: string; nodeFilters: string[] }) => [
      p.port,
      p.nodeFilters,
    ]);
    const nodePort = loadManifests().find((m) => m.object.metadata.name === 'ingest-nodeport')
      ?.object.spec.ports[0].nodePort;
    expect(ports).toContainEqual(['8180:80', ['loadbalancer']]);
    expect(ports).toContainEqual([`${nodePort}:${nodePort}`, ['loadbalancer']]);
  });

  it("gives the load balancer's nginx room for the spike's connections", () => {
    // Each k6 VU holds one keep-alive connection; the k3d load balancer's nginx
    // proxies it with a second one to a node, and worker_connections (k3d
    // default 1024, docs/design/defaults.md) is per worker process, which may
    // take all of them (proxy/templates/nginx.tmpl: multi_accept on).
    const profile = JSON.parse(read('k6/spike-profile.json'));
    const peakVus = Math.max(...profile.stages.map((s: { target: number }) => s.target));
    const overrides: string[] = config.options.k3d.loadbalancer?.configOverrides ?? [];
    const setting = overrides.find((o) => o.startsWith('settings.workerConnections='));
    const workerConnections = Number(setting?.split('=')[1]);
    expect(workerConnections).toBeGreaterThanOrEqual(2 * peakVus);
    // nginx opens at most as many files as the container's soft limit allows
    // (the template sets no worker_rlimit_nofile), and Docker's default soft
    // limit can be 1024: the nodes' nofile must cover worker_connections.
    const nofile = (config.options.runtime?.ulimits ?? []).find(
      (u: { name: string }) => u.name === 'nofile',
    );
    expect(nofile?.soft).toBeGreaterThan(workerConnections);
    expect(nofile?.hard).toBeGreaterThanOrEqual(nofile?.soft);
  });

  it('runs a Kubernetes that Knative knative-v1.22 supports (>= 1.34)', () => {
    const match = /^rancher\/k3s:v1\.(\d+)\.\d+-k3s\d+$/.exec(config.image);
    expect(match, config.image).not.toBeNull();
    expect(Number(match?.[1])).toBeGreaterThanOrEqual(34);
  });
});
