/**
 * The kubernetes backend against the real control plane: the controller runs as a local process
 * with a kubeconfig made from its own ServiceAccount token, so RBAC holds it to its Role, and
 * everything it talks to is the real API server and the real Deployment/ReplicaSet controllers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { StatusReport } from '../../controller/src/status/report.js';
import { createSession, type Controller } from '../integration/harness.js';
import { hashOf, POOL, POOL_NAME, poolFixture, type Pod, type PoolFixture } from './fixture.js';
import { isNotFound } from './kube.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

describe('kubernetes backend on the loopback cluster', () => {
  let f: PoolFixture;
  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-backend');
  });
  after(() => f.teardown());

  test('when a replica starts, then it scales the pool Deployment to POOL_SIZE and turns ready after its first list', async () => {
    const a = await f.controller('replica-a');
    const scale = await f.kube.get<{ spec: { replicas: number } }>(`${f.deploymentPath}/scale`);
    assert.equal(scale.spec.replicas, 3);
    await waitUntil('3 warm pods', () => f.warmReady(3));
    const pool = (await (await fetch(`${a.admin}/pool`)).json()) as { backend: string };
    assert.equal(pool.backend, 'kubernetes');
  });

  test('when a session is created, then its pod is labelled assigned with the session hash and the pool refills', async () => {
    const a = f.running[0] as Controller;
    await waitUntil('3 warm pods', () => f.warmReady(3));
    const id = await createSession(a);
    const all = await f.claimed();
    assert.equal(all.length, 1);
    const pod = all[0] as Pod;
    assert.match(pod.metadata.labels?.['warmpool.dev/session'] ?? '', /^[0-9a-f]{40}$/);
    assert.equal(pod.metadata.annotations?.['warmpool.dev/claimed-by'], 'replica-a');
    assert.ok(!JSON.stringify(pod).includes(id), 'the token is nowhere on the pod');
    await waitUntil('the ReplicaSet lets the claimed pod go', async () => {
      const p = await f.kube.get<Pod>(`${f.podsPath}/${pod.metadata.name}`);
      return p.metadata.ownerReferences?.length ? undefined : true;
    });
    await waitUntil('3 warm pods again', () => f.warmReady(3));
    const res = await fetch(`${a.base}/sessions/${id}/chat`, { method: 'POST', body: JSON.stringify({ message: 'hello from the cluster' }) });
    assert.equal(res.status, 200);
  });

  test('when a session is claimed and ended, then its pod\'s Events say Claimed and Ended with the pool and the hash prefix, never the id', async () => {
    const a = f.running[0] as Controller;
    await waitUntil('a warm pod', () => f.warmReady(1));
    const id = await createSession(a);
    const pod = (await f.podOf(id)) as Pod;
    assert.equal((await fetch(`${a.base}/sessions/${id}`, { method: 'DELETE' })).status, 204);
    const selector = encodeURIComponent(`involvedObject.name=${pod.metadata.name}`);
    const events = await waitUntil('both Events', async () => {
      const list = await f.kube.get<{ items: { reason: string; message: string; type: string }[] }>(`/api/v1/namespaces/${f.ns}/events?fieldSelector=${selector}`);
      const ours = list.items.filter((e) => e.reason === 'Claimed' || e.reason === 'Ended');
      return ours.length === 2 ? ours : undefined;
    });
    const prefix = hashOf(id).slice(0, 12);
    assert.deepEqual(events.map((e) => `${e.reason} ${e.type}: ${e.message}`).sort(), [
      `Claimed Normal: pool ${POOL_NAME}: claimed for session ${prefix} by replica-a`,
      `Ended Normal: pool ${POOL_NAME}: session ${prefix} ended (deleted) by replica-a`,
    ]);
    assert.ok(!JSON.stringify(events).includes(id), 'the token is in no Event');
  });

  test('when a replica\'s status page data is read, then it names the replica, its API watch is in sync, and its pool figures are /pool\'s', async () => {
    const a = f.running[0] as Controller;
    await waitUntil('3 warm pods', () => f.warmReady(3));
    const report = await waitUntil('the status page data and /pool to agree', async () => {
      const [s, p] = await Promise.all([
        fetch(`${a.admin}/status.json`).then((r) => r.json() as Promise<StatusReport>),
        fetch(`${a.admin}/pool`).then((r) => r.json() as Promise<{ pools: Record<string, unknown> }>),
      ]);
      const { claims: _c, ends: _e, ...figures } = s.pools[POOL_NAME] ?? {} as never;
      return JSON.stringify(figures) === JSON.stringify(p.pools[POOL_NAME]) && s.pools[POOL_NAME]?.warm === 3 ? s : undefined;
    });
    assert.equal(report.replica, 'replica-a');
    assert.equal(report.backend, 'kubernetes');
    assert.equal(report.health.watch, 'in_sync');
    assert.equal(report.health.ready, true);
    assert.ok((report.pools[POOL_NAME]?.claims.claimed ?? 0) >= 2, 'the sessions claimed above');
    assert.ok(report.recentEnds.some((e) => e.reason === 'deleted' && e.pool === POOL_NAME && /^[0-9a-f]{12}$/.test(e.hash)));
  });

  test('when three replicas route one session, then every request reaches the same worker', async () => {
    const [a] = f.running as [Controller];
    const b = await f.controller('replica-b');
    const c = await f.controller('replica-c');
    const id = await createSession(a);
    for (const [replica, message] of [[b, 'via b'], [c, 'via c'], [a, 'via a']] as const) {
      const res = await fetch(`${replica.base}/sessions/${id}/chat`, { method: 'POST', body: JSON.stringify({ message }) });
      assert.equal(res.status, 200, await res.clone().text());
    }
    const history = (await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: { message: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), ['via b', 'via c', 'via a']);
  });

  test('when every replica is killed -9 and restarted, then existing sessions still work and nothing is re-claimed', async () => {
    const ids: string[] = [];
    for (const c of f.running) ids.push(await createSession(c));
    const before = (await f.claimed()).map((p) => p.metadata.uid).sort();
    for (const c of f.running.splice(0)) {
      process.kill(-(c.proc.pid as number), 'SIGKILL');
      await c.exited;
    }
    const fresh = [await f.controller('replica-a2'), await f.controller('replica-b2')];
    for (const [i, id] of ids.entries()) {
      const res = await fetch(`${(fresh[i % 2] as Controller).base}/sessions/${id}/chat`, { method: 'POST', body: JSON.stringify({ message: 'after the restart' }) });
      assert.equal(res.status, 200, `session ${i}`);
    }
    assert.deepEqual((await f.claimed()).map((p) => p.metadata.uid).sort(), before);
  });

  test('when sessions end by DELETE, a foreign delete or an orphan label, then pods go and the ids answer 410 as they should', async () => {
    const [a, b] = f.running as [Controller, Controller];
    const ended = await createSession(a);
    assert.ok(await f.podOf((ended)), 'the session has a pod');
    assert.equal((await fetch(`${a.base}/sessions/${ended}`, { method: 'DELETE' })).status, 204);
    await waitUntil('the pod is deleted', async () => ((await f.podOf((ended))) ? undefined : true));
    for (const replica of [a, b]) {
      const res = await waitUntil('the end reaches every replica', async () => {
        const r = await fetch(`${replica.base}/sessions/${ended}`);
        return r.status === 410 ? r : undefined;
      });
      assert.equal(((await res.json()) as { error: string }).error, 'session_ended');
    }

    const lost = await createSession(a);
    const mine = (await f.podOf((lost))) as Pod;
    assert.ok(mine, 'the session\'s pod is found by its hash label');
    await f.kube.delete(`${f.podsPath}/${mine.metadata.name}`);
    const gone = await waitUntil('the session is lost', async () => {
      const r = await fetch(`${b.base}/sessions/${lost}/history`);
      return r.status === 410 ? r : undefined;
    });
    assert.equal(((await gone.json()) as { error: string }).error, 'session_lost');

    const [orphan] = (await waitUntil('a warm pod', () => f.warmReady(1))) as Pod[];
    await f.kube.mergePatch(`${f.podsPath}/${orphan?.metadata.name}`, { metadata: { labels: { assigned: 'assigned' } } });
    await waitUntil('the orphan is deleted', async () =>
      f.kube.get<Pod>(`${f.podsPath}/${orphan?.metadata.name}`).then((p) => (p.metadata.deletionTimestamp ? true : undefined), (err: unknown) => (isNotFound(err) ? true : Promise.reject(err))));
  });

  test('when a session idles past SESSION_IDLE_TIMEOUT_S or outlives SESSION_MAX_LIFETIME_S, then a replica deletes its pod', async () => {
    await f.stopAll();
    const r = await f.controller('replica-reaper', { SESSION_IDLE_TIMEOUT_S: '2', SESSION_MAX_LIFETIME_S: '600' });
    const idle = await createSession(r);
    await waitUntil('the idle session ends', async () => {
      const res = await fetch(`${r.base}/sessions/${idle}`);
      return res.status === 410 ? true : undefined;
    });
    await waitUntil('its pod is deleted', async () => ((await f.podOf((idle))) ? undefined : true));
    await f.stopAll();
    const l = await f.controller('replica-lifetime', { SESSION_IDLE_TIMEOUT_S: '600', SESSION_MAX_LIFETIME_S: '3' });
    const old = await createSession(l);
    await waitUntil('the session reaches its lifetime while chatting', async () => {
      const res = await fetch(`${l.base}/sessions/${old}/chat`, { method: 'POST', body: JSON.stringify({ message: 'busy' }) });
      await res.arrayBuffer();
      return res.status === 410 ? true : undefined;
    });
    await waitUntil('its pod is deleted', async () => ((await f.podOf((old))) ? undefined : true));
  });

  test('when no pod is warm, then a claim waits and gets 503 with Retry-After; at MAX_SESSIONS, 503 at_capacity', async () => {
    await f.stopAll();
    const z = await f.controller('replica-empty', { POOL_SIZE: '0', CLAIM_TIMEOUT_MS: '1500' });
    await waitUntil('the pool drains', async () => ((await f.pods(`app.kubernetes.io/name=${POOL},assigned=not_assigned`)).length === 0 ? true : undefined), 60_000);
    const res = await fetch(`${z.base}/sessions`, { method: 'POST' });
    assert.equal(res.status, 503);
    assert.ok(res.headers.get('retry-after'), 'Retry-After is set');
    assert.equal(((await res.json()) as { error: string }).error, 'no_warm_worker');
    await f.stopAll();
    const live = (await f.claimed()).length;
    const cap = await f.controller('replica-cap', { MAX_SESSIONS: String(live + 1) });
    await waitUntil('a warm pod', () => f.warmReady(1));
    await createSession(cap);
    const full = await fetch(`${cap.base}/sessions`, { method: 'POST' });
    assert.equal(full.status, 503);
    assert.equal(((await full.json()) as { error: string }).error, 'at_capacity');
  });

  test('when the controller ServiceAccount lists its permissions, then it has nothing beyond what the code uses', () => {
    const kubectl = process.env.KUBECTL ?? join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'), 'warmpool', 'k8s-v1.33.13', 'kubectl');
    const out = execFileSync(kubectl, ['auth', 'can-i', '--list', '-n', f.ns], { env: { ...process.env, KUBECONFIG: f.saKubeconfig }, encoding: 'utf8' });
    // A fixed-width table: Resources, Non-Resource URLs, Resource Names, Verbs. Non-resource URLs
    // (discovery) and the self-review APIs every identity has are not the controller's grants.
    const [header = '', ...rows] = out.trimEnd().split('\n');
    const at = ['Non-Resource URLs', 'Resource Names', 'Verbs'].map((h) => header.indexOf(h));
    const granted = rows
      .map((row) => [row.slice(0, at[0]), row.slice(at[0], at[1]), row.slice(at[1], at[2]), row.slice(at[2])].map((c) => c.trim()))
      .filter(([resource, urls]) => urls === '[]' && resource !== '' && !resource?.startsWith('selfsubject'))
      .map(([resource, , names, verbs]) => `${resource}${names}:${(verbs ?? '').replace(/[[\]]/g, '').split(' ').sort().join(',')}`)
      .sort();
    assert.deepEqual(granted, [
      'deployments.apps/scale[]:get,patch,update',
      'deployments.apps[]:get,list,watch',
      'events[]:create,patch',
      'pods[]:delete,get,list,patch,watch',
    ]);
  });
});
