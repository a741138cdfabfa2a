import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLAIMED_AT, ENDED, SESSION_LABEL, type PodInfo } from '../../controller/src/pool/kubernetes/index.js';
import { FakeApi, poolWith } from './fake-kube.js';

const PENDING = Symbol('pending');
/** The promise's value if it has settled by the time the microtasks queued so far have run, else PENDING. */
const settled = <T>(p: Promise<T>): Promise<T | typeof PENDING> => Promise.race([p, new Promise<typeof PENDING>((r) => setImmediate(() => r(PENDING)))]);

describe('kubernetes backend on a fake API', () => {
  test('when a claim succeeds, then the pod carries the session labels and annotations and routes by hash', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api);
    const s = await pool.claim({ hash: 'a'.repeat(40), client: 'c1' });
    const stored = api.pods.get('w1') as PodInfo;
    assert.equal(stored.labels.assigned, 'assigned');
    assert.equal(stored.labels[SESSION_LABEL], 'a'.repeat(40));
    assert.equal(stored.annotations['warmpool.dev/claimed-by'], 'test-replica');
    assert.deepEqual(s.endpoint, { host: '127.0.9.1', port: 8080 });
    assert.equal(pool.lookup('a'.repeat(40))?.worker, 'w1');
    assert.equal(api.scaled, 3);
    await pool.stop();
  });

  test('when the chosen pod changed meanwhile, then the claim counts a conflict, drops it and takes another', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    api.addWarm('w2', '127.0.9.2');
    const { pool, metrics } = await poolWith(api);
    // Another replica claims our first choice between our cache read and our write.
    let taken = '';
    api.beforePatch = (name) => {
      api.beforePatch = undefined;
      taken = name;
      const pod = api.pods.get(name) as PodInfo;
      api.pods.set(name, { ...pod, resourceVersion: String(++api.version), labels: { ...pod.labels, assigned: 'assigned' } });
    };
    const s = await pool.claim({ hash: 'b'.repeat(40), client: 'c1' });
    assert.ok(taken !== '' && s.worker !== taken, `took ${s.worker} after ${taken} conflicted`);
    const conflicts = (await metrics.claimsTotal.get()).values.find((v) => v.labels.result === 'conflict');
    assert.equal(conflicts?.value, 1);
    await pool.stop();
  });

  test('when every candidate conflicts and none turns free, then the claim gives up with 503 no_warm_worker', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 100);
    api.beforePatch = (name) => {
      const pod = api.pods.get(name) as PodInfo;
      api.pods.set(name, { ...pod, resourceVersion: String(++api.version) });
    };
    await assert.rejects(pool.claim({ hash: 'c'.repeat(40), client: 'c1' }), { code: 'no_warm_worker', status: 503 });
    assert.equal(api.patches, 1, 'a dropped candidate is not retried until the watch shows it again');
    await pool.stop();
  });

  test('when a claimed pod is deleted by someone else, then its session is reported lost; when marked ended, reported ended', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    api.addWarm('w2', '127.0.9.2');
    const { pool } = await poolWith(api);
    const gone: string[] = [];
    pool.onGone((hash, _w, kind) => gone.push(`${hash[0]}:${kind}`));
    const a = await pool.claim({ hash: 'a'.repeat(40), client: 'c' });
    const b = await pool.claim({ hash: 'b'.repeat(40), client: 'c' });
    const podA = api.pods.get(a.worker) as PodInfo;
    api.handlers.upsert({ ...podA, resourceVersion: String(++api.version), deleting: true });
    const podB = api.pods.get(b.worker) as PodInfo;
    api.handlers.remove({ ...podB, annotations: { ...podB.annotations, [ENDED]: 'idle' } });
    assert.deepEqual(gone, ['a:lost', 'b:ended']);
    assert.equal(pool.lookup(a.hash), undefined);
    assert.equal(pool.lookup(b.hash), undefined);
    await pool.stop();
  });

  test('when the worker of a claimed pod restarts in place, then its session is lost', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api);
    const gone: string[] = [];
    pool.onGone((_h, _w, kind, why) => gone.push(`${kind}:${why}`));
    const s = await pool.claim({ hash: 'e'.repeat(40), client: 'c' });
    const pod = api.pods.get(s.worker) as PodInfo;
    api.handlers.upsert({ ...pod, resourceVersion: String(++api.version), restartedAt: Date.now() + 1000 });
    assert.deepEqual(gone, ['lost:worker restarted']);
    assert.equal(pool.lookup(s.hash), undefined);
    await pool.stop();
  });

  test('when an idle end races activity written elsewhere, then the conditional write fails and the session stays', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api);
    const s = await pool.claim({ hash: 'd'.repeat(40), client: 'c' });
    const pod = api.pods.get(s.worker) as PodInfo;
    api.pods.set(s.worker, { ...pod, resourceVersion: String(++api.version), annotations: { ...pod.annotations, 'warmpool.dev/last-activity': new Date().toISOString() } });
    assert.equal(await pool.release(s, 'idle'), false);
    assert.ok(api.pods.has(s.worker), 'the pod is not deleted');
    assert.equal(pool.lookup(s.hash)?.worker, 'w1');
    assert.equal(await pool.release(s, 'deleted'), true);
    assert.ok(!api.pods.has(s.worker), 'an explicit end deletes the pod');
    await pool.stop();
  });

  test('when another replica has just claimed a session, then a lookup here waits for the watch to show it instead of calling it unknown', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 200, { catchUpMs: 60_000 });
    const hash = 'f'.repeat(40);
    const found = pool.waitForSession(hash);
    assert.equal(await settled(found), PENDING, 'a session this replica has not seen is waited for');
    // The other replica's claim, as this replica's watch delivers it.
    api.handlers.upsert(await api.patchPod('w1', undefined, { assigned: 'assigned', [SESSION_LABEL]: hash }, { [CLAIMED_AT]: new Date().toISOString() }));
    const got = await settled(found);
    assert.equal(got === PENDING ? 'still waiting' : got?.worker, 'w1', 'the watch event ends the wait with the session');
    await pool.stop();
  });

  test('when a session stays unknown, then the lookup gives up after catchUpMs', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 200, { catchUpMs: 20 });
    // The pool's timers are unref'd: something must keep the event loop alive past them.
    const [found] = await Promise.all([pool.waitForSession('9'.repeat(40)), sleep(40)]);
    assert.equal(found, undefined);
    await pool.stop();
  });

  test('when a claim write times out but lands after all, then the session nobody holds is ended and its pod deleted', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool, metrics } = await poolWith(api, 200, { activityFlushMs: 10 });
    api.afterPatch = () => {
      api.afterPatch = undefined;
      throw Object.assign(new Error('kubernetes patch timed out'), { code: 'ETIMEDOUT' });
    };
    await assert.rejects(pool.claim({ hash: '7'.repeat(40), client: 'c' }), { code: 'backend_unavailable', status: 503 });
    // The write that landed, as the watch shows it.
    api.handlers.upsert(api.pods.get('w1') as PodInfo);
    for (let i = 0; i < 500 && api.pods.has('w1'); i++) await sleep(10);
    assert.ok(!api.pods.has('w1'), 'the pod of the lost claim is deleted');
    const orphans = (await metrics.sessionsEnded.get()).values.find((v) => v.labels.reason === 'orphan');
    assert.equal(orphans?.value, 1);
    await pool.stop();
  });
});
