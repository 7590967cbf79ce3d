/**
 * Importing a module of the product starts nothing: no connection, no timer, no
 * server. Only the Functions Framework's entries (functions/*\/index.ts) build
 * their function at import, because the framework loads them and nothing else;
 * the host and the tests call createIngest / createPersist.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnEntry } from '../../scripts/processes.js';
import { ROOT, tsFiles } from '../support/files.js';
import { mongoUrl, redisUrl } from '../support/helpers.js';

const PROBE = join(ROOT, 'test/support/probes/import-probe.ts');
const ENTRIES = ['functions/ingest/index.ts', 'functions/persist/index.ts'];

async function probe(files: string[]): Promise<string[]> {
  const child = spawnEntry(PROBE, {
    args: files.map((file) => join(ROOT, file)),
    capture: true,
    env: { REDIS_URL: redisUrl(), MONGODB_URL: mongoUrl(), LOG_LEVEL: 'silent' },
  });
  const { code } = await child.exited;
  const line = child.output().trim().split('\n').at(-1) ?? '';
  expect(code, child.output()).toBe(0);
  return (JSON.parse(line) as { added: string[] }).added;
}

describe('importing a module', () => {
  it('of functions/ starts nothing (the framework entries aside)', async () => {
    const files = tsFiles('functions').filter((file) => !ENTRIES.includes(file));
    expect(files).toContain('functions/persist/persist.ts');
    expect(files).toContain('functions/ingest/ingest.ts');
    expect(await probe(files)).toEqual([]);
  }, 60_000);

  it.each(ENTRIES)(
    '%s, a framework entry, does start its function (the probe sees it)',
    async (entry) => {
      const added = await probe([entry]);
      // Its Redis connection (TCPSocketWrap, or TCPWRAP while it connects) and timers.
      expect(
        added.some((kind) => /^TCP|^Timeout$/.test(kind)),
        added.join(', '),
      ).toBe(true);
    },
    60_000,
  );
});
