/** Runs scripts/services.sh (idempotent) and returns the variables it printed. */
import { execFileSync } from 'node:child_process';

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
