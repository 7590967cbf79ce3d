/**
 * Redis 7 is checked, not assumed: scripts/services.sh stops on an older
 * redis-server with a message naming what it found and how to get 7, and the
 * functions check the server they connect to (on 6.x ingest's script failed
 * after its XADD: an event stored, answered 503, and stored again on retry).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../functions/shared/logger.js';
import {
  createRedis,
  redisVersionOf,
  requireRedisVersion,
} from '../../functions/shared/redis/client.js';
import { redisUrl } from '../support/helpers.js';
import { ROOT } from '../support/programs.js';

describe('scripts/services.sh', () => {
  it('stops on a Redis older than 7, naming the version it found and how to get 7', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spillway-redis6-'));
    // What Ubuntu 22.04's redis-server prints.
    writeFileSync(
      join(dir, 'redis-server'),
      '#!/bin/sh\necho "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=a3fdef44459b3ad6"\n',
      { mode: 0o755 },
    );
    try {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PATH: `${dir}:${process.env.PATH}`,
        SPILLWAY_DATA_DIR: join(dir, 'data'),
        SPILLWAY_REDIS_PORT: '6499',
      };
      delete env.REDIS_URL;
      const out = spawnSync('bash', ['scripts/services.sh', 'up', 'redis'], {
        cwd: ROOT,
        env,
        encoding: 'utf8',
      });
      expect(out.status).toBe(1);
      expect(out.stderr).toContain('Redis 7 or newer is needed, found 6.0.16');
      expect(out.stderr).toContain('packages.redis.io');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the functions' check of the server", () => {
  it.each([
    ['redis_version:7.0.15\r\nredis_git_sha1:0', '7.0.15', true],
    ['redis_version:8.2.1\r\n', '8.2.1', true],
    ['redis_version:6.2.14\r\n', '6.2.14', false],
    ['redis_version:6.0.16\r\n', '6.0.16', false],
    ['no version here', 'unknown', false],
  ])('reads %j as %s (supported: %s)', (info, version, supported) => {
    expect(redisVersionOf(info)).toEqual({ version, supported });
  });

  it('lets a process run on the real Redis 7 this suite uses', async () => {
    const redis = createRedis(redisUrl());
    redis.on('error', () => undefined);
    let exited: number | undefined;
    requireRedisVersion(redis, createLogger('test', 'silent'), ((code: number) => {
      exited = code;
    }) as never);
    await new Promise<void>((resolve) => redis.once('ready', () => resolve()));
    const info = await redis.info('server');
    await new Promise((r) => setTimeout(r, 100));
    expect(redisVersionOf(info).supported).toBe(true);
    expect(exited).toBeUndefined();
    redis.disconnect();
  });
});
