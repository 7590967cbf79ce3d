/**
 * `npm run bench:persist`: the persist scenario alone (bench/scenarios/persist.ts),
 * printed as a table. `npm run bench -- persist` runs the same scenario with the
 * charts and the report.
 *
 * Flags: --seconds N (a, a′, b; default 15), --push N (c; default 40000),
 * --backlog N (d; default 1000000), --lag-seconds N (default 30).
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
    },
    lineUi,
  );
  process.stdout.write(`\n${persistText(result)}\n`);
}

runIfEntryPoint(import.meta.url, 'bench:persist', main);
