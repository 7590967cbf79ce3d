/**
 * `npm run docs:settings`: prints the README's configuration table from the
 * settings catalogue (functions/shared/settings.ts); with --write, replaces the
 * table in README.md. A test keeps the two in step.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { runIfEntryPoint } from '../functions/shared/entrypoint.js';
import { SETTINGS, type Setting } from '../functions/shared/settings.js';

function shown(value: unknown): string {
  if (Array.isArray(value) || value === '') return 'empty';
  return typeof value === 'string' ? `\`${value}\`` : String(value);
}

export function settingsTable(): string {
  const rows = ['| variable | read by | unit | default | meaning |', '|---|---|---|---|---|'];
  for (const [name, setting] of Object.entries(SETTINGS) as Array<[string, Setting<unknown>]>)
    rows.push(
      `| \`${name}\` | ${setting.parts.join(', ')} | ${setting.unit} | ${shown(setting.fallback)} | ${setting.doc} |`,
    );
  return rows.join('\n');
}

runIfEntryPoint(import.meta.url, 'docs:settings', async () => {
  const table = settingsTable();
  if (!process.argv.includes('--write')) {
    process.stdout.write(`${table}\n`);
    return;
  }
  const readme = readFileSync('README.md', 'utf8');
  const start = readme.indexOf('| variable | read by |');
  const end = readme.indexOf('\n\n', start);
  if (start === -1 || end === -1) throw new Error('README.md has no configuration table');
  writeFileSync('README.md', `${readme.slice(0, start)}${table}${readme.slice(end)}`);
});
