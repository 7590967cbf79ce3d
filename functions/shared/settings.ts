/**
 * Every environment variable Spillway reads, in one catalogue: how it is parsed,
 * its default, its unit and what it means. Each process reads the ones it
 * needs, once, at start, into a typed object whose keys are the variables'
 * names in camelCase (`MAX_BACKLOG` → `maxBacklog`); a bad value stops it with
 * a message naming the variable. The README's configuration table lists the
 * same variables (a test keeps the two together).
 */
import { type Env, EnvReader, LOG_LEVELS } from './env.js';
import { CONSUMER_GROUP, DATABASE, STREAM_KEY } from './names.js';

export type Part = 'ingest' | 'persist' | 'relay' | 'pipeline' | 'host';

export interface Setting<T, P extends readonly Part[] = readonly Part[]> {
  fallback: T;
  unit: string;
  /** Who reads it. */
  parts: P;
  doc: string;
  read(reader: EnvReader, name: string, fallback: T): T;
}

const MAX = Number.MAX_SAFE_INTEGER;
const MIB = 1024 * 1024;
const MONGODB = ['mongodb:', 'mongodb+srv:'];

type Reader<T> = Setting<T>['read'];

function setting<T, P extends readonly Part[]>(
  read: Reader<T>,
  fallback: T,
  unit: string,
  parts: P,
  doc: string,
): Setting<T, P> {
  return { fallback, unit, parts, doc, read };
}

// How a value is read (EnvReader names the variable when it is wrong).
const int =
  (min: number, max: number): Reader<number> =>
  (r, name, f) =>
    r.int(name, f, min, max);
const text: Reader<string> = (r, name, f) => r.string(name, f);
const url =
  (protocols: readonly string[]): Reader<string> =>
  (r, name, f) =>
    r.url(name, f, protocols);
const list: Reader<string[]> = (r, name) => r.list(name);
const oneOf =
  <T extends string>(allowed: readonly T[]): Reader<T> =>
  (r, name, f) =>
    r.oneOf(name, f, allowed);

const SERVED = ['ingest', 'persist'] as const;
const ALL = ['ingest', 'persist', 'relay'] as const;

export const SETTINGS = {
  // Every process
  LOG_LEVEL: setting(oneOf(LOG_LEVELS), 'info', '—', ALL, 'pino level'),
  REDIS_URL: setting(
    url(['redis:', 'rediss:']),
    'redis://127.0.0.1:6390',
    'URL',
    ALL,
    'Redis holding the stream',
  ),
  STREAM_KEY: setting(text, STREAM_KEY, '—', [...ALL, 'pipeline'], 'the stream'),
  // Every process that serves HTTP
  HOST: setting(
    text,
    '127.0.0.1',
    'address',
    [...SERVED, 'pipeline'],
    'address to bind (the container image sets 0.0.0.0)',
  ),
  PORT: setting(int(0, 65535), 8080, 'port', [...SERVED, 'pipeline'], 'HTTP port (persist: 8081)'),
  METRICS_PORT: setting(
    int(0, 65535),
    9090,
    'port',
    [...SERVED, 'pipeline'],
    'Prometheus /metrics, not on the public route (persist: 9091)',
  ),
  MAX_BODY_BYTES: setting(
    int(64, 64 * 1024 * 1024),
    256 * 1024,
    'bytes',
    SERVED,
    'larger bodies get 413, never read past this (persist: 1 MiB)',
  ),
  SHUTDOWN_TIMEOUT_MS: setting(
    int(0, 600_000),
    10_000,
    'ms',
    [...ALL, 'pipeline'],
    'longest wait for in-flight work on SIGTERM (persist: 30000)',
  ),
  HEADERS_TIMEOUT_MS: setting(
    int(1000, 600_000),
    10_000,
    'ms',
    SERVED,
    "a client that has not sent a request's headers by then is disconnected",
  ),
  REQUEST_TIMEOUT_MS: setting(
    int(1000, 600_000),
    30_000,
    'ms',
    SERVED,
    'a client that has not sent a whole request by then is disconnected',
  ),
  // The host
  FUNCTION_TARGET: setting(
    oneOf(['ingest', 'persist'] as const),
    'ingest',
    '—',
    ['host'],
    'the function the host serves',
  ),
  INGEST_WORKERS: setting(
    int(1, 64),
    1,
    'processes',
    ['host', 'pipeline'],
    'ingest processes sharing the port (npm start: 3)',
  ),
  PERSIST_WORKERS: setting(
    int(1, 64),
    1,
    'processes',
    ['host', 'pipeline'],
    'persist processes sharing the port (replicas of one write budget)',
  ),
  // Ingest
  MAX_BACKLOG: setting(
    int(0, MAX),
    1_000_000,
    'entries',
    ['ingest'],
    'stream length at which ingest answers 503 (0 = none)',
  ),
  BACKLOG_RETRY_AFTER_SEC: setting(
    int(1, 3600),
    1,
    's',
    ['ingest'],
    "`Retry-After` of that 503 while no drain rate is measured (else the backlog's predicted time to drain under the limit)",
  ),
  MAX_DRAIN_SEC: setting(
    int(0, MAX),
    0,
    's',
    ['ingest'],
    'ingest answers 503 when the backlog would take longer than this to drain at the measured rate (0 = none)',
  ),
  MAX_REDIS_MEMORY_PCT: setting(
    int(0, 100),
    90,
    '%',
    ['ingest'],
    "share of Redis's `maxmemory` in use at which ingest answers 503 `backlog_full`, so the drain always has room (0 = none)",
  ),
  RATE_LIMIT_PER_SEC: setting(
    int(0, MAX),
    0,
    'requests/s',
    ['ingest'],
    'per bearer key, else per client address (0 = off)',
  ),
  INGEST_API_KEYS: setting(
    list,
    [],
    '—',
    ['ingest'],
    'bearer tokens, comma-separated; `token=prefix` lets a token post only sources starting with prefix (listed again for more); empty = none (a secret)',
  ),
  INGEST_REPLAY_KEYS: setting(
    list,
    [],
    '—',
    ['ingest'],
    "bearer tokens of the dead-letter replay: they also authenticate, and their CloudEvents may carry `spillwayseq` and `spillwaykey` to keep an entry's seq and key (a secret)",
  ),
  IDEMPOTENCY_TTL_SEC: setting(
    int(1, MAX),
    86_400,
    's',
    ['ingest', 'persist'],
    "how long an Idempotency-Key is remembered, and a receipt answers (persist keeps a dead letter's status as long, or as long as ingest's when that is longer)",
  ),
  RECEIPT_SECRET: setting(
    text,
    '',
    '—',
    ['ingest'],
    "key of the receipts' MAC; a comma-separated list rotates it (the first mints, any verifies); empty = a key made once in Redis (`spillway:receipt-secret`, never expires) and shared by every ingest on it, so whoever reads Redis could mint receipts (a secret)",
  ),
  MAX_WAIT_SEC: setting(
    int(0, 3600),
    20,
    's',
    ['ingest'],
    'the longest `Prefer: wait` honoured (0 = none)',
  ),
  MAX_WAITERS: setting(
    int(0, 1_000_000),
    10_000,
    'requests',
    ['ingest'],
    'requests waiting (`Prefer: wait`) at once in one ingest process; more are answered at once',
  ),
  REDIS_TIMEOUT_MS: setting(int(1, 60_000), 1000, 'ms', ['ingest'], 'Redis slower than this → 503'),
  DEFAULT_SOURCE: setting(
    text,
    '/spillway/ingest',
    '—',
    ['ingest'],
    '`source` of plain events that give none',
  ),
  SEQ_TTL_SEC: setting(
    int(1, MAX),
    7 * 86_400,
    's',
    ['ingest'],
    "a subject's sequence expires after this long unused (then starts again at 1)",
  ),
  COUNTERS_TTL_SEC: setting(
    int(1, MAX),
    8 * 86_400,
    's',
    ['ingest'],
    'how long a day of per-source counters is kept',
  ),
  TRUSTED_PROXY_HOPS: setting(
    int(0, 16),
    0,
    'proxies',
    ['ingest'],
    'the client is the Nth address from the right of X-Forwarded-For (0: the peer)',
  ),
  // Persist
  MONGODB_URL: setting(
    url(MONGODB),
    'mongodb://127.0.0.1:27030/',
    'URL',
    ['persist'],
    'the database server (a secret in the cluster)',
  ),
  MONGODB_DB: setting(text, DATABASE, '—', ['persist'], 'database name'),
  CONSUMER_GROUP: setting(
    text,
    CONSUMER_GROUP,
    '—',
    ['persist', 'relay'],
    "the source's consumer group (persist acks for it)",
  ),
  DB_WRITE_OPS_PER_SEC: setting(
    int(1, 100_000),
    100,
    'commands/s',
    ['persist'],
    "the database's write budget, shared by every persist replica (a hard ceiling)",
  ),
  DB_WRITE_OPS_FLOOR: setting(
    int(1, 100_000),
    5,
    'commands/s',
    ['persist'],
    'the lowest the budget adapts down to when writes are slow',
  ),
  DB_LATENCY_TARGET_MS: setting(
    int(1, 600_000),
    1000,
    'ms',
    ['persist'],
    'write commands slower than this lower the shared rate (AIMD)',
  ),
  PERSIST_MAX_REPLICAS: setting(
    int(1, 1000),
    10,
    'replicas',
    ['persist'],
    'the most persist processes that may run: cut off from Redis, each writes at budget ÷ this',
  ),
  MAX_BATCH_DOCS: setting(
    int(1, 100_000),
    10_000,
    'documents',
    ['persist'],
    'most in one insertMany',
  ),
  MAX_BATCH_BYTES: setting(
    int(1024, 46 * MIB),
    16 * MIB,
    'bytes',
    ['persist'],
    'most in one insertMany',
  ),
  DELIVERY_DEADLINE_MS: setting(
    int(100, MAX),
    30_000,
    'ms',
    ['persist'],
    'a delivery not committed by then gets 503 (redelivered)',
  ),
  MONGO_TIMEOUT_MS: setting(
    int(100, MAX),
    20_000,
    'ms',
    ['persist'],
    'socket timeout of a database command',
  ),
  MAX_COMMIT_ATTEMPTS: setting(
    int(1, 100),
    6,
    'attempts',
    ['persist'],
    'write attempts before an entry is parked (left in the stream)',
  ),
  PARK_MS: setting(int(0, MAX), 60_000, 'ms', ['persist'], 'how long a parked entry is left alone'),
  SWEEP_INTERVAL_MS: setting(int(50, MAX), 5000, 'ms', ['persist'], 'how often the sweeper looks'),
  STALE_AFTER_MS: setting(
    int(0, MAX),
    30_000,
    'ms',
    ['persist'],
    'entries older than this are swept',
  ),
  CATCHUP_BACKLOG: setting(
    int(0, MAX),
    10_000,
    'entries',
    ['persist'],
    "backlog past the source's cursor that starts catch-up",
  ),
  CATCHUP_SKIP_ENTRIES: setting(
    int(0, MAX),
    1000,
    'entries',
    ['persist'],
    'entries past the cursor left to the source',
  ),
  PULL_CHUNK_ENTRIES: setting(
    int(1, 100_000),
    5000,
    'entries',
    ['persist'],
    'entries per XRANGE of the pull intake',
  ),
  LEASE_TTL_MS: setting(
    int(500, MAX),
    10_000,
    'ms',
    ['persist'],
    'pull lease: one replica pulls at a time',
  ),
  // The relay
  PERSIST_URL: setting(
    url(['http:', 'https:']),
    'http://127.0.0.1:8081/',
    'URL',
    ['relay'],
    'where the relay delivers',
  ),
  RELAY_CONSUMERS: setting(
    int(1, 10_000),
    100,
    'deliveries',
    ['relay'],
    'deliveries in flight (the source: pods × numConsumers)',
  ),
  RELAY_CONSUMER_NAME: setting(text, '', '—', ['relay'], 'name in the group (`relay-<hostname>`)'),
  STATUS_FILE: setting(
    text,
    '',
    'path',
    ['relay', 'pipeline'],
    'where it writes its status as JSON (ready, pid; npm start: each child) whenever it changes; none when empty',
  ),
  // npm start
  PERSIST_PORT: setting(int(0, 65535), 0, 'port', ['pipeline'], "persist's port (PORT + 1)"),
  PERSIST_METRICS_PORT: setting(
    int(0, 65535),
    0,
    'port',
    ['pipeline'],
    "persist's metrics (METRICS_PORT + 1)",
  ),
} as const;

export type SettingName = keyof typeof SETTINGS;
type Value<N extends SettingName> = (typeof SETTINGS)[N] extends Setting<infer T> ? T : never;
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Lowercase<Head>}${Capitalize<Camel<Tail>>}`
  : Lowercase<S>;

/** The typed object of the named settings, keyed by their names in camelCase. */
export type Settings<N extends SettingName> = { [K in N as Camel<K>]: Value<K> };

export function camelCase(name: string): string {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Reads the named settings once; `defaults` replaces a catalogue default for this process. */
function readSettings<N extends SettingName>(
  names: readonly N[],
  env: Env = process.env,
  defaults: { [K in N]?: Value<K> } = {},
): Settings<N> {
  const reader = new EnvReader(env);
  const out: Record<string, unknown> = {};
  for (const name of names) {
    const setting = SETTINGS[name] as Setting<unknown>;
    const fallback = name in defaults ? defaults[name] : setting.fallback;
    out[camelCase(name)] = setting.read(reader, name, fallback);
  }
  return out as Settings<N>;
}

/** The settings a part reads (those whose `parts` name it). */
export type NamesOf<P extends Part> = {
  [K in SettingName]: P extends (typeof SETTINGS)[K]['parts'][number] ? K : never;
}[SettingName];

export function namesOf<P extends Part>(part: P): NamesOf<P>[] {
  return (Object.keys(SETTINGS) as SettingName[]).filter((name) =>
    (SETTINGS[name].parts as readonly Part[]).includes(part),
  ) as NamesOf<P>[];
}

/** Reads every setting of a part, once. */
export function readPart<P extends Part>(
  part: P,
  env: Env = process.env,
  defaults: { [K in NamesOf<P>]?: Value<K> } = {},
): Settings<NamesOf<P>> {
  return readSettings(namesOf(part), env, defaults);
}

/** What both functions read: what the host needs of a function's config. */
export type ServiceConfig = Settings<NamesOf<'ingest'> & NamesOf<'persist'>>;
