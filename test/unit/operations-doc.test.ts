/**
 * docs/operations.md and the README's Deploy section name metrics, objects and settings; these
 * tests keep those names in step with the code and k8s/, so an operator's copy-paste works.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { CONFIG_KEYS, parseConfig } from '../../controller/src/config.js';
import { CLAIM_RESULTS, createMetrics, END_REASONS } from '../../controller/src/metrics.js';

const read = (p: string) => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');
const doc = read('docs/operations.md');
const readme = read('README.md');
const deploySection = readme.slice(readme.indexOf('## Deploy\n'), readme.indexOf('\n## ', readme.indexOf('## Deploy\n') + 1));

interface Obj { kind?: string; metadata?: { name?: string; namespace?: string }; data?: Record<string, string>; spec?: { replicas?: number }; patches?: { patch: string }[] }

function yamlBlocks(text: string): Obj[][] {
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map(([, body]) => {
    const docs = parseAllDocuments(body as string);
    assert.ok(Array.isArray(docs), 'a YAML stream');
    for (const d of docs) assert.deepEqual(d.errors.map((e) => e.message), [], `parses:\n${body}`);
    return docs.map((d) => d.toJS() as Obj);
  });
}

/** kind/name of every object in k8s/ and its example second pool, as kubectl names them in commands. */
function manifestObjects(): Set<string> {
  const names = new Set<string>();
  for (const file of ['controller.yaml', 'worker-pool.yaml', 'service.yaml', 'config.yaml', 'examples/second-pool/worker-pool-small.yaml']) {
    for (const d of parseAllDocuments(read(`k8s/${file}`)) as ReturnType<typeof parseAllDocuments> & unknown[]) {
      const o = d.toJS() as Obj;
      names.add(`${o.kind}/${o.metadata?.name}`);
    }
  }
  return names;
}

describe('operations documentation', () => {
  test('when every YAML block of docs/operations.md is parsed, then none has an error', () => {
    assert.ok(yamlBlocks(doc).length >= 3, 'the overlay, PodMonitor and PrometheusRule examples are there');
  });

  test('when the docs name a warmpool_ metric, then the controller registers it', async () => {
    const metrics = createMetrics();
    const known = new Set<string>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      known.add(m.name);
      if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) known.add(m.name + s);
    }
    const named = new Set([...doc.matchAll(/\bwarmpool_[a-z_]+/g)].map(([n]) => n));
    assert.ok(named.size >= 6, 'the sizing section and the alerts use the metrics');
    assert.deepEqual([...named].filter((n) => !known.has(n)), []);
  });

  test('when the overlay example is read, then it patches objects that k8s/ defines, with known settings at valid values, and leaves the pool replicas to the controller', () => {
    const overlay = yamlBlocks(doc).flat().find((o) => o.patches);
    assert.ok(overlay, 'an overlay with patches');
    const patches = (overlay.patches ?? []).map((p) => parseAllDocuments(p.patch) as unknown as { toJS(): Obj }[]).flat().map((d) => d.toJS());
    const defined = manifestObjects();
    for (const p of patches) {
      assert.ok(defined.has(`${p.kind}/${p.metadata?.name}`), `${p.kind}/${p.metadata?.name} is in k8s/`);
      assert.equal(p.metadata?.namespace, 'warmpool', 'a patch names the namespace, or kustomize finds no target');
    }
    const data = patches.find((p) => p.kind === 'ConfigMap')?.data ?? {};
    assert.deepEqual(Object.keys(data).filter((k) => !(k in CONFIG_KEYS)), []);
    assert.equal(parseConfig(data).POOL_SIZE, 10);
    assert.deepEqual(patches.filter((p) => p.kind === 'Deployment' && p.spec?.replicas !== undefined), []);
  });

  test('when kubectl commands in the docs and the README name a Deployment or Service, then k8s/ defines it', () => {
    const defined = manifestObjects();
    const kinds: Record<string, string> = { deployment: 'Deployment', deploy: 'Deployment', svc: 'Service' };
    const named = [...(doc + deploySection).matchAll(/(?<![\w./-])(deployment|deploy|svc)\/([a-z0-9-]+)/g)].map(([, k, n]) => `${kinds[k as string]}/${n}`);
    assert.ok(named.length >= 5, 'the commands are found');
    assert.deepEqual(named.filter((n) => !defined.has(n)), []);
  });
});

describe('metric label values', () => {
  const labelRows = (table: string) => new Set([...read('docs/operations.md').split(`| ${table} | meaning |`)[1]?.split('\n\n')[0]?.matchAll(/^\| `([a-z_]+)` \|/gm) ?? []].map((m) => m[1]));

  test('when the code can count a claim result or an end reason, then docs/operations.md explains it, and explains nothing else', () => {
    assert.deepEqual([...labelRows('result')].sort(), [...CLAIM_RESULTS].sort());
    assert.deepEqual([...labelRows('reason')].sort(), [...END_REASONS].sort());
  });
});
