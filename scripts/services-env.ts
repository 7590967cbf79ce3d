/**
 * What scripts/services.sh sets up, from TypeScript: running it (idempotent) for
 * the variables it prints, and changing the IOPS limit of the blkio group it
 * made for the database.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function ensureServices(): Record<string, string> {
  const out = execFileSync('bash', ['scripts/services.sh', 'up'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const env: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] && match[2] !== undefined) env[match[1]] = match[2];
  }
  if (!env.REDIS_URL || !env.MONGODB_URL)
    throw new Error(`services did not print their URLs:\n${out}`);
  return env;
}

/**
 * Sets a blkio group's read and write IOPS limit (`<device> <iops>` to its
 * blkio.throttle.write_iops_device and read_iops_device), on the device the
 * group already names, as scripts/services.sh made it.
 */
export function setBlkioIops(cgroup: string, iops: number): void {
  for (const file of ['blkio.throttle.write_iops_device', 'blkio.throttle.read_iops_device']) {
    const path = join(cgroup, file);
    const device = readFileSync(path, 'utf8').trim().split(/\s+/)[0];
    if (!device) throw new Error(`${path} names no device`);
    writeFileSync(path, `${device} ${iops}\n`);
  }
}
