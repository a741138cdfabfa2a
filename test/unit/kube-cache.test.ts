import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createMetrics } from '../../controller/src/metrics.js';
import { rendezvous } from '../../controller/src/pool/kubernetes/claimer.js';
import { QUEUED } from '../../controller/src/pool/kubernetes/api.js';
import { CLAIMED_AT, CLAIMED_BY, CLIENT_LABEL, POOL_LABEL, SESSION_LABEL, type PodInfo } from '../../controller/src/pool/kubernetes/index.js';
import { PodCache } from '../../controller/src/pool/kubernetes/pod-cache.js';
import { SessionIndex } from '../../controller/src/pool/kubernetes/session-index.js';
import { FakeApi, poolWith } from './fake-kube.js';

const PODS = 5000;

/** A small deterministic generator, so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 0x100000000;
  };
}

function podNamed(i: number, rv: number): PodInfo {
  return {
    name: `w${i}`, uid: `uid-w${i}-${rv}`, resourceVersion: String(rv), labels: { [POOL_LABEL]: 'chatbot', assigned: 'not_assigned' }, annotations: {},
    phase: 'Running', ready: true, readySince: 2000, createdAt: 1000, podIP: `127.0.${i >> 8}.${i & 255}`, deleting: false, restartedAt: undefined,
  };
}

/** What the indexes must hold, counted from scratch over every pod the watch showed. */
function recount(pods: Iterable<PodInfo>) {
  const out = { warm: new Set<string>(), warming: 0, assigned: 0, sessions: new Map<string, string>() };
  for (const p of pods) {
    if (p.deleting) continue;
    if (p.labels.assigned === 'assigned') {
      out.assigned++;
      const hash = p.labels[SESSION_LABEL];
      const restarted = p.restartedAt !== undefined && p.restartedAt >= Date.parse(p.annotations[CLAIMED_AT] ?? '');
      if (hash && p.podIP && !restarted && p.phase !== 'Failed' && p.phase !== 'Succeeded') out.sessions.set(hash, p.name);
    } else if (p.labels.assigned === 'not_assigned') {
      if (p.phase === 'Running' && p.ready && p.podIP) out.warm.add(p.name);
      else out.warming++;
    }
  }
  return out;
}

/** One random watch event on the model: an add, a readiness flip, a claim, a failure, a deletion under way, a deletion, a replacement. */
function step(random: () => number, model: Map<string, PodInfo>, cache: PodCache, rv: { n: number }): void {
  const i = Math.floor(random() * PODS * 1.2);
  const old = model.get(`w${i}`);
  const r = random();
  if (!old) {
    const pod = podNamed(i, ++rv.n);
    model.set(pod.name, pod);
    cache.upsert(pod);
    return;
  }
  if (r < 0.15) {
    model.delete(old.name);
    cache.remove(old);
    return;
  }
  let next: PodInfo = { ...old, resourceVersion: String(++rv.n) };
  if (r < 0.45) next = { ...next, ready: !old.ready };
  else if (r < 0.75 && old.labels.assigned === 'not_assigned') {
    const at = new Date(1_700_000_000_000 + rv.n).toISOString();
    const client = `client-${Math.floor(random() * 3)}`;
    next = { ...next, labels: { ...old.labels, assigned: 'assigned', [SESSION_LABEL]: rv.n.toString(16).padStart(40, '0'), [CLIENT_LABEL]: client }, annotations: { [CLAIMED_AT]: at } };
  } else if (r < 0.85) next = { ...next, phase: random() < 0.5 ? 'Failed' : 'Pending' };
  else if (r < 0.95) next = { ...next, deleting: true };
  else if (r < 0.97) next = { ...next, podIP: undefined };
  else next = podNamed(i, rv.n); // another pod under the same name, its predecessor's deletion missed
  model.set(next.name, next);
  cache.upsert(next);
}

describe('kubernetes pod cache', () => {
  test(`when ${PODS} cached pods get a random sequence of watch events, then the claimable set, the counts and the session index equal a recount from scratch`, () => {
    const random = prng(11);
    const rank = rendezvous(7);
    const sessions = new SessionIndex('assigned');
    const cache = new PodCache({ labelKey: 'assigned', rank, sessions, metrics: createMetrics(), onClaimable: () => undefined });
    const model = new Map<string, PodInfo>();
    const rv = { n: 0 };
    for (let i = 0; i < PODS; i++) {
      const pod = podNamed(i, ++rv.n);
      model.set(pod.name, pod);
      cache.upsert(pod);
    }
    for (let round = 0; round < 10; round++) {
      for (let e = 0; e < 2000; e++) step(random, model, cache, rv);
      const want = recount(model.values());
      assert.deepEqual(new Set(cache.claimable('chatbot')), want.warm, `claimable set after round ${round}`);
      assert.deepEqual(cache.counts(), { warm: want.warm.size, warming: want.warming, assigned: want.assigned }, `counts after round ${round}`);
      assert.deepEqual(new Map([...sessions.hashes()].map((h) => [h, sessions.get(h)?.name])), want.sessions, `session index after round ${round}`);
      const byClient = (c: string) => [...sessions.values()].filter((p) => p.labels[CLIENT_LABEL] === c).length;
      assert.deepEqual([sessions.count(), ...['client-0', 'client-1', 'client-2'].map((c) => sessions.count(c))], [want.sessions.size, ...['client-0', 'client-1', 'client-2'].map(byClient)], `session counts after round ${round}`);
      const best = [...want.warm].reduce<string | undefined>((a, b) => (a === undefined || rank(b) > rank(a) ? b : a), undefined);
      assert.equal(cache.best('chatbot')?.name, best, 'the preferred candidate is the highest-ranked claimable pod');
    }
  });

  test(`when ${PODS} pods are warm, then 200 claims each take a distinct pod and the counts follow`, async () => {
    const api = new FakeApi();
    for (let i = 0; i < PODS; i++) api.addWarm(`w${i}`, `127.0.${i >> 8}.${i & 255}`);
    const { pool } = await poolWith(api);
    const claimed = [];
    for (let i = 0; i < 200; i++) claimed.push(await pool.claim({ hash: i.toString(16).padStart(40, '0'), client: 'c', pools: ['chatbot'] }));
    assert.equal(new Set(claimed.map((s) => s.worker)).size, 200);
    assert.deepEqual({ ...pool.snapshot(), pendingClaims: 0 }, { backend: 'kubernetes', warm: PODS - 200, warming: 0, assigned: 200, pendingClaims: 0, pools: { chatbot: { warm: PODS - 200, warming: 0, assigned: 200, size: 3 } } });
    // The watch catches up with the claims: nothing changes.
    for (const s of claimed) api.handlers.upsert(api.pods.get(s.worker) as PodInfo);
    assert.equal(pool.snapshot().assigned, 200);
    assert.ok(claimed.every((s) => pool.lookup(s.hash)?.worker === s.worker));
    await pool.stop();
  });
});

describe('kubernetes claim reservations', () => {
  test('when the watch delivers an event older than this replica\'s claim, then the claim stands: found by hash, not claimable again', async () => {
    const api = new FakeApi();
    const before = api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 50);
    const s = await pool.claim({ hash: 'a'.repeat(40), client: 'c', pools: ['chatbot'] });
    // A status update written just before the claim, delivered after its answer.
    api.handlers.upsert({ ...before, readySince: 2500 });
    assert.equal(pool.lookup(s.hash)?.worker, 'w1');
    assert.deepEqual([pool.snapshot().warm, pool.snapshot().assigned], [0, 1]);
    await assert.rejects(pool.claim({ hash: 'b'.repeat(40), client: 'c', pools: ['chatbot'] }), { code: 'no_warm_worker' });
    assert.equal(api.patches, 1, 'the reserved pod was not tried again');
    await pool.stop();
  });

  test('when the watch shows the claim, then the reservation goes and the watch speaks for the pod again', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api);
    const gone: string[] = [];
    pool.onGone((_s, kind, why) => gone.push(`${kind}:${why}`));
    const s = await pool.claim({ hash: 'c'.repeat(40), client: 'c', pools: ['chatbot'] });
    const claimed = api.pods.get('w1') as PodInfo;
    api.handlers.upsert(claimed);
    // Had the reservation stayed, it would hide this deletion from the index.
    api.handlers.upsert({ ...claimed, resourceVersion: String(++api.version), deleting: true });
    assert.deepEqual(gone, ['lost:pod deleted']);
    assert.equal(pool.lookup(s.hash), undefined);
    await pool.stop();
  });

  test('when a relist shows the claimed pod past the claim\'s version, then the reservation goes too', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api);
    const s = await pool.claim({ hash: 'd'.repeat(40), client: 'c', pools: ['chatbot'] });
    const later = { ...(api.pods.get('w1') as PodInfo), resourceVersion: String(++api.version), phase: 'Failed' };
    api.handlers.upsert(later);
    assert.equal(pool.lookup(s.hash), undefined, 'the failed pod no longer serves the session');
    await pool.stop();
  });
});

describe('kubernetes Events', () => {
  test('when a pod is claimed, ended and lost, then Events say so with the pool and the hash prefix, and a failing Event write fails nothing', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    api.addWarm('w2', '127.0.9.2');
    api.addWarm('w3', '127.0.9.3');
    const { pool } = await poolWith(api);
    const a = await pool.claim({ hash: '1'.repeat(40), client: 'c', pools: ['chatbot'] });
    const b = await pool.claim({ hash: '2'.repeat(40), client: 'c', pools: ['chatbot'] });
    assert.equal(await pool.release(a, 'idle'), true);
    const podB = api.pods.get(b.worker) as PodInfo;
    assert.equal(podB.annotations[CLAIMED_BY], 'test-replica');
    api.handlers.remove(podB);
    await sleep(0);
    const seen = api.events.filter((e) => e.object.kind === 'Pod').map((e) => `${e.object.name} ${e.reason} ${e.type}: ${e.message}`);
    assert.deepEqual(seen, [
      `${a.worker} Claimed Normal: pool chatbot: claimed for session 111111111111 by test-replica`,
      `${b.worker} Claimed Normal: pool chatbot: claimed for session 222222222222 by test-replica`,
      `${a.worker} Ended Normal: pool chatbot: session 111111111111 ended (idle) by test-replica`,
      `${b.worker} Lost Warning: pool chatbot: session 222222222222 lost (pod deleted)`,
    ]);
    api.failEvents = true;
    const free = ['w1', 'w2', 'w3'].find((n) => n !== a.worker && n !== b.worker);
    assert.equal((await pool.claim({ hash: '3'.repeat(40), client: 'c', pools: ['chatbot'] })).worker, free);
    await pool.stop();
  });

  test('when a replica claims more pods in a minute than its Event share, then every claim lands and the Events past the share are counted as skipped', async () => {
    const api = new FakeApi();
    for (let i = 0; i < 70; i++) api.addWarm(`w${i}`, `127.0.9.${i + 1}`);
    const { pool, metrics } = await poolWith(api, 200, { now: () => 5000 });
    for (let i = 0; i < 70; i++) await pool.claim({ hash: i.toString(16).padStart(40, '0'), client: 'c', pools: ['chatbot'] });
    await sleep(0);
    assert.equal(api.patches, 70, 'one write per claim');
    // Pod Events only: the pool's own (a resize on its Deployment) are not paced with them.
    assert.equal(api.events.filter((e) => e.object.kind === 'Pod').length, 60);
    assert.equal((await metrics.eventsSkipped.get()).values.find((v) => v.labels.reason === 'Claimed')?.value, 10);
    await pool.stop();
  });
});

describe('kubernetes API server that does not answer', () => {
  test('when a claim write finds no free connection in time, then that claim gets backend_unavailable and the next one is claimed as usual', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 60_000);
    for (let i = 0; i < 100 && api.scaled !== 3; i++) await sleep(10);
    // Probes would get no answer: had the unsent write read as an API server gone quiet, claims would fail fast now.
    api.down = true;
    api.beforePatch = () => {
      api.beforePatch = undefined;
      throw Object.assign(new Error('kubernetes patch not sent: all 16 connections busy for 5000 ms'), { code: QUEUED });
    };
    await assert.rejects(pool.claim({ hash: '4'.repeat(40), client: 'c', pools: ['chatbot'] }), { code: 'backend_unavailable', status: 503 });
    const next = await pool.claim({ hash: '5'.repeat(40), client: 'c', pools: ['chatbot'] });
    assert.equal(next.worker, 'w1', 'the pod the unsent write was for is still free, and claims do not fail fast');
    await pool.stop();
  });


  test('when a claim write gets no answer, then the claims queued behind it fail at once with backend_unavailable, and claims work again once the API server answers', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 60_000);
    api.down = true;
    api.beforePatch = () => {
      api.beforePatch = undefined;
      throw Object.assign(new Error('kubernetes patch cancelled'), { code: 'ETIMEDOUT' });
    };
    const first = pool.claim({ hash: '4'.repeat(40), client: 'c', pools: ['chatbot'] });
    const queued = pool.claim({ hash: '5'.repeat(40), client: 'c', pools: ['chatbot'] });
    await assert.rejects(first, { code: 'backend_unavailable' });
    await assert.rejects(queued, { code: 'backend_unavailable' }, 'the queued claim did not wait out its 60 s timeout');
    await assert.rejects(pool.claim({ hash: '6'.repeat(40), client: 'c', pools: ['chatbot'] }), { code: 'backend_unavailable' }, 'claims fail fast while it does not answer');
    api.down = false;
    api.handlers.upsert(api.addWarm('w2', '127.0.9.2'));
    let again: string | undefined;
    for (let i = 0; i < 200 && again === undefined; i++) {
      again = await pool.claim({ hash: '6'.repeat(40), client: 'c', pools: ['chatbot'] }).then((s) => s.worker, () => undefined);
      if (again === undefined) await sleep(10);
    }
    assert.ok(again === 'w1' || again === 'w2', 'a claim succeeds once the API server answers');
    await pool.stop();
  });
});
