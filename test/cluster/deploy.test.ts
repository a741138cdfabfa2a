/**
 * What operators deploy is what runs: `k8s/` is applied with kubectl's own kustomize (through a
 * test overlay), every object passes a server-side dry-run, the controller Deployment's pods
 * run through the node agent on the standard in-cluster path (projected ServiceAccount token,
 * so the Role in k8s/ is what holds them), and a whole chat session goes through them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isReady, type Pod } from './fixture.js';
import { isNotFound, Kube } from './kube.js';
import { clusterDir, kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

const NS = 'warmpool';
const overlay = join(clusterDir, 'deploy-overlay');

/**
 * On the node agent every pod shares the host's network, so two controller replicas would both
 * bind 0.0.0.0:8080; each binds its own pod IP instead. Nothing else of k8s/ is changed.
 */
const KUSTOMIZATION = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../../k8s]
patches:
  - target: {kind: Deployment, name: warmpool-controller}
    patch: |
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: LISTEN_HOST, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
`;

function kubectl(...args: string[]): string {
  return execFileSync(join(clusterDir, 'kubectl'), args, { env: { ...process.env, KUBECONFIG: kubeconfigPath }, encoding: 'utf8' });
}

describe('deploying k8s/ with kubectl apply -k', () => {
  let kube: Kube;
  const pods = async (selector: string): Promise<Pod[]> =>
    (await kube.get<{ items: Pod[] }>(`/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(selector)}`)).items;

  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    kube = Kube.fromKubeconfig(kubeconfigPath);
    mkdirSync(overlay, { recursive: true });
    writeFileSync(join(overlay, 'kustomization.yaml'), KUSTOMIZATION);
  });

  after(async () => {
    await kube.delete(`/api/v1/namespaces/${NS}`).catch(() => undefined);
    await waitUntil('the namespace is gone', () => kube.get(`/api/v1/namespaces/${NS}`).then(() => undefined, (err: unknown) => (isNotFound(err) ? true : Promise.reject(err))), 120_000).catch(() => undefined);
    kube.close();
    rmSync(overlay, { recursive: true, force: true });
  });

  test('when every object is sent as a server-side dry-run, then the API server accepts each one', () => {
    // The namespace must exist for the namespaced objects to be validated against it.
    kubectl('create', 'namespace', NS);
    const out = kubectl('apply', '-k', overlay, '--dry-run=server');
    const lines = out.trim().split('\n');
    for (const kind of ['serviceaccount/warmpool-controller', 'role.rbac.authorization.k8s.io/warmpool-controller', 'configmap/warmpool-config', 'service/warmpool', 'deployment.apps/warmpool-controller', 'deployment.apps/chatbot-worker', 'poddisruptionbudget.policy/warmpool-controller']) {
      assert.ok(lines.some((l) => l.startsWith(kind) && l.includes('(server dry run)')), `${kind} passes: ${out}`);
    }
    assert.ok(lines.every((l) => l.includes('(server dry run)')), out);
  });

  test('when k8s/ is applied, then the controller pods turn ready and a chat session works through them', async () => {
    kubectl('apply', '-k', overlay);
    const controllers = await waitUntil('2 controller pods are Ready', async () => {
      const ready = (await pods('app.kubernetes.io/name=warmpool-controller')).filter(isReady);
      return ready.length === 2 ? ready : undefined;
    }, 180_000);
    await waitUntil('3 warm workers', async () => ((await pods('app.kubernetes.io/name=chatbot-worker,assigned=not_assigned')).filter(isReady).length >= 3 ? true : undefined), 180_000);
    const [a, b] = controllers.map((p) => `http://${p.status?.podIP}:8080`) as [string, string];
    const created = await fetch(`${a}/sessions`, { method: 'POST' });
    assert.equal(created.status, 201, await created.clone().text());
    const { id } = (await created.json()) as { id: string };
    for (const [base, message] of [[a, 'hello through replica a'], [b, 'and through replica b']] as const) {
      const res = await fetch(`${base}/sessions/${id}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message }) });
      assert.equal(res.status, 200, await res.clone().text());
    }
    const history = (await (await fetch(`${b}/sessions/${id}/history`)).json()) as { turns: { message: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), ['hello through replica a', 'and through replica b']);
    assert.equal((await fetch(`${a}/sessions/${id}`, { method: 'DELETE' })).status, 204);
    await waitUntil('the session\'s pod is gone', async () => ((await pods('assigned=assigned')).filter((p) => !p.metadata.deletionTimestamp).length === 0 ? true : undefined), 60_000);
  });
});
