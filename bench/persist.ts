/**
 * `npm run bench:persist`: the persist scenario alone (bench/scenarios/persist.ts),
 * printed as a table. `npm run bench -- persist` runs the same scenario with the
 * charts and the report.
 *
 * Flags: --seconds N (a, a′, b; default 15), --push N (c; default 40000),
 * --backlog N (d; default 1000000), --lag-seconds N (default 30), --replicas N
 * (e; default 3, below 2 skips it), --no-adaptive (skips the adaptive run),
 * --adaptive-rate N (events/s fed during the adaptive run; default 1000).
 */
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { lineUi } from './common.js';
import { FULL_PERSIST, persistText, runPersistScenario } from './scenarios/persist.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string, fallback: number) => {
    const i = args.indexOf(`--${name}`);
    return i === -1 ? fallback : Number(args[i + 1]);
  };
  const result = await runPersistScenario(
    {
      seconds: flag('seconds', FULL_PERSIST.seconds),
      push: flag('push', FULL_PERSIST.push),
      backlog: flag('backlog', FULL_PERSIST.backlog),
      lagSeconds: flag('lag-seconds', FULL_PERSIST.lagSeconds),
      replicas: flag('replicas', FULL_PERSIST.replicas),
      adaptive: args.includes('--no-adaptive') ? [] : FULL_PERSIST.adaptive,
      adaptiveRate: flag('adaptive-rate', FULL_PERSIST.adaptiveRate),
    },
    lineUi,
  );
  process.stdout.write(`\n${persistText(result)}\n`);
}

runIfEntryPoint(import.meta.url, 'bench:persist', main);
