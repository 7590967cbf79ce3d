import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { projectTool } from '../support/tools.js';
import { loadYaml, type Manifest, ROOT } from './support.js';

let kustomize = '';

beforeAll(() => {
  // go install on first use: may compile for a minute or two
  kustomize = projectTool('kustomize');
}, 600_000);

function build(folder: string): Manifest[] {
  const out = execFileSync(kustomize, ['build', join(ROOT, folder)], { encoding: 'utf8' });
  return parseAllDocuments(out).map((doc) => doc.toJS() as Manifest);
}

function source(folder: string): Manifest[] {
  const [kustomization] = loadYaml(`${folder}/kustomization.yaml`) as [Manifest];
  return kustomization.resources.flatMap((file: string) => loadYaml(`${folder}/${file}`));
}

const key = (m: Manifest) => `${m.kind}/${m.metadata.namespace}/${m.metadata.name}`;

describe.each(['knative', 'eventing'])('kustomize build %s', (folder) => {
  it('renders every object of the folder, in namespace spillway, unchanged', () => {
    expect(kustomize).toMatch(/kustomize-v5\.7\.1\/kustomize$/);
    const rendered = build(folder);
    const expected = source(folder);
    expect(rendered.map(key).sort()).toEqual(expected.map(key).sort());
    for (const object of rendered) {
      expect(object.metadata.namespace).toBe('spillway');
      expect(object).toEqual(expected.find((e) => key(e) === key(object)));
    }
  });
});

describe('the knative kustomization', () => {
  it('renders both functions', () => {
    const services = build('knative').filter((m) => m.apiVersion === 'serving.knative.dev/v1');
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['ingest', 'persist']);
  });
});
