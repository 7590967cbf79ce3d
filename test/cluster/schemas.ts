/**
 * Schemas the official model packages do not cover, written from the sources'
 * own definitions, and a small strict validator for them (unknown fields are
 * errors: a CRD prunes them silently, so a typo would otherwise vanish).
 *
 * - RedisStreamSource (sources.knative.dev/v1alpha1) and RedisStreamSink
 *   (sinks.knative.dev/v1alpha1): knative-extensions/eventing-redis,
 *   config/source/300-redisstreamsource.yaml, config/sink/300-redisstreamsink.yaml
 *   and pkg/{source,sink}/apis/*\/v1alpha1/redisstream_types.go. address and
 *   stream have no omitempty there and the adapter requires both (envconfig
 *   required:"true"); the source also needs a sink.
 * - k3d's Simple config, k3d.io/v1alpha5 (k3d-io/k3d, pkg/config/v1alpha5/
 *   schema.json): the fields this project uses, with the same types.
 */

export interface Schema {
  type: 'object' | 'string' | 'integer' | 'boolean' | 'array';
  properties?: Record<string, Schema>;
  required?: string[];
  /** Objects are closed unless this is true (like x-kubernetes-preserve-unknown-fields). */
  open?: boolean;
  items?: Schema;
  enum?: readonly (string | number)[];
  minimum?: number;
}

export function validate(value: unknown, schema: Schema, path = ''): string[] {
  const at = path || '<root>';
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        return [`${at}: must be an object`];
      }
      const record = value as Record<string, unknown>;
      const errors: string[] = [];
      for (const key of schema.required ?? []) {
        if (record[key] === undefined) errors.push(`${at}: missing required field ${key}`);
      }
      for (const [key, field] of Object.entries(record)) {
        const sub = schema.properties?.[key];
        if (sub) errors.push(...validate(field, sub, `${path}${path ? '.' : ''}${key}`));
        else if (!schema.open) errors.push(`${at}: unknown field ${key}`);
      }
      return errors;
    }
    case 'array':
      if (!Array.isArray(value)) return [`${at}: must be an array`];
      return value.flatMap((item, i) =>
        schema.items ? validate(item, schema.items, `${path}[${i}]`) : [],
      );
    case 'integer':
      if (!Number.isInteger(value)) return [`${at}: must be an integer`];
      if (schema.minimum !== undefined && (value as number) < schema.minimum) {
        return [`${at}: must be >= ${schema.minimum}`];
      }
      return schema.enum && !schema.enum.includes(value as number)
        ? [`${at}: not in ${schema.enum}`]
        : [];
    case 'string':
      if (typeof value !== 'string') return [`${at}: must be a string`];
      return schema.enum && !schema.enum.includes(value) ? [`${at}: not in ${schema.enum}`] : [];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at}: must be a boolean`];
  }
}

const str: Schema = { type: 'string' };
const bool: Schema = { type: 'boolean' };
const stringMap: Schema = { type: 'object', open: true };

const objectMeta: Schema = {
  type: 'object',
  required: ['name'],
  properties: {
    name: str,
    namespace: str,
    labels: stringMap,
    annotations: stringMap,
  },
};

const secretKeySelector: Schema = {
  type: 'object',
  required: ['secretKeyRef'],
  properties: {
    secretKeyRef: { type: 'object', properties: { key: str, name: str, optional: bool } },
  },
};

const objectReference: Schema = {
  type: 'object',
  properties: {
    apiVersion: str,
    fieldPath: str,
    kind: str,
    name: str,
    namespace: str,
    resourceVersion: str,
    uid: str,
  },
};

/** RedisConnection, inlined into both specs. */
const connection: Record<string, Schema> = {
  address: str,
  dialOptions: {
    type: 'object',
    properties: {
      caCert: secretKeySelector,
      cert: secretKeySelector,
      key: secretKeySelector,
      password: objectReference,
      skipVerify: bool,
      useTLS: bool,
    },
  },
};

const destination: Schema = {
  type: 'object',
  properties: {
    ref: {
      type: 'object',
      required: ['apiVersion', 'kind', 'name'],
      properties: { apiVersion: str, kind: str, name: str, namespace: str },
    },
    uri: str,
  },
};

export const redisStreamSourceSchema: Schema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { type: 'string', enum: ['sources.knative.dev/v1alpha1'] },
    kind: { type: 'string', enum: ['RedisStreamSource'] },
    metadata: objectMeta,
    spec: {
      type: 'object',
      required: ['address', 'stream', 'sink'],
      properties: {
        ...connection,
        ceOverrides: {
          type: 'object',
          properties: { extensions: { type: 'object', open: true } },
        },
        group: str,
        consumers: { type: 'integer', minimum: 1 },
        sink: destination,
        stream: str,
      },
    },
  },
};

export const redisStreamSinkSchema: Schema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { type: 'string', enum: ['sinks.knative.dev/v1alpha1'] },
    kind: { type: 'string', enum: ['RedisStreamSink'] },
    metadata: objectMeta,
    spec: {
      type: 'object',
      required: ['address', 'stream'],
      properties: { ...connection, stream: str },
    },
  },
};

const nodeFilters: Schema = { type: 'array', items: str };

export const k3dSimpleConfigSchema: Schema = {
  type: 'object',
  required: ['apiVersion', 'kind'],
  properties: {
    apiVersion: { type: 'string', enum: ['k3d.io/v1alpha5'] },
    kind: { type: 'string', enum: ['Simple'] },
    metadata: { type: 'object', properties: { name: str } },
    servers: { type: 'integer', minimum: 1 },
    agents: { type: 'integer', minimum: 0 },
    image: str,
    network: str,
    subnet: str,
    ports: {
      type: 'array',
      items: { type: 'object', properties: { port: str, nodeFilters } },
    },
    options: {
      type: 'object',
      properties: {
        k3d: {
          type: 'object',
          properties: {
            wait: bool,
            timeout: str,
            disableLoadbalancer: bool,
            disableImageVolume: bool,
            disableRollback: bool,
            loadbalancer: {
              type: 'object',
              properties: { configOverrides: { type: 'array', items: str } },
            },
          },
        },
        k3s: {
          type: 'object',
          properties: {
            extraArgs: {
              type: 'array',
              items: { type: 'object', properties: { arg: str, nodeFilters } },
            },
          },
        },
        kubeconfig: {
          type: 'object',
          properties: { updateDefaultKubeconfig: bool, switchCurrentContext: bool },
        },
        runtime: {
          type: 'object',
          properties: {
            ulimits: {
              type: 'array',
              items: {
                type: 'object',
                required: ['name', 'soft', 'hard'],
                properties: { name: str, soft: { type: 'integer' }, hard: { type: 'integer' } },
              },
            },
          },
        },
      },
    },
  },
};
