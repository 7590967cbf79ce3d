/**
 * The load profiles (k6/<name>-profile.json: the reference spike, and the flood
 * that offers several times what the database takes), shared by the k6 script
 * and the local VU runner so that stages, think time, event shape and
 * thresholds cannot drift.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface SpikeProfile {
  stages: { duration: string; target: number }[];
  thinkTimeMs: { mean: number; jitter: number };
  thresholds: Record<string, Record<string, string[]>>;
  event: ProfileEvent;
}

/** The event every VU posts: its type and source, a subject per VU, and data of a given size. */
export interface ProfileEvent {
  type: string;
  source: string;
  subjectPrefix: string;
  /** Characters of padding in the data (`payload`), for events of a realistic size; none when absent. */
  payloadBytes?: number;
}

/** The repository root: the nearest ancestor of this file holding k6/spike-profile.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'k6', 'spike-profile.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find k6/spike-profile.json above bench/');
    dir = parent;
  }
}

/**
 * The padding of a profile's events, from k6/padding.js itself (plain
 * JavaScript the k6 script imports too), loaded from the repository at run
 * time, so that the VU runner and k6 send the same events.
 */
export const { paddingText } = (await import(
  pathToFileURL(join(repoRoot(), 'k6', 'padding.js')).href
)) as { paddingText: (length: number) => string };

/** The profiles there are, by name (k6/<name>-profile.json). */
export const PROFILES = ['spike', 'flood'] as const;
export type ProfileName = (typeof PROFILES)[number];

export function loadProfile(root = repoRoot(), name: ProfileName = 'spike'): SpikeProfile {
  const file = `k6/${name}-profile.json`;
  const profile = JSON.parse(readFileSync(join(root, file), 'utf8')) as SpikeProfile;
  const { mean, jitter } = profile.thinkTimeMs ?? {};
  if (!(typeof mean === 'number' && mean > 0 && typeof jitter === 'number' && jitter >= 0))
    throw new Error(`${file}: thinkTimeMs needs a positive mean and a jitter ≥ 0`);
  if (!profile.event?.type || !profile.event.source || profile.event.subjectPrefix === undefined)
    throw new Error(`${file}: event needs type, source and subjectPrefix`);
  const { payloadBytes } = profile.event;
  if (payloadBytes !== undefined && !(Number.isInteger(payloadBytes) && payloadBytes >= 0))
    throw new Error(`${file}: event.payloadBytes must be an integer of at least 0`);
  if (!Array.isArray(profile.stages) || profile.stages.length === 0)
    throw new Error(`${file}: stages needs at least one stage`);
  return profile;
}

/** Latency limits in ms from one threshold set, e.g. {95: 2.85, 99: 3.42} from "p(95)<2.85". */
export function latencyLimits(profile: SpikeProfile, set: string): Record<number, number> {
  const limits: Record<number, number> = {};
  for (const expression of profile.thresholds[set]?.http_req_duration ?? []) {
    const match = /^p\((\d+(?:\.\d+)?)\)\s*<=?\s*(\d+(?:\.\d+)?)$/.exec(expression.trim());
    if (match) limits[Number(match[1])] = Number(match[2]);
  }
  return limits;
}

/** The same think time as the k6 script: the mean spread uniformly by ± jitter. */
export function thinkTimeMs(mean: number, jitter: number): number {
  return mean * (1 + jitter * (2 * Math.random() - 1));
}

/**
 * When a VU that has been running for a long time sends next, seen from a random
 * moment: the stationary residual of its think time (density (1 − F(x)) / mean,
 * F the uniform think-time distribution). Starting every VU after such a delay
 * makes the sum of all VUs' requests steady from the first second. Starting them
 * uniformly over one mean think time does not: with a jittered think time the
 * second round then arrives spread over [0.5, 2.5] mean think times and the rate
 * swings for several think times.
 */
export function firstThinkMs(mean: number, jitter: number, u = Math.random()): number {
  const a = mean * (1 - jitter);
  const b = mean * (1 + jitter);
  if (u * mean <= a) return u * mean;
  return b - Math.sqrt(Math.max(0, (b - a) ** 2 - 2 * (b - a) * (u * mean - a)));
}
