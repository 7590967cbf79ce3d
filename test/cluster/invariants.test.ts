import { readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONSUMER_GROUP, SOURCE_EVENT_TYPE, STREAM_KEY } from '../../functions/shared/names.js';
import { namesOf } from '../../functions/shared/settings.js';
import { READY_CHECK_MS } from '../../functions/shared/time.js';
import {
  container,
  dryRun,
  find,
  loadManifests,
  loadYaml,
  type Manifest,
  parseEnvFile,
  ROOT,
  read,
} from './support.js';

const ingest = find('Service', 'ingest');
const persist = find('Service', 'persist');
const ingestConfig = find('ConfigMap', 'ingest-config').data as Record<string, string>;
const persistConfig = find('ConfigMap', 'persist-config').data as Record<string, string>;
const configRedis = find('ConfigMap', 'config-redis').data as Record<string, string>;
const source = find('RedisStreamSource', 'spillway-events');
const trigger = find('Trigger', 'persist');
const deadLetters = find('RedisStreamSink', 'spillway-dead-letters');
const secretKeys = parseEnvFile(read('knative/secrets.example.env'));
const knativeServices = [ingest, persist];

/** Text that looks like a credential: user:password in a URL, keys, tokens. */
function credentialFindings(text: string): string[] {
  const patterns = [
    /\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@'"]+:[^\s/@'"]+@/gi,
    /-----BEGIN [A-Z ]*PRIVATE KEY-----/g,
    // a name like password/token followed by a random-looking value (letters and digits)
    /\b(password|passwd|secret|token|api_?keys?)\s*[:=]\s*['"]?(?=[\w+/-]*\d)(?=[\w+/-]*[a-z])[\w+/-]{16,}/gi,
    /\b[A-Fa-f0-9]{32,}\b/g,
    /Bearer [A-Za-z0-9._-]{12,}/g,
  ];
  return patterns.flatMap((pattern) => text.match(pattern) ?? []);
}

/** up.sh's plan, with the IOPS device given and a secrets file that does not exist. */
const upPlan = dryRun('cluster/up.sh', [], {
  MONGO_IOPS_DEVICE: '/dev/vdb',
  SPILLWAY_SECRETS_ENV: join(tmpdir(), `spillway-absent-${process.pid}.env`),
});

function flagValue(command: string[], flag: string): string {
  const at = command.indexOf(flag);
  if (at < 0 || at + 1 >= command.length)
    throw new Error(`${flag} missing in ${command.join(' ')}`);
  return command[at + 1] as string;
}

const dockerRun = upPlan.find((c) => c[0] === 'docker' && c[1] === 'run') as string[];

function annotation(service: Manifest, key: string): number {
  const value = service.spec.template.metadata.annotations[`autoscaling.knative.dev/${key}`];
  expect(value, `${service.metadata.name} ${key}`).toMatch(/^\d+$/);
  return Number(value);
}

function envOf(service: Manifest): Record<string, Manifest> {
  return Object.fromEntries(container(service).env.map((e: Manifest) => [e.name, e]));
}

describe('scaling', () => {
  it('ingest keeps at least 3 pods warm (one per agent)', () => {
    expect(annotation(ingest, 'min-scale')).toBeGreaterThanOrEqual(3);
    expect(annotation(ingest, 'max-scale')).toBeGreaterThanOrEqual(annotation(ingest, 'min-scale'));
    expect(annotation(ingest, 'target')).toBeGreaterThan(0);
  });

  it('persist is cluster-local', () => {
    expect(persist.metadata.labels['networking.knative.dev/visibility']).toBe('cluster-local');
    expect(ingest.metadata.labels?.['networking.knative.dev/visibility']).toBeUndefined();
  });

  it('persist keeps one pod for the sweeper', () => {
    expect(annotation(persist, 'min-scale')).toBeGreaterThanOrEqual(1);
  });

  it("the database's one write budget stays within its IOPS, and nothing bypasses it", () => {
    const writeIops = Number(flagValue(dockerRun, '--device-write-iops').split(':')[1]);
    const readIops = Number(flagValue(dockerRun, '--device-read-iops').split(':')[1]);
    expect(writeIops).toBe(100);
    expect(readIops).toBe(100);
    // One budget for the database, shared by every replica: not multiplied by max-scale.
    const budget = Number(persistConfig.DB_WRITE_OPS_PER_SEC);
    expect(budget).toBeGreaterThan(0);
    expect(budget).toBeLessThanOrEqual(writeIops);
    expect(Number(persistConfig.DB_WRITE_OPS_FLOOR)).toBeLessThanOrEqual(budget);
    // Replicas cut off from Redis write at budget / PERSIST_MAX_REPLICAS each: all of
    // them together (at most max-scale) stay within the budget.
    expect(Number(persistConfig.PERSIST_MAX_REPLICAS)).toBeGreaterThanOrEqual(
      annotation(persist, 'max-scale'),
    );
    // Only persist can reach the database, and no per-process budget is left anywhere.
    for (const service of knativeServices) {
      const names = [
        ...Object.keys(envOf(service)),
        ...Object.keys(service === persist ? persistConfig : ingestConfig),
      ];
      expect(names).not.toContain('WRITE_OPS_PER_SEC');
      if (service !== persist) expect(names).not.toContain('MONGODB_URL');
    }
    expect(Number(persistConfig.PERSIST_WORKERS ?? 1)).toBe(1);
  });

  it('many deliveries can wait on one persist pod, so group commit batches', () => {
    const slots = persist.spec.template.spec.containerConcurrency;
    expect(slots).toBeGreaterThanOrEqual(100);
    expect(annotation(persist, 'target')).toBeLessThanOrEqual(slots);
  });

  it('a named consumer group gets one adapter pod', () => {
    // eventing-redis pkg/source/adapter/adapter.go: every pod names its readers
    // "<group>-<n>", and each pod's graceful shutdown deletes those consumers
    // and runs XGROUP DESTROY on the group, so a second pod on the same named
    // group shares consumer names and loses the group under it (NOGROUP).
    // spec.consumers is the StatefulSet's replicas (its default, unset, is 1).
    expect(source.spec.group).toBeTruthy();
    expect(source.spec.consumers ?? 1).toBe(1);
  });

  it("the source's readers fit persist's concurrency", () => {
    const inFlight = (source.spec.consumers ?? 1) * Number(configRedis.numConsumers);
    const slots = persist.spec.template.spec.containerConcurrency;
    expect(inFlight).toBeLessThanOrEqual(annotation(persist, 'max-scale') * slots);
    expect(inFlight).toBeGreaterThanOrEqual(annotation(persist, 'min-scale') * slots);
  });
});

/**
 * The domain Knative Serving gives a Route with these labels, from config-domain's
 * data (knative/serving pkg/reconciler/route/config/domain.go: the visibility
 * label wins; else the most specific matching selector, ties to the smaller
 * name; no selector-less domain means svc.cluster.local is the default). A Route
 * carries its Service's labels (pkg/reconciler/service/resources/route.go), and
 * a Route whose domain is svc.cluster.local is cluster-local
 * (pkg/reconciler/route/visibility/visibility.go).
 */
function routeDomain(labels: Record<string, string>, domains: Record<string, string>): string {
  if (labels['networking.knative.dev/visibility'] === 'cluster-local') return 'svc.cluster.local';
  const options = Object.entries(domains)
    .filter(([name]) => name !== '_example')
    .map(([name, text]) => {
      const parsed = (text.trim() === '' ? {} : parse(text)) as {
        selector?: Record<string, string>;
      };
      return [name, parsed.selector ?? {}] as const;
    });
  if (!options.some(([, selector]) => Object.keys(selector).length === 0)) {
    options.push(['svc.cluster.local', {}]);
  }
  let best = '';
  let specificity = -1;
  for (const [name, selector] of options) {
    const size = Object.keys(selector).length;
    if (!Object.entries(selector).every(([k, v]) => labels[k] === v) || size < specificity)
      continue;
    if (size > specificity || name < best) {
      best = name;
      specificity = size;
    }
  }
  return best;
}

describe('visibility', () => {
  const domainPatch = upPlan.find((c) => c.includes('configmap/config-domain')) as string[];
  const domains = JSON.parse(flagValue(domainPatch, '--patch')).data as Record<string, string>;
  // Every Knative Service the deployment creates: the functions, and the
  // receiver eventing-redis's sink controller creates for each RedisStreamSink,
  // labelled as pkg/sink/reconciler/streamsink/resources/labels.go says.
  const services = [
    ...loadManifests()
      .filter(
        (m) => m.object.apiVersion === 'serving.knative.dev/v1' && m.object.kind === 'Service',
      )
      .map((m) => [m.object.metadata.name, m.object.metadata.labels ?? {}] as const),
    ...loadManifests()
      .filter((m) => m.object.kind === 'RedisStreamSink')
      .map(
        (m) =>
          [
            `redistreamsink${m.object.metadata.name}`,
            {
              'eventing.knative.dev/sink': 'redisstream-sink-controller',
              'eventing.knative.dev/sinkName': m.object.metadata.name,
            },
          ] as const,
      ),
  ];

  it('finds ingest, persist and the dead-letter receiver', () => {
    expect(services.map(([name]) => name).sort()).toEqual([
      'ingest',
      'persist',
      'redistreamsinkspillway-dead-letters',
    ]);
  });

  it.each(services)('%s is cluster-local unless it is ingest', (name, labels) => {
    const domain = routeDomain(labels, domains);
    if (name === 'ingest') {
      expect(domain).toBe('127.0.0.1.sslip.io');
    } else {
      expect(domain).toBe('svc.cluster.local');
    }
  });

  it('the domain rules follow Knative Serving', () => {
    const d = { 'example.com': '', 'svc.cluster.local': 'selector:\n  app: secret\n' };
    expect(routeDomain({}, d)).toBe('example.com');
    expect(routeDomain({ app: 'secret' }, d)).toBe('svc.cluster.local');
    expect(routeDomain({ 'networking.knative.dev/visibility': 'cluster-local' }, d)).toBe(
      'svc.cluster.local',
    );
    expect(routeDomain({}, { 'svc.cluster.local': 'selector:\n  app: secret\n' })).toBe(
      'svc.cluster.local',
    );
  });
});

describe('the source, the functions and the Trigger agree', () => {
  it("the source reads ingest's stream from ingest's Redis", () => {
    expect(source.spec.stream).toBe(ingestConfig.STREAM_KEY);
    expect(source.spec.stream).toBe(persistConfig.STREAM_KEY);
    expect(source.spec.stream).toBe(STREAM_KEY);
    expect(source.spec.address).toBe(secretKeys.REDIS_URL);
    const redisUrl = envOf(ingest).REDIS_URL?.valueFrom.secretKeyRef;
    expect(redisUrl).toEqual({ name: 'spillway-secrets', key: 'REDIS_URL' });
    expect(envOf(persist).REDIS_URL?.valueFrom.secretKeyRef).toEqual(redisUrl);
  });

  it("the source's consumer group is the one persist acknowledges for", () => {
    expect(source.spec.group).toBe(persistConfig.CONSUMER_GROUP);
    expect(source.spec.group).toBe(CONSUMER_GROUP);
  });

  it('the source sends to the Broker the Trigger listens on', () => {
    expect(source.spec.sink.ref).toMatchObject({ kind: 'Broker', name: trigger.spec.broker });
    find('Broker', trigger.spec.broker);
  });

  it("the Trigger filters on the source's event type and source attribute", () => {
    // pkg/source/adapter: type is fixed, source is "<address>/<stream>".
    expect(trigger.spec.filter.attributes).toEqual({
      type: SOURCE_EVENT_TYPE,
      source: `${source.spec.address}/${source.spec.stream}`,
    });
  });

  it('the Trigger delivers to persist, with retries, backoff, a timeout and a dead-letter sink', () => {
    expect(trigger.spec.subscriber.ref).toEqual({
      apiVersion: 'serving.knative.dev/v1',
      kind: 'Service',
      name: 'persist',
    });
    const { delivery } = trigger.spec;
    expect(delivery.retry).toBeGreaterThanOrEqual(3);
    expect(delivery.backoffPolicy).toBe('exponential');
    expect(delivery.backoffDelay).toMatch(/^PT[\d.]+S$/);
    const timeoutSec = Number(/^PT(\d+(?:\.\d+)?)S$/.exec(delivery.timeout)?.[1]);
    // persist answers by itself at DELIVERY_DEADLINE_MS, before the Trigger and
    // the revision give up.
    expect(timeoutSec * 1000).toBeGreaterThan(Number(persistConfig.DELIVERY_DEADLINE_MS));
    expect(timeoutSec).toBeLessThan(persist.spec.template.spec.timeoutSeconds);
    expect(delivery.deadLetterSink.ref).toEqual({
      apiVersion: 'sinks.knative.dev/v1alpha1',
      kind: 'RedisStreamSink',
      name: deadLetters.metadata.name,
    });
  });

  it('dead letters go to their own stream in the same durable Redis', () => {
    expect(deadLetters.spec.address).toBe(source.spec.address);
    expect(deadLetters.spec.stream).not.toBe(source.spec.stream);
    expect(read('cluster/replay-dead-letters.sh')).toContain(
      `DEAD_LETTER_STREAM="${deadLetters.spec.stream}"`,
    );
  });

  it("the Secret's addresses name the cluster's Redis and MongoDB Services", () => {
    for (const [url, name, port] of [
      [secretKeys.REDIS_URL, 'redis', 6379],
      [secretKeys.MONGODB_URL, 'mongodb', 27017],
    ] as const) {
      const parsed = new URL(url as string);
      const service = find('Service', name);
      expect(parsed.hostname).toBe(`${name}.${service.metadata.namespace}.svc.cluster.local`);
      expect(Number(parsed.port)).toBe(port);
      expect(service.spec.ports[0].port).toBe(port);
    }
  });
});

/**
 * What knative/eventing's own addressable-resolver aggregation already grants
 * (knative-v1.22.1 config/core/roles/addressable-resolvers-clusterrole.yaml):
 * group -> resources. The eventing controller (which runs the Trigger
 * reconciler, mt-broker-controller included) resolves destinations with the
 * aggregated ClusterRole "addressable-resolver", i.e. every ClusterRole
 * labelled duck.knative.dev/addressable: "true".
 */
const EVENTING_ADDRESSABLES: Record<string, string[]> = {
  '': ['services'],
  'serving.knative.dev': ['routes', 'services'],
  'messaging.knative.dev': ['channels'],
  'eventing.knative.dev': ['brokers', 'eventtransforms'],
  'flows.knative.dev': ['sequences', 'parallels'],
  'sinks.knative.dev': ['jobsinks', 'integrationsinks'],
};

/** Every destination ref (sink, subscriber, deadLetterSink) in the manifests. */
function destinationRefs(): { file: string; apiVersion: string; kind: string; name: string }[] {
  const refs: { file: string; apiVersion: string; kind: string; name: string }[] = [];
  const walk = (file: string, value: unknown, key: string) => {
    if (Array.isArray(value)) {
      for (const item of value) walk(file, item, key);
    } else if (typeof value === 'object' && value !== null) {
      const record = value as Record<string, unknown>;
      if (
        key === 'ref' &&
        typeof record.kind === 'string' &&
        typeof record.apiVersion === 'string'
      ) {
        refs.push({ file, ...(record as { apiVersion: string; kind: string; name: string }) });
      }
      for (const [k, v] of Object.entries(record)) walk(file, v, k);
    }
  };
  for (const m of loadManifests()) walk(m.file, m.object.spec, 'spec');
  return refs;
}

describe('addressable resolution', () => {
  const roles = loadManifests().filter(
    (m) =>
      m.object.kind === 'ClusterRole' &&
      m.object.metadata.labels?.['duck.knative.dev/addressable'] === 'true',
  );

  function granted(group: string, resource: string): boolean {
    if (EVENTING_ADDRESSABLES[group]?.includes(resource)) return true;
    return roles.some((role) =>
      (role.object.rules as Manifest[]).some(
        (rule) =>
          rule.apiGroups.includes(group) &&
          rule.resources.includes(resource) &&
          ['get', 'list', 'watch'].every((verb) => rule.verbs.includes(verb)),
      ),
    );
  }

  it('finds the Broker, persist and the dead-letter sink as destinations', () => {
    expect(
      destinationRefs()
        .map((r) => r.kind)
        .sort(),
    ).toEqual(['Broker', 'RedisStreamSink', 'Service']);
  });

  it.each(destinationRefs().map((r) => [`${r.file}: ${r.kind} ${r.name}`, r] as const))(
    '%s is readable through a ClusterRole labelled addressable',
    (_label, ref) => {
      const group = ref.apiVersion.includes('/') ? (ref.apiVersion.split('/')[0] as string) : '';
      const resource = `${ref.kind.toLowerCase()}s`;
      expect(granted(group, resource), `${group}/${resource}`).toBe(true);
    },
  );

  it("up.sh applies the project's addressable ClusterRoles, after the CRDs, before the eventing wiring", () => {
    const lines = upPlan.map((w) => w.join(' '));
    const wiring = lines.indexOf('kubectl apply -k eventing');
    const sinkRelease = lines.findIndex((l) => l.endsWith('/redis-sink.yaml'));
    for (const role of roles) {
      const at = lines.indexOf(`kubectl apply -f ${role.file}`);
      expect(at, role.file).toBeGreaterThan(sinkRelease);
      expect(at, role.file).toBeLessThan(wiring);
    }
  });
});

describe('the functions', () => {
  it('each Service runs its own function', () => {
    for (const service of knativeServices) {
      expect(envOf(service).FUNCTION_TARGET?.value).toBe(service.metadata.name);
    }
  });

  it('reads only variables the function knows (a typo would be ignored silently)', () => {
    // What each function reads: the settings catalogue's part, and the host's.
    const known = {
      ingest: [...namesOf('ingest'), ...namesOf('host')],
      persist: [...namesOf('persist'), ...namesOf('host')],
    };
    const configs = { ingest: ingestConfig, persist: persistConfig };
    for (const service of knativeServices) {
      const name = service.metadata.name as keyof typeof known;
      const names = [...Object.keys(envOf(service)), ...Object.keys(configs[name])];
      expect(known[name]).toEqual(expect.arrayContaining(names));
      expect(container(service).envFrom).toEqual([{ configMapRef: { name: `${name}-config` } }]);
    }
    expect(ingestConfig.INGEST_WORKERS).toBe('1');
  });

  it("avoids Knative's reserved env names and queue-proxy's ports", () => {
    // knative/serving pkg/apis/serving/k8s_validation.go: reservedEnvVars, reservedPorts
    const reservedEnv = ['PORT', 'K_SERVICE', 'K_CONFIGURATION', 'K_REVISION'];
    const reservedPorts = [8012, 8013, 8022, 9090, 9091, 8008];
    for (const service of knativeServices) {
      const config = service === ingest ? ingestConfig : persistConfig;
      const names = [...Object.keys(envOf(service)), ...Object.keys(config)];
      expect(names.filter((n) => reservedEnv.includes(n))).toEqual([]);
      expect(reservedPorts).not.toContain(Number(config.METRICS_PORT));
      expect(container(service).ports).toEqual([{ name: 'http1', containerPort: 8080 }]);
    }
  });

  it('the NodePort reaches ingest through queue-proxy', () => {
    const nodePort = find('Service', 'ingest-nodeport');
    expect(nodePort.spec.type).toBe('NodePort');
    expect(nodePort.spec.selector).toEqual({ 'serving.knative.dev/service': 'ingest' });
    expect(nodePort.spec.ports[0].targetPort).toBe(8012);
  });
});

describe('containers', () => {
  const workloads = loadManifests().filter((m) =>
    ['Service', 'StatefulSet'].includes(m.object.kind),
  );
  const containers = workloads.flatMap((m) =>
    (m.object.spec.template?.spec?.containers ?? []).map(
      (c: Manifest) => [`${m.object.kind} ${m.object.metadata.name}/${c.name}`, c] as const,
    ),
  );

  it('finds the three workloads', () => {
    expect(containers.map(([label]) => label).sort()).toEqual([
      'Service ingest/ingest',
      'Service persist/persist',
      'StatefulSet redis/redis',
    ]);
  });

  it.each(containers)('%s has requests, limits and probes', (_label, c) => {
    for (const kind of ['requests', 'limits']) {
      expect(Object.keys(c.resources?.[kind] ?? {}).sort()).toEqual(['cpu', 'memory']);
    }
    expect(c.readinessProbe).toBeDefined();
    expect(c.livenessProbe).toBeDefined();
    expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
    expect(c.securityContext?.capabilities?.drop).toEqual(['ALL']);
  });

  it('the functions probe /readyz and /healthz on their port', () => {
    for (const service of knativeServices) {
      const c = container(service);
      // the queue-proxy honours timeoutSeconds when periodSeconds is set (Kubernetes' default: 1 s)
      expect(c.readinessProbe.periodSeconds).toBeGreaterThan(0);
      expect(c.readinessProbe.timeoutSeconds * 1000).toBeGreaterThan(READY_CHECK_MS);
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 8080 });
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 8080 });
      expect(c.securityContext.runAsNonRoot).toBe(true);
    }
  });

  it('Redis keeps everything it acknowledged: AOF, a volume, noeviction', () => {
    const redis = find('StatefulSet', 'redis');
    const args = container(redis).args.join(' ');
    expect(args).toContain('--appendonly yes');
    // The fsync policy comes from the container's env (Kubernetes expands $(VAR) in args).
    expect(args).toContain('--appendfsync $(REDIS_APPENDFSYNC)');
    const fsync = container(redis).env.find(
      (e: { name: string }) => e.name === 'REDIS_APPENDFSYNC',
    );
    expect(['everysec', 'always']).toContain(fsync?.value);
    expect(args).toContain('--maxmemory-policy noeviction');
    expect(redis.spec.volumeClaimTemplates[0].metadata.name).toBe(
      container(redis).volumeMounts[0].name,
    );
  });
});

describe('no plaintext secret anywhere', () => {
  const SECRET_NAME = /(^|_)(API_KEYS?|SECRETS?|PASSWORDS?|TOKENS?|CREDENTIALS?)$|_URL$/;
  const ownFiles = ['Dockerfile', '.dockerignore', 'k6/spike-test.js'].concat(
    ...['knative', 'eventing', 'cluster'].map((dir) =>
      readdirSync(join(ROOT, dir))
        .filter((f) => statSync(join(ROOT, dir, f)).isFile())
        .map((f) => `${dir}/${f}`),
    ),
  );

  it('no Secret object is committed', () => {
    expect(loadManifests().filter((m) => m.object.kind === 'Secret')).toEqual([]);
  });

  it('credentials and URLs reach the functions only through secretKeyRef', () => {
    for (const service of knativeServices) {
      for (const [name, e] of Object.entries(envOf(service))) {
        if (SECRET_NAME.test(name)) {
          expect(e.value, name).toBeUndefined();
          expect(e.valueFrom?.secretKeyRef?.name, name).toBe('spillway-secrets');
        }
      }
    }
    for (const config of [ingestConfig, persistConfig]) {
      expect(Object.keys(config).filter((k) => SECRET_NAME.test(k))).toEqual([]);
    }
  });

  it('the example secrets file holds no credential', () => {
    expect(secretKeys.INGEST_API_KEYS).toBe('');
    expect(secretKeys.INGEST_REPLAY_KEYS).toBe('');
    expect(secretKeys.RECEIPT_SECRET).toBe('');
    for (const url of [secretKeys.REDIS_URL, secretKeys.MONGODB_URL]) {
      const parsed = new URL(url as string);
      expect(parsed.username + parsed.password).toBe('');
    }
    // where up.sh writes the real one is ignored by git
    expect(read('.gitignore').split('\n')).toContain('.data/');
    expect(
      flagValue(
        upPlan.find((c) => c.includes('secret') && c.includes('create')) as string[],
        'generic',
      ),
    ).toBe('spillway-secrets');
  });

  it('the detector finds credentials when there are some', () => {
    for (const sample of [
      'MONGODB_URL=mongodb://admin:hunter2@db:27017/',
      'INGEST_API_KEYS=3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c',
      'password: "s3cretValue12345678"',
      'Authorization: Bearer abcdef0123456789',
    ]) {
      expect(credentialFindings(sample), sample).not.toEqual([]);
    }
    expect(
      credentialFindings('--env-value-from REDIS_URL=secret:spillway-secrets:REDIS_URL'),
    ).toEqual([]);
  });

  it.each(ownFiles)('%s contains nothing that looks like a credential', (file) => {
    expect(credentialFindings(readFileSync(join(ROOT, file), 'utf8'))).toEqual([]);
  });
});

describe('images', () => {
  const image = flagValue(
    upPlan.find((c) => c[0] === 'docker' && c[1] === 'build') as string[],
    '--tag',
  );

  it('the functions run exactly the image up.sh builds and imports into k3d', () => {
    expect(image).toMatch(/^dev\.local\/spillway:[\w.-]+$/);
    expect(image.endsWith(':latest')).toBe(false);
    const imported = upPlan.find((c) => c[0] === 'k3d' && c[1] === 'image') as string[];
    expect(imported.slice(0, 4)).toEqual(['k3d', 'image', 'import', image]);
    for (const service of knativeServices) {
      expect(container(service).image).toBe(image);
      expect(container(service).imagePullPolicy).toBe('IfNotPresent');
    }
    expect(read('cluster/README.md')).toContain(image);
  });

  it('every image is pinned to a version', () => {
    const images = loadManifests().flatMap((m) =>
      (m.object.spec?.template?.spec?.containers ?? []).map((c: Manifest) => c.image as string),
    );
    images.push(dockerRun[dockerRun.indexOf('--volume') + 2] as string);
    const [k3d] = loadYaml('cluster/k3d.yaml') as [Manifest];
    images.push(k3d.image);
    expect(images.length).toBe(5);
    for (const ref of images) expect(ref).toMatch(/^[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*$/);
  });
});

describe('MongoDB on the k3d network', () => {
  it("the EndpointSlice points at the container's fixed address, inside k3d's subnet", () => {
    const slice = find('EndpointSlice', 'mongodb-1');
    const [k3d] = loadYaml('cluster/k3d.yaml') as [Manifest];
    const ip = flagValue(dockerRun, '--ip');
    expect(slice.endpoints[0].addresses).toEqual([ip]);
    expect(slice.metadata.labels['kubernetes.io/service-name']).toBe('mongodb');
    // the network k3d creates for the cluster (pkg/config/transform.go)
    expect(flagValue(dockerRun, '--network')).toBe(`k3d-${k3d.metadata.name}`);
    const [net, bits] = (k3d.subnet as string).split('/');
    const toInt = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    const mask = 2 ** 32 - 2 ** (32 - Number(bits));
    expect((toInt(ip) & mask) >>> 0).toBe((toInt(net as string) & mask) >>> 0);
  });
});
