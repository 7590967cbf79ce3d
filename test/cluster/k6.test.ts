import { execFileSync, spawn } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterTool, ROOT, read } from './support.js';

const profile = JSON.parse(read('k6/spike-profile.json'));
const SCRIPT = join(ROOT, 'k6/spike-test.js');
let k6 = '';

beforeAll(() => {
  k6 = clusterTool('k6');
}, 600_000);

function inspect(env: Record<string, string> = {}) {
  const args = ['inspect', ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]), SCRIPT];
  return JSON.parse(execFileSync(k6, args, { encoding: 'utf8', cwd: ROOT }));
}

/** Normalizes k6's durations ("4m0s") and the profile's ("4m") to seconds. */
function seconds(duration: string): number {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(h|m|s)/g)) {
    total += Number(n) * { h: 3600, m: 60, s: 1 }[unit as 'h' | 'm' | 's'];
  }
  return total;
}

describe('k6/spike-test.js derives its options from k6/spike-profile.json (k6 inspect)', () => {
  it("the stages are the profile's: ramp to 10,000 VUs, hold, ramp down", () => {
    const { stages } = inspect();
    const norm = (s: { duration: string; target: number }[]) =>
      s.map((x) => [seconds(x.duration), x.target]);
    expect(norm(stages)).toEqual(norm(profile.stages));
    expect(Math.max(...profile.stages.map((s: { target: number }) => s.target))).toBe(10_000);
  });

  it('the thresholds are both sets by default, or either one', () => {
    const merged: Record<string, string[]> = {};
    for (const set of ['reference', 'spillway']) {
      for (const [metric, rules] of Object.entries(
        profile.thresholds[set] as Record<string, string[]>,
      )) {
        merged[metric] = [...(merged[metric] ?? []), ...rules];
      }
    }
    expect(inspect().thresholds).toEqual(merged);
    expect(inspect({ THRESHOLDS: 'reference' }).thresholds).toEqual(profile.thresholds.reference);
    expect(inspect({ THRESHOLDS: 'spillway' }).thresholds).toEqual(profile.thresholds.spillway);
    expect(profile.thresholds.reference.http_req_failed).toContain('rate<0.01');
  });
});

describe('k6 run against a stand-in ingest', () => {
  const received: { url?: string; method?: string; headers: IncomingHttpHeaders; body: string }[] =
    [];
  let server: Server;
  let url = '';

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => {
        body += chunk;
      });
      req.on('end', () => {
        received.push({ url: req.url, method: req.method, headers: req.headers, body });
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"id":"x"}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });

  afterAll(() => {
    server?.close();
  });

  it('posts real ingest events with the API key, checks 202 and passes the thresholds', async () => {
    const child = spawn(
      k6,
      [
        'run',
        '--quiet',
        '--no-usage-report',
        '--vus',
        '2',
        '--iterations',
        '6',
        '-e',
        `INGEST_URL=${url}`,
        '-e',
        'INGEST_API_KEY=test-key',
        '-e',
        'THINK_TIME_MS=5',
        '-e',
        'THRESHOLDS=reference',
        SCRIPT,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, output).toBe(0);
    expect(output).toContain('accepted (202)');
    expect(received).toHaveLength(6);
    for (const request of received) {
      expect(request.method).toBe('POST');
      expect(request.url).toBe('/events');
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers.authorization).toBe('Bearer test-key');
      const event = JSON.parse(request.body);
      expect(event).toMatchObject({ type: profile.event.type, source: profile.event.source });
      expect(event.subject).toMatch(new RegExp(`^${profile.event.subjectPrefix}[12]$`));
      expect(typeof event.data).toBe('object');
    }
  }, 120_000);

  it('refuses to start without INGEST_URL', () => {
    expect(() =>
      execFileSync(k6, ['run', '--quiet', '--no-usage-report', '--iterations', '1', SCRIPT], {
        cwd: ROOT,
        stdio: 'pipe',
        env: { ...process.env, INGEST_URL: '' },
      }),
    ).toThrow(/INGEST_URL is not set/);
  }, 60_000);
});
