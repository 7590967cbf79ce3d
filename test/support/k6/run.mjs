// Loads a k6 script in Node the way k6 would (init context: __ENV, open();
// then setup() and ITERATIONS runs of the default function as VU 1..VUS) and
// prints what it exported and did, as one JSON object:
//   node --import ./register.mjs run.mjs SCRIPT
// K6_ENV: the script's __ENV (JSON), K6_VUS / K6_ITERATIONS: how many runs.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { calls } from './k6.mjs';

const script = resolve(process.argv[2]);
globalThis.__ENV = JSON.parse(process.env.K6_ENV ?? '{}');
globalThis.__VU = 0;
globalThis.__ITER = 0;
// k6's open() reads relative to the script, in the init context only.
globalThis.open = (path) => readFileSync(resolve(dirname(script), path), 'utf8');

const out = { calls };
try {
  const module = await import(pathToFileURL(script).href);
  out.options = module.options;
  globalThis.open = () => {
    throw new Error('open() is only available in the init context');
  };
  module.setup?.();
  const vus = Number(process.env.K6_VUS ?? 1);
  const iterations = Number(process.env.K6_ITERATIONS ?? 0);
  for (let i = 0; i < iterations; i++) {
    globalThis.__VU = (i % vus) + 1;
    globalThis.__ITER = Math.floor(i / vus);
    module.default();
  }
} catch (error) {
  out.error = error instanceof Error ? error.message : String(error);
}
process.stdout.write(JSON.stringify(out));
