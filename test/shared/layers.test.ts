/**
 * Where each part lives and what it may import (docs/architecture.md): every
 * relative import of the product's code stays inside what its folder may use.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tsFiles } from '../support/files.js';

const RULES: Array<{ folder: string; may: string[] }> = [
  { folder: 'functions/shared', may: ['functions/shared'] },
  { folder: 'functions/ingest', may: ['functions/ingest', 'functions/shared'] },
  { folder: 'functions/persist', may: ['functions/persist', 'functions/shared'] },
  {
    folder: 'functions/host',
    may: [
      'functions/host',
      'functions/shared',
      'functions/ingest/ingest.ts',
      'functions/ingest/config.ts',
      'functions/persist/persist.ts',
      'functions/persist/config.ts',
    ],
  },
  { folder: 'eventing', may: ['eventing', 'functions/shared'] },
  { folder: 'scripts', may: ['scripts', 'functions/shared'] },
];

/** The project files a module imports (relative specifiers, statically or dynamically). */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map(
    (m) => m[1] as string,
  );
  return specifiers.map((s) =>
    relative(ROOT, resolve(ROOT, dirname(file), s)).replace(/\.js$/, '.ts'),
  );
}

describe('layers', () => {
  for (const rule of RULES) {
    it(`${rule.folder} imports only ${rule.may.join(', ')}`, () => {
      const modules = tsFiles(rule.folder);
      expect(modules.length).toBeGreaterThan(0);
      const broken = modules.flatMap((file) =>
        imports(file)
          .filter((target) => !rule.may.some((m) => target === m || target.startsWith(`${m}/`)))
          .map((target) => `${file} → ${target}`),
      );
      expect(broken).toEqual([]);
    });
  }
});
