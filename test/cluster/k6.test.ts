/**
 * k6/spike-test.js, checked without k6 (k6 is AGPL-3.0: the project
 * never builds or runs it; cluster users bring their own). The script is loaded
 * in Node with stand-ins for the `k6` and `k6/http` modules (test/support/k6/),
 * the way k6 runs it: the init context with __ENV and open(), then setup() and
 * the default function once per iteration. What it exports and what it sends
 * are its contract with k6 and with ingest.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { paddingText } from '../../bench/profile.js';
import { ROOT, read } from './support.js';

const profile = JSON.parse(read('k6/spike-profile.json'));
const SCRIPT = join(ROOT, 'k6/spike-test.js');
const STAND_INS = join(ROOT, 'test/support/k6');

interface Call {
  fn: 'http.post' | 'check' | 'sleep';
  url?: string;
  body?: string;
  params?: { headers: Record<string, string> };
  results?: Record<string, boolean>;
  seconds?: number;
}
interface Run {
  // biome-ignore lint/suspicious/noExplicitAny: k6 options are checked field by field
  options?: Record<string, any>;
  calls: Call[];
  error?: string;
}

/** Loads the script as k6 would and runs its default function `iterations` times. */
function k6(env: Record<string, string>, iterations = 0, vus = 1, status = 202): Run {
  const out = spawnSync(
    process.execPath,
    ['--import', join(STAND_INS, 'register.mjs'), join(STAND_INS, 'run.mjs'), SCRIPT],
    {
      cwd: ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        K6_ENV: JSON.stringify(env),
        K6_ITERATIONS: String(iterations),
        K6_VUS: String(vus),
        K6_STATUS: String(status),
      },
    },
  );
  expect(out.status, out.stderr).toBe(0);
  return JSON.parse(out.stdout) as Run;
}

const TARGET = { INGEST_URL: 'http://127.0.0.1:30000/', INGEST_API_KEY: 'test-key' };

describe('k6/spike-test.js options', () => {
  it("ramps VUs through the profile's stages with k6's ramping-vus executor, from 0", () => {
    const { options, error } = k6(TARGET);
    expect(error).toBeUndefined();
    expect(Object.keys(options?.scenarios ?? {})).toEqual(['spike']);
    expect(options?.scenarios.spike).toEqual({
      executor: 'ramping-vus',
      startVUs: 0,
      stages: profile.stages,
      gracefulRampDown: '30s',
    });
    expect(options?.stages, 'stages given twice would be a second scenario').toBeUndefined();
    expect(Math.max(...profile.stages.map((s: { target: number }) => s.target))).toBe(10_000);
    expect(options?.discardResponseBodies).toBe(true);
  });

  it('applies both threshold sets by default, or either one, and refuses another name', () => {
    const merged: Record<string, string[]> = {};
    for (const set of ['reference', 'spillway'])
      for (const [metric, rules] of Object.entries(
        profile.thresholds[set] as Record<string, string[]>,
      ))
        merged[metric] = [...(merged[metric] ?? []), ...rules];
    expect(k6(TARGET).options?.thresholds).toEqual(merged);
    expect(k6({ THRESHOLDS: 'reference' }).options?.thresholds).toEqual(
      profile.thresholds.reference,
    );
    expect(k6({ THRESHOLDS: 'spillway' }).options?.thresholds).toEqual(profile.thresholds.spillway);
    expect(profile.thresholds.reference.http_req_failed).toContain('rate<0.01');
    expect(k6({ THRESHOLDS: 'strict' }).error).toMatch(/THRESHOLDS=strict is not one of/);
  });
});

describe('k6/spike-test.js PROFILE', () => {
  const flood = JSON.parse(read('k6/flood-profile.json'));

  it("runs the flood's stages, think time and event with PROFILE=flood, and refuses another name", () => {
    const { options, calls, error } = k6({ ...TARGET, PROFILE: 'flood' }, 2);
    expect(error).toBeUndefined();
    expect(options?.scenarios.spike.stages).toEqual(flood.stages);
    expect(flood.stages).not.toEqual(profile.stages);
    expect(Math.max(...flood.stages.map((s: { target: number }) => s.target))).toBe(10_000);
    const event = JSON.parse(calls.find((c) => c.fn === 'http.post')?.body as string);
    expect(event).toMatchObject({ type: flood.event.type, source: flood.event.source });
    // The flood's events are padded to the profile's size with the VU runner's
    // padding (characters that look like data, the same every run); the spike's are not.
    expect(flood.event.payloadBytes).toBeGreaterThan(0);
    expect(event.data.payload).toBe(paddingText(flood.event.payloadBytes));
    expect(new Set(event.data.payload).size).toBe(64);
    const spikeCalls = k6({ ...TARGET, PROFILE: 'spike' }, 1).calls;
    const spikeEvent = JSON.parse(spikeCalls.find((c) => c.fn === 'http.post')?.body as string);
    expect(spikeEvent.data).not.toHaveProperty('payload');
    const { mean, jitter } = flood.thinkTimeMs;
    for (const c of calls.filter((c) => c.fn === 'sleep')) {
      expect(c.seconds).toBeGreaterThanOrEqual((mean * (1 - jitter)) / 1000);
      expect(c.seconds).toBeLessThanOrEqual((mean * (1 + jitter)) / 1000);
    }
    expect(k6({ ...TARGET, PROFILE: 'spike' }).options?.scenarios.spike.stages).toEqual(
      profile.stages,
    );
    expect(k6({ ...TARGET, PROFILE: '../package' }).error).toMatch(
      /PROFILE=\.\.\/package is not one of spike, flood/,
    );
  });
});

describe('k6/spike-test.js iterations', () => {
  it('posts one event per iteration to INGEST_URL/events with the API key, checks 202, then thinks', () => {
    const { calls, error } = k6(TARGET, 4, 2);
    expect(error).toBeUndefined();
    expect(calls.map((c) => c.fn)).toEqual(Array(4).fill(['http.post', 'check', 'sleep']).flat());
    const posts = calls.filter((c) => c.fn === 'http.post');
    posts.forEach((post, i) => {
      expect(post.url).toBe('http://127.0.0.1:30000/events');
      expect(post.params?.headers).toEqual({
        'Content-Type': 'application/json',
        Authorization: 'Bearer test-key',
      });
      const event = JSON.parse(post.body as string);
      expect(Object.keys(event).sort()).toEqual(['data', 'source', 'subject', 'type']);
      expect(event).toMatchObject({
        type: profile.event.type,
        source: profile.event.source,
        subject: `${profile.event.subjectPrefix}${(i % 2) + 1}`,
      });
      expect(event.data).toMatchObject({ vu: (i % 2) + 1, iteration: Math.floor(i / 2) });
    });
    for (const c of calls.filter((c) => c.fn === 'check'))
      expect(c.results).toEqual({ 'accepted (202)': true });
    const { mean, jitter } = profile.thinkTimeMs;
    for (const c of calls.filter((c) => c.fn === 'sleep')) {
      expect(c.seconds).toBeGreaterThanOrEqual((mean * (1 - jitter)) / 1000);
      expect(c.seconds).toBeLessThanOrEqual((mean * (1 + jitter)) / 1000);
    }
  });

  it('counts any other answer as a failed check', () => {
    const { calls } = k6(TARGET, 1, 1, 503);
    expect(calls.find((c) => c.fn === 'check')?.results).toEqual({ 'accepted (202)': false });
  });

  it('sends no Authorization header without a key, and takes THINK_TIME_MS', () => {
    const { calls } = k6({ INGEST_URL: 'http://ingest', THINK_TIME_MS: '10' }, 3);
    const post = calls.find((c) => c.fn === 'http.post');
    expect(post?.url).toBe('http://ingest/events');
    expect(post?.params?.headers).toEqual({ 'Content-Type': 'application/json' });
    for (const c of calls.filter((c) => c.fn === 'sleep')) {
      expect(c.seconds).toBeGreaterThanOrEqual(0.005);
      expect(c.seconds).toBeLessThanOrEqual(0.015);
    }
  });

  it('asks to wait for the database with PREFER_WAIT, and counts 201 and 202 as accepted', () => {
    for (const [status, committed] of [
      [201, true],
      [202, false],
    ] as const) {
      const { calls, error } = k6({ ...TARGET, PREFER_WAIT: '2' }, 2, 1, status);
      expect(error).toBeUndefined();
      expect(calls.map((c) => c.fn)).toEqual(Array(2).fill(['http.post', 'check', 'sleep']).flat());
      for (const post of calls.filter((c) => c.fn === 'http.post'))
        expect(post.params?.headers).toEqual({
          'Content-Type': 'application/json',
          Authorization: 'Bearer test-key',
          Prefer: 'wait=2',
        });
      for (const c of calls.filter((c) => c.fn === 'check'))
        expect(c.results).toEqual({
          'accepted (201 or 202)': true,
          'committed within the wait (201)': committed,
        });
    }
    const refused = k6({ ...TARGET, PREFER_WAIT: '2' }, 1, 1, 503);
    expect(refused.calls.find((c) => c.fn === 'check')?.results).toEqual({
      'accepted (201 or 202)': false,
      'committed within the wait (201)': false,
    });
    for (const bad of ['0', 'soon', '1.5', '-1'])
      expect(k6({ ...TARGET, PREFER_WAIT: bad }, 1).error).toMatch(
        new RegExp(`PREFER_WAIT=${bad.replace('.', '\\.')} is not a whole number of seconds`),
      );
  });

  it('refuses to start without INGEST_URL, or with a think time that is not a number', () => {
    expect(k6({}, 1).error).toMatch(/INGEST_URL is not set/);
    expect(k6({ ...TARGET, THINK_TIME_MS: 'soon' }, 1).error).toMatch(
      /THINK_TIME_MS=soon is not a number/,
    );
    expect(k6({}, 1).calls).toEqual([]);
  });
});
