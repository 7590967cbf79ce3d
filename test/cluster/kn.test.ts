/**
 * The kn commands in cluster/README.md must mean what knative/*.yaml say. kn
 * itself cannot be installed here (the Go module proxy refuses knative.dev/client,
 * so its offline --target mode is out of reach), so both sides are read into one
 * model. The flag semantics follow kn knative-v1.22.1 (pkg/flags/podspec.go,
 * pkg/commands/service/configuration_edit_flags.go): --scale-* and
 * --scale-target are revision annotations, --concurrency-limit is
 * containerConcurrency, --cluster-local is the visibility label, --label sets
 * Service and revision labels, --security-context strict then --user.
 */
import { describe, expect, it } from 'vitest';
import { container, find, type Manifest, read, shellWords } from './support.js';

interface Probe {
  path: string;
  port: number;
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}

interface Model {
  name: string;
  namespace: string;
  image: string;
  imagePullPolicy: string;
  port: { name: string; containerPort: number };
  env: Record<string, string>;
  secretEnv: Record<string, string>;
  envFromConfigMaps: string[];
  annotations: Record<string, string>;
  containerConcurrency: number;
  timeoutSeconds: number;
  visibility: string | null;
  serviceLabels: Record<string, string>;
  revisionLabels: Record<string, string>;
  requests: Record<string, string>;
  limits: Record<string, string>;
  readiness: Probe;
  liveness: Probe;
  securityContext: Record<string, unknown>;
}

const AUTOSCALING = 'autoscaling.knative.dev/';
const VISIBILITY = 'networking.knative.dev/visibility';

/** What a manifest says, in the model's terms (readOnlyRootFilesystem aside). */
function fromManifest(service: Manifest): Model {
  const c = container(service);
  const { readOnlyRootFilesystem: _notInKn, ...securityContext } = c.securityContext;
  const { [VISIBILITY]: visibility = null, ...serviceLabels } = service.metadata.labels ?? {};
  const probe = (p: Manifest): Probe => {
    const { httpGet, ...opts } = p;
    return { path: httpGet.path, port: httpGet.port, ...opts };
  };
  return {
    name: service.metadata.name,
    namespace: service.metadata.namespace,
    image: c.image,
    imagePullPolicy: c.imagePullPolicy,
    port: c.ports[0],
    env: Object.fromEntries(
      c.env.filter((e: Manifest) => 'value' in e).map((e: Manifest) => [e.name, e.value]),
    ),
    secretEnv: Object.fromEntries(
      c.env
        .filter((e: Manifest) => e.valueFrom)
        .map((e: Manifest) => [
          e.name,
          `${e.valueFrom.secretKeyRef.name}:${e.valueFrom.secretKeyRef.key}`,
        ]),
    ),
    envFromConfigMaps: c.envFrom.map((e: Manifest) => e.configMapRef.name),
    annotations: service.spec.template.metadata.annotations,
    containerConcurrency: service.spec.template.spec.containerConcurrency,
    timeoutSeconds: service.spec.template.spec.timeoutSeconds,
    visibility,
    serviceLabels,
    revisionLabels: service.spec.template.metadata.labels,
    requests: c.resources.requests,
    limits: c.resources.limits,
    readiness: probe(c.readinessProbe),
    liveness: probe(c.livenessProbe),
    securityContext,
  };
}

function keyValues(list: string, separator = '='): Record<string, string> {
  return Object.fromEntries(
    list.split(',').map((pair) => {
      const at = pair.indexOf(separator);
      if (at < 0) throw new Error(`not key${separator}value: ${pair}`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}

/** http:host:port:path -> the HTTPGet part; opts -> the probe's numbers. */
function knProbe(spec: string, opts: string | undefined): Probe {
  const parts = spec.split(':');
  if (parts.length !== 4 || parts[0] !== 'http' || parts[1] !== '') {
    throw new Error(`unexpected probe ${spec}`);
  }
  const probe: Probe = { path: parts[3] as string, port: Number(parts[2]) };
  const names: Record<string, keyof Probe> = {
    initialdelayseconds: 'initialDelaySeconds',
    periodseconds: 'periodSeconds',
    timeoutseconds: 'timeoutSeconds',
    failurethreshold: 'failureThreshold',
  };
  for (const [k, v] of Object.entries(keyValues(opts ?? ''))) {
    const field = names[k.toLowerCase()];
    if (!field) throw new Error(`probe option ${k} is not modelled`);
    (probe as unknown as Record<string, number>)[field] = Number(v);
  }
  return probe;
}

/** Applies one `kn service create|update` command's flags to an empty model. */
function fromKn(words: string[]): Model {
  expect(words.slice(0, 2)).toEqual(['kn', 'service']);
  const [verb, name] = words.slice(2, 4) as [string, string];
  expect(['create', 'update']).toContain(verb);
  const m: Model = {
    name,
    namespace: 'default',
    image: '',
    imagePullPolicy: '',
    port: { name: '', containerPort: 0 },
    env: {},
    secretEnv: {},
    envFromConfigMaps: [],
    annotations: {},
    containerConcurrency: -1,
    timeoutSeconds: -1,
    visibility: null,
    serviceLabels: {},
    revisionLabels: {},
    requests: {},
    limits: {},
    readiness: { path: '', port: 0 },
    liveness: { path: '', port: 0 },
    securityContext: {},
  };
  const flags = new Map<string, string[]>();
  const rest = words.slice(4);
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i] as string;
    if (!flag.startsWith('--')) throw new Error(`stray word ${flag} in kn service ${verb} ${name}`);
    if (flag === '--cluster-local') {
      m.visibility = 'cluster-local';
      continue;
    }
    const value = rest[++i];
    if (value === undefined) throw new Error(`${flag} has no value`);
    flags.set(flag, [...(flags.get(flag) ?? []), value]);
  }
  const one = (flag: string): string | undefined => {
    const values = flags.get(flag);
    flags.delete(flag);
    if (values && values.length > 1) throw new Error(`${flag} given twice`);
    return values?.[0];
  };
  const many = (flag: string): string[] => {
    const values = flags.get(flag) ?? [];
    flags.delete(flag);
    return values;
  };
  m.namespace = one('--namespace') ?? m.namespace;
  m.image = one('--image') ?? '';
  m.imagePullPolicy = one('--pull-policy') ?? '';
  const [portName, portNumber] = (one('--port') ?? '').split(':');
  m.port = { name: portName as string, containerPort: Number(portNumber) };
  for (const e of many('--env')) Object.assign(m.env, keyValues(e));
  for (const e of many('--env-value-from')) {
    const [env, ref] = e.split('=') as [string, string];
    const match = /^(?:secret|sc):(.+)$/.exec(ref);
    if (!match) throw new Error(`--env-value-from ${e}: only secrets are modelled`);
    m.secretEnv[env] = match[1] as string;
  }
  m.envFromConfigMaps = many('--env-from').map((e) => e.replace(/^(config-map|cm):/, ''));
  const annotations: [string, string][] = [
    ['--scale-min', 'min-scale'],
    ['--scale-max', 'max-scale'],
    ['--scale-target', 'target'],
  ];
  for (const [flag, key] of annotations) {
    const value = one(flag);
    if (value !== undefined) m.annotations[AUTOSCALING + key] = value;
  }
  // --annotation-revision sets an annotation of the revision template only.
  for (const a of many('--annotation-revision')) Object.assign(m.annotations, keyValues(a));
  m.containerConcurrency = Number(one('--concurrency-limit') ?? -1);
  m.timeoutSeconds = Number(one('--timeout') ?? -1);
  for (const l of many('--label')) {
    Object.assign(m.serviceLabels, keyValues(l));
    Object.assign(m.revisionLabels, keyValues(l));
  }
  m.requests = keyValues(one('--request') ?? '');
  m.limits = keyValues(one('--limit') ?? '');
  m.readiness = knProbe(one('--probe-readiness') ?? '', one('--probe-readiness-opts'));
  m.liveness = knProbe(one('--probe-liveness') ?? '', one('--probe-liveness-opts'));
  if (one('--security-context') === 'strict') {
    m.securityContext = {
      allowPrivilegeEscalation: false,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    };
  }
  const user = one('--user');
  if (user !== undefined) m.securityContext.runAsUser = Number(user);
  expect([...flags.keys()], 'flags the model does not know').toEqual([]);
  return m;
}

/** The kn commands of the README's sh blocks, continuation lines joined. */
function readmeCommands(): string[][] {
  const blocks = [...read('cluster/README.md').matchAll(/```sh\n([\s\S]*?)```/g)].map(
    (m) => m[1] as string,
  );
  return blocks
    .flatMap((block) => block.replace(/\\\n\s*/g, ' ').split('\n'))
    .filter((line) => line.startsWith('kn '))
    .map(shellWords);
}

const commands = readmeCommands();

describe('the kn commands in cluster/README.md', () => {
  it('create and update both functions', () => {
    expect(commands.map((w) => w.slice(0, 4).join(' ')).sort()).toEqual([
      'kn service create ingest',
      'kn service create persist',
      'kn service update ingest',
      'kn service update persist',
    ]);
  });

  it.each(commands.map((w) => [w.slice(2, 4).join(' '), w] as const))(
    'kn service %s means the same as the manifest',
    (_label, words) => {
      const fromCommand = fromKn(words);
      expect(fromCommand).toEqual(fromManifest(find('Service', fromCommand.name)));
    },
  );

  it('a changed manifest would be caught', () => {
    const persist = structuredClone(find('Service', 'persist'));
    persist.spec.template.metadata.annotations[`${AUTOSCALING}max-scale`] = '3';
    const words = commands.find((w) => w[2] === 'create' && w[3] === 'persist') as string[];
    expect(fromKn(words)).not.toEqual(fromManifest(persist));
  });
});
