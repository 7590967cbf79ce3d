/**
 * A database server of a test's own: scripts/services.sh with a data dir and
 * ports of its own (mongod when on PATH, else FerretDB), started late, frozen
 * or stopped by the test without touching the database the other tests share.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './programs.js';

/** A port nothing listens on now (the kernel's pick). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

export class DatabaseServer {
  private readonly dataDir = mkdtempSync(join(tmpdir(), 'spillway-db-'));

  private constructor(
    readonly port: number,
    private readonly debugPort: number,
  ) {}

  /** A server on free ports, not started yet: its URL names a port nothing listens on. */
  static async create(): Promise<DatabaseServer> {
    return new DatabaseServer(await freePort(), await freePort());
  }

  get url(): string {
    return `mongodb://127.0.0.1:${this.port}/`;
  }

  private run(command: 'up' | 'stop'): void {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SPILLWAY_DATA_DIR: this.dataDir,
      SPILLWAY_DB_PORT: String(this.port),
      SPILLWAY_DB_DEBUG_PORT: String(this.debugPort),
      // No blkio group: this test is about reaching the server, not its disk.
      DB_IOPS: '0',
    };
    // services.sh uses a service whose URL is set: the shared Redis is, the database is not.
    delete env.MONGODB_URL;
    if (!env.REDIS_URL) throw new Error('REDIS_URL is not set');
    execFileSync('bash', [join(ROOT, 'scripts/services.sh'), command], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  }

  /** Starts it; returns once it listens. */
  start(): void {
    this.run('up');
  }

  pid(): number {
    return Number(readFileSync(join(this.dataDir, 'db.pid'), 'utf8').trim());
  }

  /** SIGSTOP: it keeps its port (the kernel accepts connections) and answers nothing. */
  freeze(): void {
    process.kill(this.pid(), 'SIGSTOP');
  }

  thaw(): void {
    process.kill(this.pid(), 'SIGCONT');
  }

  /** Stops it and removes its data. */
  remove(): void {
    try {
      this.thaw();
    } catch {
      // not running
    }
    this.run('stop');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
