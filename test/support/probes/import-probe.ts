/**
 * Imports the modules named on the command line, waits a moment, and prints
 * (as one JSON line) the kinds of resource that keep the process alive
 * (process.getActiveResourcesInfo): a socket, a timer, a server. Importing a
 * module that starts nothing adds none.
 */
import { pathToFileURL } from 'node:url';

const count = () => {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo())
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
};
const before = count();
for (const file of process.argv.slice(2)) await import(pathToFileURL(file).href);
await new Promise((resolve) => setImmediate(resolve));
const added: string[] = [];
for (const [kind, n] of count()) for (let i = before.get(kind) ?? 0; i < n; i++) added.push(kind);
process.stdout.write(`${JSON.stringify({ added })}\n`);
process.exit(0);
