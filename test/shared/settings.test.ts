import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadIngestConfig } from '../../functions/ingest/config.js';
import { loadPersistConfig } from '../../functions/persist/config.js';
import { ConfigError } from '../../functions/shared/env.js';
import { camelCase, namesOf, SETTINGS, type SettingName } from '../../functions/shared/settings.js';

describe('the settings catalogue', () => {
  it('names a config key after its variable, in camelCase', () => {
    expect(camelCase('MAX_BACKLOG')).toBe('maxBacklog');
    expect(camelCase('IDEMPOTENCY_TTL_SEC')).toBe('idempotencyTtlSec');
    expect(camelCase('PORT')).toBe('port');
  });

  it('gives each function exactly the settings that name it, with its own defaults', () => {
    const ingest = loadIngestConfig({});
    const persist = loadPersistConfig({});
    expect(Object.keys(ingest).sort()).toEqual(namesOf('ingest').map(camelCase).sort());
    expect(Object.keys(persist).sort()).toEqual(namesOf('persist').map(camelCase).sort());
    expect([ingest.port, persist.port, ingest.metricsPort, persist.metricsPort]).toEqual([
      8080, 8081, 9090, 9091,
    ]);
    expect('mongodbUrl' in ingest).toBe(false);
    expect('maxBacklog' in persist).toBe(false);
  });

  it('reads a value once and refuses a bad one, naming the variable', () => {
    expect(loadIngestConfig({ MAX_BACKLOG: '5', INGEST_API_KEYS: 'a, b,' })).toMatchObject({
      maxBacklog: 5,
      ingestApiKeys: ['a', 'b'],
    });
    expect(() => loadPersistConfig({ DB_WRITE_OPS_PER_SEC: '0' })).toThrow(ConfigError);
    expect(() => loadPersistConfig({ DB_WRITE_OPS_PER_SEC: '0' })).toThrow(/DB_WRITE_OPS_PER_SEC/);
    expect(() => loadIngestConfig({ REDIS_URL: 'http://x' })).toThrow(/REDIS_URL must use/);
  });

  it('is what the README documents: every variable in its configuration table, nothing more', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'));
    const table = section.slice(0, section.indexOf('\n## ', 5));
    const documented = new Set([...table.matchAll(/^\| `([A-Z_]+)`/gm)].map((m) => m[1] as string));
    const catalogue = Object.keys(SETTINGS) as SettingName[];
    expect([...documented].filter((name) => !(name in SETTINGS))).toEqual([]);
    expect(catalogue.filter((name) => !documented.has(name))).toEqual([]);
  });
});
