/**
 * The kubernetes backend under races and faults on the real control plane: many replicas
 * claiming at once, the API server going away and coming back, a rollout of the pool.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createSession, metric, type Controller } from '../integration/harness.js';
import { poolFixture, type Pod, type PoolFixture } from './fixture.js';
import { stopComponent } from './components.js';
import { ApiError } from './kube.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

const conflicts = (c: Controller) => metric(c, 'warmpool_claims_total', 'result="conflict"');

const chat = (c: Controller, id: string, message: string) =>
  fetch(`${c.base}/sessions/${id}/chat`, { method: 'POST', body: JSON.stringify({ message }), signal: AbortSignal.timeout(20_000) });

describe('kubernetes backend under races and faults', () => {
  let f: PoolFixture;
  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-faults');
  });
  after(() => f.teardown());

  test('when three replicas take many concurrent claims, then no pod ever serves two sessions', async (t) => {
    const size = 20;
    const replicas = [
      await f.controller('race-a', { POOL_SIZE: String(size), CLAIM_TIMEOUT_MS: '4000', MAX_SESSIONS_PER_CLIENT: '1000' }),
      await f.controller('race-b', { POOL_SIZE: String(size), CLAIM_TIMEOUT_MS: '4000', MAX_SESSIONS_PER_CLIENT: '1000' }),
      await f.controller('race-c', { POOL_SIZE: String(size), CLAIM_TIMEOUT_MS: '4000', MAX_SESSIONS_PER_CLIENT: '1000' }),
    ];
    await waitUntil(`${size} warm pods`, () => f.warmReady(size), 180_000);
    const results = await Promise.all(Array.from({ length: size * 3 }, async (_, i) => {
      const res = await fetch(`${(replicas[i % 3] as Controller).base}/sessions`, { method: 'POST' });
      const body = (await res.json()) as { id?: string; error?: string };
      return { status: res.status, ...body };
    }));
    const ids = results.filter((r) => r.status === 201).map((r) => r.id as string);
    const failures = results.filter((r) => r.status !== 201);
    assert.ok(ids.length >= size, `at least the warm pods were claimed (${ids.length} of ${results.length})`);
    for (const r of failures) assert.equal(r.status, 503, JSON.stringify(r));
    const owners = await Promise.all(ids.map((id) => f.podOf(id)));
    const names = owners.map((p) => p?.metadata.name);
    assert.ok(names.every(Boolean), 'every session has its pod');
    assert.equal(new Set(names).size, ids.length, 'every session is on a distinct pod');
    assert.equal((await f.claimed()).length, ids.length, 'claimed pods = successful claims');
    const totalConflicts = (await Promise.all(replicas.map(conflicts))).reduce((a, b) => a + b, 0);
    assert.ok(totalConflicts > 0, 'racing replicas met conflicts, and each one was counted');
    t.diagnostic(`${results.length} concurrent claims over 3 replicas, ${size} warm pods: ${ids.length} claimed, ${failures.length} answered 503, ${totalConflicts} conflicts`);
    await Promise.all(ids.map((id, i) => fetch(`${(replicas[i % 3] as Controller).base}/sessions/${id}`, { method: 'DELETE' })));
    await waitUntil('every claimed pod is deleted', async () => ((await f.claimed()).length === 0 ? true : undefined), 120_000);
    await f.stopAll();
  });

  test('when the API server stops, then sessions keep routing, claims fail fast, and the informer recovers by itself', async () => {
    const c = await f.controller('outage', { POOL_SIZE: '3' });
    await waitUntil('3 warm pods', () => f.warmReady(3), 120_000);
    const id = await createSession(c);
    const apiServer = await stopComponent('kube-apiserver');
    try {
      assert.equal((await chat(c, id, 'while the API server is away')).status, 200, 'an existing session routes from the cache');
      const claim = await fetch(`${c.base}/sessions`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      assert.equal(claim.status, 503);
      assert.equal(((await claim.json()) as { error: string }).error, 'backend_unavailable');
    } finally {
      await apiServer.restart();
    }
    const again = await waitUntil('claims work again', async () => {
      const res = await fetch(`${c.base}/sessions`, { method: 'POST' });
      return res.status === 201 ? ((await res.json()) as { id: string }).id : undefined;
    }, 120_000);
    assert.equal((await chat(c, again, 'after the outage')).status, 200);
    assert.equal((await chat(c, id, 'the old session too')).status, 200);
  });

  test('when the pool Deployment rolls out a new template, then warm pods are replaced and claimed pods keep their sessions', async () => {
    const c = (f.running[0] as Controller);
    const id = await createSession(c);
    const mine = (await f.podOf(id)) as Pod;
    const hashBefore = (await f.warmReady(1))?.[0]?.metadata.labels?.['pod-template-hash'];
    await f.kube.mergePatch(f.deploymentPath, { spec: { template: { metadata: { annotations: { 'warmpool.dev/rollout': 'two' } } } } });
    await waitUntil('every warm pod comes from the new template', async () => {
      const warm = await f.warmReady(3);
      return warm && warm.length === 3 && warm.every((p) => p.metadata.labels?.['pod-template-hash'] !== hashBefore) ? true : undefined;
    }, 120_000);
    const still = (await f.podOf(id)) as Pod;
    assert.equal(still.metadata.uid, mine.metadata.uid, 'the claimed pod was not replaced');
    assert.equal((await chat(c, id, 'after the rollout')).status, 200);
    const history = (await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: unknown[] };
    assert.equal(history.turns.length, 1);
  });

  test('when the ReplicaSet controller deletes a claimed pod from a stale cache, then the API server refuses, and a warm pod it may still delete', async () => {
    const c = (f.running[0] as Controller);
    const id = await createSession(c);
    const claimed = (await f.podOf(id)) as Pod;
    const warm = ((await waitUntil('a warm pod', () => f.warmReady(1), 120_000))[0]) as Pod;
    // What a ReplicaSet scaling down does with a cache that has not seen the claim: delete by name.
    const replicaSets = f.kube.as('system:serviceaccount:kube-system:replicaset-controller');
    try {
      const refused = await replicaSets.delete(`${f.podsPath}/${claimed.metadata.name}`).then(() => undefined, (err: unknown) => err);
      assert.ok(refused instanceof ApiError, 'the deletion of the claimed pod was refused');
      assert.equal(refused.code, 403);
      assert.match(refused.message, /claimed by a session/);
      await replicaSets.delete(`${f.podsPath}/${warm.metadata.name}`);
    } finally {
      replicaSets.close();
    }
    assert.equal((await chat(c, id, 'still here')).status, 200);
    assert.equal((await f.podOf(id))?.metadata.uid, claimed.metadata.uid);
  });
});
