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

  /** A pod that asks the API server for its namespace's pods with its projected token; the exit code tells the answer. */
  const inClusterPod = (name: string, serviceAccountName: string) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: {
      serviceAccountName,
      restartPolicy: 'Never',
      containers: [
        {
          name: 'client',
          image: 'warmpool/chatbot-worker',
          command: ['node', '--input-type=module', '-e', IN_CLUSTER_SCRIPT],
        },
      ],
    },
  });

  async function exitCodeOf(name: string): Promise<number> {
    await admin.create(`/api/v1/namespaces/${NS}/pods`, inClusterPod(name, name === 'as-reader' ? SA : 'default'));
    return waitUntil(`pod ${name} has finished`, async () => {
      const pod = await admin.get<{ status?: { phase?: string; containerStatuses?: { state?: { terminated?: { exitCode: number } } }[] } }>(
        `/api/v1/namespaces/${NS}/pods/${name}`,
      );
      const phase = pod.status?.phase;
      return phase === 'Succeeded' || phase === 'Failed' ? pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode : undefined;
    });
  }

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

  test(
    'when a pod runs, then its projected token authenticates it as its ServiceAccount on the in-cluster path',
    { skip: process.getuid?.() !== 0 ? 'projected volumes need root (a private mount namespace per container)' : false },
    async () => {
      assert.equal(await exitCodeOf('as-reader'), 0, 'the reader ServiceAccount lists pods');
      assert.equal(await exitCodeOf('as-default'), 3, 'the default ServiceAccount is forbidden');
    },
  );
});

/**
 * The in-cluster recipe every client library follows: token and CA from the standard mount,
 * API server from KUBERNETES_SERVICE_HOST/PORT. Exit 0 on 200, 3 on 403, 1 otherwise.
 */
const IN_CLUSTER_SCRIPT = `
import { readFileSync } from 'node:fs';
import https from 'node:https';
const dir = '/var/run/secrets/kubernetes.io/serviceaccount';
const ns = readFileSync(dir + '/namespace', 'utf8');
const req = https.get({
  host: process.env.KUBERNETES_SERVICE_HOST,
  port: process.env.KUBERNETES_SERVICE_PORT,
  path: '/api/v1/namespaces/' + ns + '/pods',
  ca: readFileSync(dir + '/ca.crt'),
  headers: { Authorization: 'Bearer ' + readFileSync(dir + '/token', 'utf8') },
}, (res) => { res.resume(); console.log('status', res.statusCode); process.exit(res.statusCode === 200 ? 0 : res.statusCode === 403 ? 3 : 1); });
req.on('error', (err) => { console.error(err.message); process.exit(1); });
`;
