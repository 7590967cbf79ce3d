/**
 * Makes sure the local Redis and MongoDB-wire server run (scripts/services.sh, which
 * installs them when missing) and hands their URLs to every test file.
 */
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  const out = execFileSync('bash', ['scripts/services.sh', 'up'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  for (const line of out.split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] && match[2] !== undefined) process.env[match[1]] = match[2];
  }
  if (!process.env.REDIS_URL || !process.env.MONGODB_URL)
    throw new Error(`services did not print their URLs:\n${out}`);
}
