/**
 * Runs a module's main() when the module is the process's entry point (not when
 * a test imports it), and ends the process with one clear line when it fails: a
 * configuration error names the variable, anything else shows its stack.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ConfigError } from './env.js';

export function runIfEntryPoint(moduleUrl: string, name: string, main: () => Promise<void>): void {
  const entry = process.argv[1];
  if (entry === undefined || pathToFileURL(realpathSync(entry)).href !== moduleUrl) return;
  main().catch((error: unknown) => {
    const message =
      error instanceof ConfigError
        ? `configuration error: ${error.message}`
        : String((error as Error)?.stack ?? error);
    process.stderr.write(`${name}: ${message}\n`);
    process.exit(1);
  });
}
