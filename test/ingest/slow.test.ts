/**
 * Slow clients: 1,000 connections that trickle their headers or their body hold a
 * socket each, never the worker, and only until HEADERS_TIMEOUT_MS /
 * REQUEST_TIMEOUT_MS; meanwhile normal requests are answered at once.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FunctionProcess, postJson, startFunction, unique } from '../support/helpers.js';

const SLOW = 1000;
let fn: FunctionProcess;
beforeAll(async () => {
  fn = await startFunction('ingest', {
    STREAM_KEY: unique('test:slow'),
    HEADERS_TIMEOUT_MS: '2000',
    REQUEST_TIMEOUT_MS: '4000',
  });
});
afterAll(async () => {
  await fn?.kill('SIGKILL');
});

describe('slow clients', () => {
  it(`cannot hold the worker: ${SLOW} trickling connections are cut, normal requests go on`, async () => {
    const port = Number(new URL(fn.url).port);
    const closedAfter: number[] = [];
    const sockets: Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    const started = Date.now();
    for (let i = 0; i < SLOW; i++) {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('close', () => closedAfter.push(Date.now() - started));
      sockets.push(socket);
      if (i % 2 === 0) {
        // Headers, one line every 300 ms, never finished.
        socket.write('POST /events HTTP/1.1\r\nHost: x\r\n');
        timers.push(setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 300));
      } else {
        // Headers complete, then a body of 1000 bytes, one byte every 300 ms.
        socket.write(
          'POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
        );
        timers.push(setInterval(() => socket.writable && socket.write(' '), 300));
      }
    }
    // Normal requests, while the slow ones are all open.
    const latencies: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      const res = await postJson(`${fn.url}/events`, { type: 'fast', data: i });
      latencies.push(performance.now() - t);
      expect(res.status).toBe(202);
    }
    latencies.sort((a, b) => a - b);
    expect(latencies[94]).toBeLessThan(250);
    // Every slow connection is cut by the server: headers after ~2 s, bodies after ~4 s.
    const deadline = Date.now() + 15_000;
    while (closedAfter.length < SLOW && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    const cutByServer = [...closedAfter].sort((a, b) => a - b);
    for (const timer of timers) clearInterval(timer);
    for (const socket of sockets) socket.destroy();
    expect(cutByServer.length).toBe(SLOW);
    expect(cutByServer.at(-1)).toBeLessThan(4000 + 3000);
    // And the worker is still there.
    expect((await postJson(`${fn.url}/events`, { type: 'after', data: 1 })).status).toBe(202);
  }, 60_000);
});
