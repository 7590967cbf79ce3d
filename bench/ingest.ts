/**
 * `npm run bench:ingest`: the ingest scenario alone (bench/scenarios/ingest.ts),
 * printed as a table, written to bench/results/ingest-<timestamp>.json.
 * `npm run bench -- ingest` runs the same scenario with the charts and the report.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileStamp, lineUi } from './common.js';
import { repoRoot } from './profile.js';
import {
  FULL_INGEST,
  type IngestOptions,
  ingestText,
  killIngestChildren,
  runIngestScenario,
  SERVERS,
  type ServerId,
} from './scenarios/ingest.js';
import { ingestTargets, targetsText } from './targets.js';

const INGEST_USAGE = `usage: npm run bench:ingest -- [options]
  --saturation-sec N   measured seconds of the closed-loop run per server (default 15; 0 skips)
  --paced-sec N        measured seconds of steady paced load per server (default 60; 0 skips)
  --vus N              paced virtual users, one connection each (default 10000)
  --connections N      connections of the saturation run (default 10000)
  --only LIST          servers to run, of a,b,c,c',d,w (default all; c2 = c')
  --warmup-sec N       closed loop: seconds between the last connection and the window (default 3)
  --connect-per-tick N connections opened per 100 ms while ramping up (default 250)
  --profile            run (c) once more at the reference load under node --cpu-prof`;

/** Parses the ingest scenario's flags over FULL_INGEST; exits with the usage on a bad one. */
function parseIngestFlags(args: string[]): IngestOptions {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      'saturation-sec': { type: 'string', default: String(FULL_INGEST.saturationSec) },
      'paced-sec': { type: 'string', default: String(FULL_INGEST.pacedSec) },
      vus: { type: 'string', default: String(FULL_INGEST.vus) },
      connections: { type: 'string', default: String(FULL_INGEST.connections) },
      only: { type: 'string', default: FULL_INGEST.only.join(',') },
      'warmup-sec': { type: 'string', default: String(FULL_INGEST.warmupSec) },
      'connect-per-tick': { type: 'string', default: String(FULL_INGEST.connectPerTick) },
      profile: { type: 'boolean', default: FULL_INGEST.profile },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(INGEST_USAGE);
    process.exit(0);
  }
  const num = (name: keyof typeof values, min: number) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < min) {
      console.error(`--${name} must be a number ≥ ${min}\n${INGEST_USAGE}`);
      process.exit(2);
    }
    return value;
  };
  const only = String(values.only)
    .split(',')
    .map((id) => id.trim().replace("c'", 'c2'))
    .filter((id) => id !== '');
  for (const id of only) {
    if (!(id in SERVERS)) {
      console.error(`--only: unknown server ${id}\n${INGEST_USAGE}`);
      process.exit(2);
    }
  }
  return {
    saturationSec: num('saturation-sec', 0),
    pacedSec: num('paced-sec', 0),
    vus: Math.floor(num('vus', 1)),
    connections: Math.floor(num('connections', 1)),
    only: (Object.keys(SERVERS) as ServerId[]).filter((id) => only.includes(id)),
    warmupSec: num('warmup-sec', 0),
    connectPerTick: Math.floor(num('connect-per-tick', 1)),
    profile: values.profile === true,
  };
}

async function main(): Promise<void> {
  const opts = parseIngestFlags(process.argv.slice(2));
  const resultsDir = join(repoRoot(), 'bench', 'results');
  const stamp = fileStamp(new Date());
  const result = await runIngestScenario(opts, lineUi, { resultsDir, stamp });
  const targets = ingestTargets(result);
  const resultFile = join(resultsDir, `ingest-${stamp}.json`);
  console.log(
    `\n${ingestText(result)}\n\nTargets (ratios to bare node:http and the framework, same run):\n${targetsText(targets)}\n\nResults: ${resultFile}`,
  );
  writeFileSync(resultFile, `${JSON.stringify({ ...result, targets }, null, 2)}\n`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killIngestChildren();
    process.exit(130);
  });
}
process.on('exit', killIngestChildren);

main().catch((error: unknown) => {
  killIngestChildren();
  process.stderr.write(`bench:ingest failed: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
