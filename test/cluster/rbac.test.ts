/**
 * The loopback cluster enforces RBAC for ServiceAccount tokens, so a process run with
 * serviceAccountKubeconfig() is held to the roles it is granted (and nothing more).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiError, Kube, serviceAccountKubeconfig } from './kube.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

const NS = 'rbac-check';
const SA = 'reader';

describe('loopback cluster: ServiceAccount tokens and RBAC', () => {
  let admin: Kube;
  let asReader: Kube;
  const dir = mkdtempSync(join(tmpdir(), 'warmpool-rbac-'));

  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    admin = Kube.fromKubeconfig(kubeconfigPath);
    await admin.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await admin.create(`/api/v1/namespaces/${NS}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: SA } });
    const cfg = join(dir, 'kubeconfig');
    writeFileSync(cfg, await serviceAccountKubeconfig(admin, NS, SA));
    asReader = Kube.fromKubeconfig(cfg);
  });

  after(async () => {
    asReader.close();
    await admin.delete(`/api/v1/namespaces/${NS}`).catch(() => undefined);
    admin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('when a ServiceAccount has no role, then listing pods is forbidden', async () => {
    await assert.rejects(asReader.get(`/api/v1/namespaces/${NS}/pods`), (err: unknown) => err instanceof ApiError && err.code === 403);
  });

  test('when a Role lets it read pods, then it can list them and still cannot delete one', async () => {
    await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'pod-reader' },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
    });
    await admin.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'pod-reader' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
      subjects: [{ kind: 'ServiceAccount', name: SA, namespace: NS }],
    });
    // The authorizer sees a new binding through its informer, a moment after the write.
    const list = await waitUntil('the binding takes effect', () => asReader.get<{ items: unknown[] }>(`/api/v1/namespaces/${NS}/pods`), 30_000);
    assert.deepEqual(list.items, []);
    await assert.rejects(asReader.delete(`/api/v1/namespaces/${NS}/pods/anything`), (err: unknown) => err instanceof ApiError && err.code === 403);
  });
});
