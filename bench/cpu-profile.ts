/**
 * Reads a V8 CPU profile (`node --cpu-prof`, a .cpuprofile JSON file) and sums
 * each function's self time: the samples whose top frame it was, weighted by
 * the time between samples. Frames of the same function (same name, file and
 * line) are added up wherever they sit in the call tree.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface CpuFrame {
  functionName: string;
  /** file:line, relative to the working directory for the project's files; node:… for Node's. */
  where: string;
  selfMs: number;
}

function whereOf(frame: ProfileNode['callFrame']): string {
  if (!frame.url) return '';
  let file = frame.url;
  if (file.startsWith('file://')) {
    try {
      file = relative(process.cwd(), fileURLToPath(file));
    } catch {
      // keep the URL
    }
  }
  return `${file}:${frame.lineNumber + 1}`;
}

/** The `count` functions with the most self time, with the profile's total and idle time. */
export function topSelfFrames(
  file: string,
  count: number,
): { totalMs: number; idleMs: number; top: CpuFrame[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // A sample's time is the delta to the next sample (the last gets the mean).
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    const next = deltas[i + 1];
    const us = next ?? (profile.endTime - profile.startTime) / Math.max(1, samples.length);
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, us));
  }
  const byFunction = new Map<string, CpuFrame>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    const where = whereOf(node.callFrame);
    const key = `${name}\u0000${where}`;
    const frame = byFunction.get(key) ?? { functionName: name, where, selfMs: 0 };
    frame.selfMs += us / 1000;
    byFunction.set(key, frame);
  }
  const top = [...byFunction.values()].sort((x, y) => y.selfMs - x.selfMs).slice(0, count);
  for (const frame of top) frame.selfMs = Math.round(frame.selfMs * 10) / 10;
  return { totalMs: totalUs / 1000, idleMs: idleUs / 1000, top };
}
