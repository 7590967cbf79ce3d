/**
 * No function of the product, nor of its benchmarks, is longer than about a
 * screen (60 lines): a function that does one job fits. Measured on the syntax
 * tree (TypeScript's parser): from a function's first line to its last, nested
 * ones included.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT, tsFiles } from '../support/files.js';

const MAX_LINES = 60;

/** Every function's length in lines, with where it is. */
function functionLengths(file: string): Array<{ where: string; lines: number }> {
  const source = ts.createSourceFile(
    file,
    readFileSync(join(ROOT, file), 'utf8'),
    ts.ScriptTarget.Latest,
    true,
  );
  const out: Array<{ where: string; lines: number }> = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart()).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const name = node.name?.getText(source) ?? '(anonymous)';
      out.push({ where: `${file}:${first + 1} ${name}`, lines: last - first + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

describe.each(['functions', 'bench'])('%s/', (folder) => {
  it(`has functions of at most ${MAX_LINES} lines each`, () => {
    const all = tsFiles(folder).flatMap(functionLengths);
    expect(all.length).toBeGreaterThan(100);
    const longest = [...all].sort((a, b) => b.lines - a.lines).slice(0, 5);
    console.log(
      `longest functions in ${folder}/:`,
      longest.map((f) => `${f.lines} ${f.where}`).join('; '),
    );
    expect(all.filter((f) => f.lines > MAX_LINES)).toEqual([]);
  });
});
