/**
 * Shared by the cluster tests: the repository's paths, YAML loading, the
 * scripts' dry-run plans split into shell words.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function read(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field
export type Manifest = Record<string, any> & { apiVersion: string; kind: string };

export interface LoadedManifest {
  file: string;
  object: Manifest;
}

/** The YAML files directly in the given folders (not eventing/relay/), relative to the repository. */
export function yamlFiles(...folders: string[]): string[] {
  return folders.flatMap((folder) =>
    readdirSync(join(ROOT, folder), { encoding: 'utf8' })
      .filter((name) => name.endsWith('.yaml') || name.endsWith('.yml'))
      .map((name) => relative(ROOT, join(ROOT, folder, name)))
      .sort(),
  );
}

/** Parses every document of a YAML file; a syntax error throws, naming the file. */
export function loadYaml(file: string): Manifest[] {
  return parseAllDocuments(read(file)).flatMap((doc) => {
    if (doc.errors.length > 0) {
      throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    }
    const value = doc.toJS();
    return value === null || value === undefined ? [] : [value as Manifest];
  });
}

/** The Kubernetes objects of the deployment (k3d.yaml is not one). */
export const MANIFEST_DIRS = ['knative', 'eventing', 'cluster'] as const;

export function loadManifests(): LoadedManifest[] {
  return yamlFiles(...MANIFEST_DIRS)
    .filter((file) => file !== 'cluster/k3d.yaml')
    .flatMap((file) => loadYaml(file).map((object) => ({ file, object })));
}

export function find(kind: string, name: string): Manifest {
  const found = loadManifests().filter(
    (m) => m.object.kind === kind && m.object.metadata?.name === name,
  );
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return (found[0] as LoadedManifest).object;
}

/** Splits one shell command line into words: plain words and '…' quoting. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote in: ${line}`);
      word += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Runs a script with --dry-run and returns its plan: one command per line. */
export function dryRun(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): string[][] {
  const out = execFileSync('bash', [join(ROOT, script), '--dry-run', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(shellWords);
}

export function container(service: Manifest): Manifest {
  const containers = service.spec?.template?.spec?.containers;
  if (!Array.isArray(containers) || containers.length !== 1) {
    throw new Error(`${service.metadata?.name}: expected exactly one container`);
  }
  return containers[0] as Manifest;
}

/** KEY=value lines of an env file, comments and blanks skipped. */
export function parseEnvFile(text: string): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const eq = trimmed.indexOf('=');
    if (eq < 0) throw new Error(`not KEY=value: ${line}`);
    entries[trimmed.slice(0, eq)] = trimmed.slice(eq + 1);
  }
  return entries;
}
