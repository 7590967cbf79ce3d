/** A redis-server of a test's own (scripts/services.sh installed the binary), on its own port. */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { Redis } from 'ioredis';

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

export interface OwnRedis {
  url: string;
  client: Redis;
  stop(): Promise<void>;
}

let nextPort = 21_000 + (process.pid % 4000) * 2;

export async function startRedisServer(args: string[] = []): Promise<OwnRedis> {
  const port = nextPort++;
  const proc: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (proc.exitCode !== null || Date.now() > deadline)
      throw new Error(`redis-server on ${port} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  await client.ping();
  return {
    url,
    client,
    async stop() {
      client.disconnect();
      if (proc.exitCode === null) {
        proc.kill('SIGKILL');
        await new Promise((r) => proc.once('exit', r));
      }
    },
  };
}
