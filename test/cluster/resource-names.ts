/**
 * The names kubectl accepts for each kind a script or a workflow hands it, as
 * the pinned upstream sources define them. kubectl resolves a resource word
 * through its discovery RESTMapper (client-go `restmapper`): the word,
 * lowercased, must be a resource's plural, its singular (the CRD's
 * `spec.names.singular`; the Kind lowercased only when a server gives no
 * singular) or one of its short names. Nothing else matches, not even the Kind.
 * Plural and singular match whatever their case, short names only exactly
 * (client-go restmapper/shortcut.go). Each row names the upstream file it was
 * read from.
 */
export interface ResourceNames {
  kind: string;
  group: string;
  plural: string;
  singular: string;
  shortNames: string[];
  /** Where the names were read: repository, ref, path. */
  from: string;
}

export const RESOURCE_NAMES: ResourceNames[] = [
  {
    kind: 'Service',
    group: 'serving.knative.dev',
    plural: 'services',
    singular: 'service',
    shortNames: ['kservice', 'ksvc'],
    from: 'knative/serving knative-v1.22.1 config/core/300-resources/service.yaml',
  },
  {
    kind: 'Broker',
    group: 'eventing.knative.dev',
    plural: 'brokers',
    singular: 'broker',
    shortNames: [],
    from: 'knative/eventing knative-v1.22.1 config/core/resources/broker.yaml',
  },
  {
    kind: 'Trigger',
    group: 'eventing.knative.dev',
    plural: 'triggers',
    singular: 'trigger',
    shortNames: [],
    from: 'knative/eventing knative-v1.22.1 config/core/resources/trigger.yaml',
  },
  {
    kind: 'RedisStreamSource',
    group: 'sources.knative.dev',
    plural: 'redisstreamsources',
    singular: 'redisstreamsource',
    shortNames: [],
    from: 'knative-extensions/eventing-redis knative-v1.22.1 config/source/300-redisstreamsource.yaml',
  },
  {
    // singular with two s: upstream's spelling, which is what kubectl matches
    kind: 'RedisStreamSink',
    group: 'sinks.knative.dev',
    plural: 'redisstreamsinks',
    singular: 'redisstreamssink',
    shortNames: [],
    from: 'knative-extensions/eventing-redis knative-v1.22.1 config/sink/300-redisstreamsink.yaml',
  },
  {
    kind: 'CustomResourceDefinition',
    group: 'apiextensions.k8s.io',
    plural: 'customresourcedefinitions',
    singular: 'customresourcedefinition',
    shortNames: ['crd', 'crds'],
    from: 'kubernetes/apiextensions-apiserver v0.36.2 pkg/registry/customresourcedefinition/etcd.go',
  },
  {
    kind: 'StatefulSet',
    group: 'apps',
    plural: 'statefulsets',
    singular: 'statefulset',
    shortNames: ['sts'],
    from: 'kubernetes/kubernetes 7c66d0f8 api/discovery/apis__apps__v1.json',
  },
  {
    kind: 'Deployment',
    group: 'apps',
    plural: 'deployments',
    singular: 'deployment',
    shortNames: ['deploy'],
    from: 'kubernetes/kubernetes 7c66d0f8 api/discovery/apis__apps__v1.json',
  },
  {
    kind: 'Service',
    group: '',
    plural: 'services',
    singular: 'service',
    shortNames: ['svc'],
    from: 'kubernetes/kubernetes 4d817e79 api/discovery/api__v1.json',
  },
  {
    kind: 'Secret',
    group: '',
    plural: 'secrets',
    singular: 'secret',
    shortNames: [],
    from: 'kubernetes/kubernetes 4d817e79 api/discovery/api__v1.json',
  },
  {
    kind: 'ConfigMap',
    group: '',
    plural: 'configmaps',
    singular: 'configmap',
    shortNames: ['cm'],
    from: 'kubernetes/kubernetes 4d817e79 api/discovery/api__v1.json',
  },
  {
    kind: 'Pod',
    group: '',
    plural: 'pods',
    singular: 'pod',
    shortNames: ['po'],
    from: 'kubernetes/kubernetes 4d817e79 api/discovery/api__v1.json',
  },
  {
    kind: 'EndpointSlice',
    group: 'discovery.k8s.io',
    plural: 'endpointslices',
    singular: 'endpointslice',
    shortNames: [],
    from: 'kubernetes/kubernetes 4a0608cb api/discovery/apis__discovery.k8s.io__v1.json',
  },
];

/**
 * The kinds a resource word names, as kubectl's RESTMapper would resolve it
 * (`TYPE` or `TYPE.GROUP`, case-insensitive): several when groups share a
 * name (Knative's Service and the core one), none for a word nothing defines.
 */
export function kindsOf(word: string): ResourceNames[] {
  const lower = word.toLowerCase();
  const dot = lower.indexOf('.');
  const name = dot < 0 ? lower : lower.slice(0, dot);
  const group = dot < 0 ? undefined : lower.slice(dot + 1);
  return RESOURCE_NAMES.filter(
    (row) =>
      (group === undefined || row.group === group) &&
      ([row.plural, row.singular].includes(name) ||
        row.shortNames.includes(dot < 0 ? word : word.slice(0, dot))),
  );
}

/** kubectl flags that take the next word as their value. */
const VALUED = new Set([
  '-n',
  '--namespace',
  '-o',
  '--output',
  '--type',
  '-p',
  '--patch',
  '-l',
  '--selector',
  '-c',
  '--container',
  '--tail',
  '-f',
  '--filename',
  '-k',
]);
/** Verbs whose arguments are resources (TYPE/NAME, or TYPE[,TYPE] NAME…). */
const RESOURCE_VERBS = new Set([
  'wait',
  'get',
  'delete',
  'describe',
  'patch',
  'logs',
  'port-forward',
]);
const RESOURCE_SUBVERBS: Record<string, Set<string>> = {
  rollout: new Set(['restart', 'status', 'undo', 'history', 'pause', 'resume']),
  set: new Set(['env', 'image', 'resources']),
};

/** The resource words of one kubectl command (split into words), none when its verb takes no resource. */
export function resourceWords(words: readonly string[]): string[] {
  const at = words.indexOf('kubectl');
  if (at < 0) return [];
  const positional: string[] = [];
  for (let i = at + 1; i < words.length; i++) {
    const word = words[i] as string;
    if (word === '--' || word === '|' || word === '||' || word === '&&' || word === '>') break;
    if (VALUED.has(word)) i++;
    else if (!word.startsWith('-')) positional.push(word);
  }
  const [verb, sub] = positional;
  let args: string[];
  if (verb !== undefined && RESOURCE_VERBS.has(verb)) args = positional.slice(1);
  else if (verb !== undefined && sub !== undefined && RESOURCE_SUBVERBS[verb]?.has(sub))
    args = positional.slice(2);
  else return [];
  const found: string[] = [];
  args.forEach((arg, i) => {
    if (arg.includes('/')) found.push(arg.slice(0, arg.indexOf('/')));
    else if (i === 0 && !/^\d/.exec(arg) && !arg.includes('=')) found.push(...arg.split(','));
  });
  return found;
}
