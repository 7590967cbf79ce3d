/**
 * CPU priority on a shared machine. A cluster gives the edge (ingest and its
 * Redis) the CPU it requested and the drain (relay, persist, the database)
 * what is left; on one small machine everything competes for the same cores,
 * and a drain that takes them all starves Redis until ingest's answers time
 * out. The flood therefore runs the drain's processes at a lower priority
 * (a higher nice value). Linux keeps the nice value per thread, so every
 * thread of a process and of its children is set.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/** The nice value of the drain's processes during a flood (0 is the default; 19 the lowest). */
export const DRAIN_NICE = 10;

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** The thread ids of `pid` and of every process descended from it, from /proc. */
export function threadsOf(pid: number): number[] {
  const threads: number[] = [];
  const pending = [pid];
  const seen = new Set<number>();
  while (pending.length > 0) {
    const next = pending.pop() as number;
    if (seen.has(next)) continue;
    seen.add(next);
    for (const task of listDir(`/proc/${next}/task`)) {
      threads.push(Number(task));
      let children = '';
      try {
        children = readFileSync(`/proc/${next}/task/${task}/children`, 'utf8');
      } catch {}
      for (const child of children.split(/\s+/).filter(Boolean)) pending.push(Number(child));
    }
  }
  return threads;
}

/** The processes of a cgroup (v1 `cgroup.procs`), e.g. the database's blkio group. */
export function processesOf(cgroup: string | undefined): number[] {
  if (!cgroup) return [];
  try {
    return readFileSync(`${cgroup}/cgroup.procs`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Sets the nice value of every thread of `pids` and their children; returns a
 * warning for each process it could not change (gone, or not permitted).
 */
export function setNice(pids: readonly number[], nice: number): string[] {
  const warnings: string[] = [];
  for (const pid of pids) {
    const threads = threadsOf(pid);
    if (threads.length === 0) warnings.push(`process ${pid} is gone: its priority was not set`);
    for (const tid of threads) {
      try {
        setPriority(tid, nice);
      } catch (error) {
        if ((error as { code?: string }).code === 'ESRCH') continue; // the thread ended meanwhile
        warnings.push(
          `could not set the nice value of ${pid} (thread ${tid}) to ${nice}: ${String(error)}`,
        );
        break;
      }
    }
  }
  return warnings;
}
