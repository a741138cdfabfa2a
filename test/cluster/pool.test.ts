/**
 * Smoke test of the loopback cluster with the reference worker: the real Deployment,
 * ReplicaSet and garbage-collector controllers keep the warm pool full, and the node agent
 * runs, probes and stops the pods. Needs a running cluster (`npm run cluster:up`, or
 * `npm run test:cluster`, which starts and stops one around the tests).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { isAlreadyExists, isNotFound, Kube, type ObjectMeta } from './kube.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

const NS = 'warmpool';
const POOL = 'chatbot-worker';
const selector = { 'app.kubernetes.io/name': POOL, assigned: 'not_assigned' };

interface Pod {
  metadata: ObjectMeta;
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { containerID?: string }[];
  };
}

const isReady = (p: Pod): boolean =>
  p.status?.phase === 'Running' && !p.metadata.deletionTimestamp && !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

const pidOf = (p: Pod): number => {
  const id = p.status?.containerStatuses?.[0]?.containerID ?? '';
  const m = /^process:\/\/(\d+)$/.exec(id);
  assert.ok(m?.[1], `container id ${id} names no process`);
  return Number(m[1]);
};

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function healthz(ip: string): Promise<number> {
  const res = await fetch(`http://${ip}:8080/healthz`, { signal: AbortSignal.timeout(5000) });
  await res.arrayBuffer();
  return res.status;
}

describe('loopback cluster: the warm pool of reference workers', () => {
  let kube: Kube;
  const podsPath = `/api/v1/namespaces/${NS}/pods`;
  const listPods = async (labels: Record<string, string>): Promise<Pod[]> => {
    const sel = Object.entries(labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    return (await kube.get<{ items: Pod[] }>(`${podsPath}?labelSelector=${encodeURIComponent(sel)}`)).items;
  };
  const readyPool = async (n: number): Promise<Pod[] | undefined> => {
    const ready = (await listPods(selector)).filter(isReady);
    return ready.length === n ? ready : undefined;
  };

  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    kube = Kube.fromKubeconfig(kubeconfigPath);
    await waitUntil('an earlier warmpool namespace is gone', async () =>
      kube.get(`/api/v1/namespaces/${NS}`).then(
        () => undefined,
        (err: unknown) => (isNotFound(err) ? true : Promise.reject(err)),
      ),
    );
    await kube.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }).catch((err: unknown) => {
      if (!isAlreadyExists(err)) throw err;
    });
    // The ServiceAccount admission plugin rejects pods until the namespace's default
    // ServiceAccount exists; the ReplicaSet would only retry later.
    await waitUntil('the default ServiceAccount exists', () => kube.get(`/api/v1/namespaces/${NS}/serviceaccounts/default`));
    await kube.create(`/apis/apps/v1/namespaces/${NS}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: POOL, labels: { 'app.kubernetes.io/name': POOL } },
      spec: {
        replicas: 3,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: selector },
          spec: {
            terminationGracePeriodSeconds: 10,
            containers: [
              {
                name: 'worker',
                image: 'warmpool/chatbot-worker:dev',
                ports: [{ name: 'http', containerPort: 8080 }],
                env: [
                  { name: 'PORT', value: '8080' },
                  { name: 'MODEL_LOAD_DELAY_MS', value: '300' },
                ],
                readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1, failureThreshold: 3 },
              },
            ],
          },
        },
      },
    });
  });

  after(async () => {
    await kube.delete(`/api/v1/namespaces/${NS}`).catch(() => undefined);
    kube.close();
  });

  test('when the pool Deployment is created, then 3 pods become Ready and each answers /healthz on its own pod IP', async () => {
    const pods = await waitUntil('3 pool pods are Ready', () => readyPool(3));
    const ips = pods.map((p) => p.status?.podIP ?? '');
    assert.equal(new Set(ips).size, 3, `pod IPs are not distinct: ${ips.join(', ')}`);
    for (const ip of ips) {
      assert.match(ip, /^127\.\d+\.\d+\.\d+$/);
      assert.equal(await healthz(ip), 200, `GET http://${ip}:8080/healthz`);
    }
  });

  test('when a pod is labelled assigned=assigned, then the ReplicaSet releases it and a fourth pod becomes Ready', async () => {
    const [claimed] = await waitUntil('3 pool pods are Ready', () => readyPool(3));
    assert.ok(claimed);
    assert.ok(claimed.metadata.ownerReferences?.length, 'a pool pod is owned by its ReplicaSet');
    await kube.mergePatch(`${podsPath}/${claimed.metadata.name}`, {
      metadata: { resourceVersion: claimed.metadata.resourceVersion, labels: { assigned: 'assigned' } },
    });
    await waitUntil('the claimed pod has no owner', async () => {
      const pod = await kube.get<Pod>(`${podsPath}/${claimed.metadata.name}`);
      return pod.metadata.ownerReferences?.length ? undefined : pod;
    });
    const pool = await waitUntil('3 unclaimed pods are Ready again', () => readyPool(3));
    assert.ok(!pool.some((p) => p.metadata.uid === claimed.metadata.uid));
    const after = await kube.get<Pod>(`${podsPath}/${claimed.metadata.name}`);
    assert.ok(isReady(after), 'the released pod keeps running');
    assert.equal(await healthz(after.status?.podIP ?? ''), 200);
  });

  test('when a pod is deleted, then its process stops and the pod is gone', async () => {
    const [victim] = await waitUntil('3 pool pods are Ready', () => readyPool(3));
    assert.ok(victim);
    const pid = pidOf(victim);
    assert.ok(processAlive(pid), `pid ${pid} runs before the delete`);
    await kube.delete(`${podsPath}/${victim.metadata.name}`);
    await waitUntil('the pod object is gone', () =>
      kube.get(`${podsPath}/${victim.metadata.name}`).then(
        (p) => ((p as unknown as Pod).metadata.uid === victim.metadata.uid ? undefined : true),
        (err: unknown) => (isNotFound(err) ? true : Promise.reject(err)),
      ),
    );
    assert.equal(processAlive(pid), false, `pid ${pid} is gone`);
    await waitUntil('the pool is full again', () => readyPool(3));
  });
});
