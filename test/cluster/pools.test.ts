/**
 * Several pools on the loopback cluster: pool Deployments found, scaled and dropped live by
 * controller replicas on their ServiceAccount: a controller process (its session API and its
 * admin /pool JSON), and two KubePool replicas built in this process on the same ServiceAccount
 * kubeconfig, whose claims name their pools directly.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import { ClaimQueue } from '../../controller/src/pool/claim-queue.js';
import { createKubeApi } from '../../controller/src/pool/kubernetes/client.js';
import { KubePool, MIN_SIZE, type KubePoolOptions } from '../../controller/src/pool/kubernetes/index.js';
import type { SessionWorker } from '../../controller/src/pool/types.js';
import { chat, type Controller } from '../integration/harness.js';
import { hashOf, POOL_LABEL, POOL_NAME, poolDeployment, poolFixture, type Pod, type PoolFixture } from './fixture.js';
import { isNotFound } from './kube.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

const SMALL = 'chatbot-worker-small';

describe('several pools on the loopback cluster', () => {
  let f: PoolFixture;
  let c: Controller;
  const replicas: KubePool[] = [];
  let n = 0;
  const claim = (r: KubePool, pool: string): Promise<SessionWorker> =>
    r.claim({ hash: (++n).toString(16).padStart(40, 'a'), client: 'test', pools: [pool] });
  const adminPools = async (): Promise<Record<string, { size: number }>> =>
    ((await (await fetch(`${c.admin}/pool`)).json()) as { pools: Record<string, { size: number }> }).pools;
  const podOf = async (s: SessionWorker): Promise<Pod> => f.kube.get<Pod>(`${f.podsPath}/${s.worker}`);
  const postSession = async (pool: string) => {
    const res = await fetch(`${c.base}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pool }) });
    return { status: res.status, ...((await res.json()) as { id?: string; pool?: string; error?: string }) };
  };

  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-pools');
    c = await f.controller('replica-a');
    for (const name of ['replica-b', 'replica-c']) replicas.push(await replica(name));
  });

  /** A KubePool replica in this process, on the controller's ServiceAccount. */
  async function replica(name: string, options: Partial<KubePoolOptions> = {}): Promise<KubePool> {
    const kc = new KubeConfig();
    kc.loadFromFile(f.saKubeconfig);
    const r = new KubePool({
      api: createKubeApi(kc, { namespace: f.ns, count: () => undefined }),
      queue: new ClaimQueue({ timeoutMs: 30_000, maxPending: 100, retryAfterS: () => 1 }),
      logger: createLogger('silent'),
      metrics: createMetrics(),
      replica: name,
      labelKey: 'assigned',
      minSize: 3,
      maxSize: 3,
      workerPort: 8080,
      activityFlushMs: 500,
      retryAfterS: 1,
      ...options,
    });
    await r.start();
    return r;
  }
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await f.teardown();
  });

  test('when a second pool Deployment is applied while the replicas run, then each lists it, it is scaled to its min-size, and it serves claims, with no restart', async () => {
    await waitUntil('3 warm chatbot pods', () => f.warmReady(3));
    assert.deepEqual(Object.keys(await adminPools()), [POOL_NAME]);
    await f.kube.create(`/apis/apps/v1/namespaces/${f.ns}/deployments`, poolDeployment(SMALL, 'small', {}, { [MIN_SIZE]: '2' }));
    await waitUntil('every replica lists the pool small', async () =>
      replicas.every((r) => r.pools().includes('small')) && (await adminPools()).small?.size === 2 ? true : undefined);
    const scale = await waitUntil('the pool small is scaled to 2', async () => {
      const s = await f.kube.get<{ spec: { replicas: number } }>(`/apis/apps/v1/namespaces/${f.ns}/deployments/${SMALL}/scale`);
      return s.spec.replicas === 2 ? s : undefined;
    });
    assert.equal(scale.spec.replicas, 2);
    await waitUntil('2 warm small pods', () => f.warmReady(2, 'small'), 60_000);
    const s = await claim(replicas[0] as KubePool, 'small');
    assert.equal(s.pool, 'small');
    assert.equal((await podOf(s)).metadata.labels?.[POOL_LABEL], 'small');
    await (replicas[0] as KubePool).release(s, 'deleted');
    const created = await postSession('small');
    assert.deepEqual([created.status, created.pool], [201, 'small'], 'the controller process serves the new pool too');
    assert.equal((await f.podOf(created.id as string))?.metadata.labels?.[POOL_LABEL], 'small');
    assert.equal((await fetch(`${c.base}/sessions/${created.id}`, { method: 'DELETE' })).status, 204);
  });

  test('when claims in both pools run in parallel on two replicas, then each session\'s pod is of its own pool and no pod serves two sessions', async () => {
    const wanted = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? 'small' : POOL_NAME));
    const sessions = await Promise.all(wanted.map((pool, i) => claim(replicas[i % replicas.length] as KubePool, pool)));
    const pods = await Promise.all(sessions.map(podOf));
    assert.deepEqual(sessions.map((s) => s.pool), wanted);
    assert.deepEqual(pods.map((p) => p.metadata.labels?.[POOL_LABEL]), wanted, 'each pod carries its own session\'s pool');
    assert.deepEqual(pods.map((p) => p.metadata.labels?.['warmpool.dev/session']), sessions.map((s) => s.hash));
    assert.equal(new Set(sessions.map((s) => s.worker)).size, sessions.length, 'no pod serves two sessions');
    await Promise.all(sessions.map((s, i) => (replicas[i % replicas.length] as KubePool).release(s, 'deleted')));
  });

  test('when a pool Deployment is deleted, then no replica claims from it any more, and its live session goes on', async () => {
    const [b, other] = replicas as [KubePool, KubePool];
    await waitUntil('a warm small pod', () => f.warmReady(1, 'small'), 60_000);
    const { id } = await postSession('small');
    assert.ok(id, 'a session in the pool small');
    await chat(c, id, 'before the pool goes');
    await f.kube.delete(`/apis/apps/v1/namespaces/${f.ns}/deployments/${SMALL}`);
    await waitUntil('no replica lists the pool small', async () =>
      replicas.every((r) => !r.pools().includes('small')) && !('small' in (await adminPools())) ? true : undefined);
    assert.deepEqual(await postSession('small'), { status: 404, error: 'pool_not_found', message: 'no pool named "small"' });
    await assert.rejects(claim(other, 'small'), { code: 'no_warm_worker' });
    await waitUntil('the warm small pods are gone', async () => ((await f.pods(`${POOL_LABEL}=small,assigned=not_assigned`)).length === 0 ? true : undefined), 60_000);
    const pod = (await f.podOf(id)) as Pod;
    assert.ok(pod && !pod.metadata.deletionTimestamp, 'the claimed pod of the deleted pool stays');
    assert.equal(b.lookup(hashOf(id))?.worker, pod.metadata.name, 'every replica still routes its session');
    await chat(c, id, 'after the pool went');
    const history = (await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: unknown[] };
    assert.equal(history.turns.length, 2, 'the same worker, its conversation kept');
    assert.equal((await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' })).status, 204);
    await waitUntil('its pod is gone', async () => ((await f.podOf(id)) ? undefined : true));
    assert.deepEqual(Object.keys(await adminPools()), [POOL_NAME]);
  });

  test('when a replica stops for good between a claim and its confirmation, then another replica ends that claim as an orphan after the bound, and leaves confirmed ones alone', async () => {
    const doomed = await replica('replica-doomed');
    const sweeper = await replica('replica-sweeper', { undeliveredMs: 3000, orphanSweepMs: 250 });
    try {
      await waitUntil('2 warm chatbot pods', () => f.warmReady(2), 60_000);
      const unconfirmed = await claim(doomed, POOL_NAME);
      const confirmed = await claim(doomed, POOL_NAME);
      doomed.confirm(confirmed);
      // What SIGKILL leaves: no release, no flush, no more writes from this replica.
      await doomed.stop();
      await waitUntil('the unconfirmed claim is ended', () => podOf(unconfirmed).then(
        (p) => (p.metadata.deletionTimestamp ? true : undefined),
        (err: unknown) => (isNotFound(err) ? true : Promise.reject(err)),
      ), 30_000);
      const kept = await podOf(confirmed);
      assert.ok(!kept.metadata.deletionTimestamp, 'the confirmed claim stays');
      assert.equal(sweeper.lookup(confirmed.hash)?.worker, confirmed.worker);
      await sweeper.release(sweeper.lookup(confirmed.hash) as SessionWorker, 'deleted');
    } finally {
      await sweeper.stop();
    }
  });

  test('when a session is created with settings, then its worker has them and no Kubernetes object in the namespace holds them', async () => {
    const marker = `settings-marker-${Date.now().toString(36)}`;
    const res = await fetch(`${c.base}/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pool: POOL_NAME, settings: { system: 'containers', user: marker } }),
    });
    assert.equal(res.status, 201);
    const { id } = (await res.json()) as { id: string };
    assert.match((await chat(c, id, 'hello')).reply, /^Containers\b/, 'the system prompt steers the reply');
    const kinds = ['/api/v1/namespaces/{ns}/pods', '/api/v1/namespaces/{ns}/events', '/api/v1/namespaces/{ns}/configmaps', '/api/v1/namespaces/{ns}/secrets',
      '/apis/apps/v1/namespaces/{ns}/deployments', '/apis/apps/v1/namespaces/{ns}/replicasets'];
    for (const path of kinds) {
      const objects = JSON.stringify(await f.kube.get(path.replace('{ns}', f.ns)));
      assert.ok(!objects.includes(marker), `${path} holds no settings`);
    }
    await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' });
  });
});
