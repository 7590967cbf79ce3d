/**
 * A stand-in persist replica for the shared write budget's tests: writes under a
 * SharedBudget with simulated latencies until a given time, and prints one JSON
 * line per write (start and answer in ms on the machine's monotonic clock, mode, rate) to
 * stdout, next to its own pino logs. Configured by WRITER_CONFIG (WriterConfig).
 */

import { SharedBudget } from '../../functions/persist/shared-budget.js';
import { createLogger } from '../../functions/shared/logger.js';
import { createRedis } from '../../functions/shared/redis/client.js';
import { clock } from './budget-writers.js';

export interface WriterConfig {
  name: string;
  redisUrl: string;
  key: string;
  ceiling: number;
  floor: number;
  targetMs: number;
  maxReplicas: number;
  leaseMs: number;
  /**
   * Simulated write latency in [min, max] ms: spread evenly (a golden-ratio
   * sequence from a random start), so runs of a few dozen writes have about the
   * same mean latency whichever process makes them.
   */
  latencyMs: [number, number];
  /** Epoch ms to start and stop writing at. */
  startAt: number;
  endAt: number;
  /** The write with this index (0-based) never ends: the writer holds the lease until killed. */
  hangAt?: number;
}

/** What the writer prints, one JSON object a line. */
export type WriterLine =
  | { kind: 'write'; name: string; start: number; answer: number; mode: string; rate: number }
  | { kind: 'holding'; name: string; at: number }
  | { kind: 'done'; name: string };

const print = (line: WriterLine) => process.stdout.write(`${JSON.stringify(line)}\n`);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const config = JSON.parse(process.env.WRITER_CONFIG as string) as WriterConfig;
const log = createLogger(config.name, 'info');
// Reconnects every 100 ms (persist backs off up to 2 s), so that a test of Redis
// coming back measures the budget's return rather than the client's backoff.
const redis = createRedis(config.redisUrl, { retryStrategy: () => 100 });
redis.on('error', () => undefined);
/** Writes answered, waiting for their release to tell the budget they were made under. */
const answered: Array<{ start: number; answer: number }> = [];
const budget = new SharedBudget({
  redis,
  key: config.key,
  ceiling: config.ceiling,
  floor: config.floor,
  targetMs: config.targetMs,
  maxReplicas: config.maxReplicas,
  leaseMs: config.leaseMs,
  log,
  onWrite: (write) => {
    const times = answered.shift();
    if (times)
      print({ kind: 'write', name: config.name, ...times, mode: write.mode, rate: write.rate });
  },
});

await sleep(Math.max(0, config.startAt - Date.now()));
const [low, high] = config.latencyMs;
let spread = Math.random();
for (let i = 0; Date.now() < config.endAt; i++) {
  spread = (spread + 0.6180339887) % 1;
  const latency = low + spread * (high - low);
  await budget.run(async () => {
    const start = clock();
    if (i === config.hangAt) {
      print({ kind: 'holding', name: config.name, at: start });
      await new Promise(() => undefined);
    }
    await sleep(latency);
    answered.push({ start, answer: clock() });
  });
}
await budget.close();
print({ kind: 'done', name: config.name });
redis.disconnect();
