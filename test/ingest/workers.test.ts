/**
 * Ingest with several workers (INGEST_WORKERS): each worker accepts through
 * ACCEPTORS descriptors of the one listening socket (functions/host/workers.ts),
 * the primary listens on none of its own; a burst of new connections is answered,
 * and SIGTERM still stops every worker and the primary.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCEPTORS } from '../../functions/host/workers.js';
import { type FunctionProcess, startFunction, unique } from '../support/helpers.js';

let fn: FunctionProcess;
beforeAll(async () => {
  fn = await startFunction('ingest', { STREAM_KEY: unique('test:workers'), INGEST_WORKERS: '2' });
});
afterAll(async () => {
  await fn?.kill('SIGKILL');
});

/** The inode of the socket listening on `port` (from /proc/net/tcp; state 0A is LISTEN). */
function listeningInode(port: number): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(`:${hex}`) && fields[3] === '0A') return fields[9] ?? '';
  }
  throw new Error(`nothing listens on ${port}`);
}

/** node:cluster's workers of the primary `pid` (it gives each NODE_UNIQUE_ID; tsx may run a helper beside them). */
function workersOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const environ = readFileSync(`/proc/${name}/environ`, 'utf8');
      if (ppid === pid && environ.includes('NODE_UNIQUE_ID=')) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** How many of `pid`'s descriptors are the socket with this inode. */
function descriptorsOf(pid: number, inode: string): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

describe('ingest workers', () => {
  it(`accept through ${ACCEPTORS} descriptors each; the primary only keeps the socket`, async () => {
    const primary = fn.proc.pid as number;
    const inode = listeningInode(Number(new URL(fn.url).port));
    const workers = workersOf(primary);
    expect(workers).toHaveLength(2);
    // The workers ask for theirs once they listen: wait for both to have them.
    const deadline = Date.now() + 10_000;
    while (workers.some((pid) => descriptorsOf(pid, inode) < ACCEPTORS) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    for (const pid of workers) expect(descriptorsOf(pid, inode)).toBe(ACCEPTORS);
    // node:cluster's shared handle, which the primary never accepts on.
    expect(descriptorsOf(primary, inode)).toBe(1);
  });

  it('answers a burst of 500 new connections, each its own', async () => {
    const body = JSON.stringify({ type: 'test.workers', source: 'test', data: { n: 1 } });
    /** One request on a connection of its own. */
    const post = () =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          `${fn.url}/events`,
          { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const answers = await Promise.all(Array.from({ length: 500 }, post));
    expect(answers.filter((status) => status === 202)).toHaveLength(500);
  });

  it('stops every worker and the primary on SIGTERM', async () => {
    const workers = workersOf(fn.proc.pid as number);
    expect(await fn.kill('SIGTERM')).toBe(0);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
  });
});
