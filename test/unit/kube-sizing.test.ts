import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { CLAIM_WAIT, CLAIMED_AT, MAX_SIZE, MIN_SIZE, POOL_LABEL, RATE_WINDOW, TARGET_MISS_RATE, type DeploymentInfo, type PodInfo } from '../../controller/src/pool/kubernetes/index.js';
import { settingsOf } from '../../controller/src/pool/kubernetes/pools.js';
import { Scaler } from '../../controller/src/pool/kubernetes/scaler.js';
import { Sizer } from '../../controller/src/pool/kubernetes/sizer.js';
import { createLogger } from '../../controller/src/log.js';
import { historyMs, SIZING_DEFAULTS } from '../../controller/src/pool/sizing.js';
import { FakeApi, poolDeployment, poolWith } from './fake-kube.js';

const adaptive = { minSize: 1, maxSize: 50, targetMissRate: 0.01, rateWindowS: 8, scaleDownWindowS: 20 };

/** A pod of pool `chatbot` created `refillMs` before it turned Ready; claimed at `claimedAt` (waiting `waitMs`) when given. */
function pod(i: number, readyAt: number, refillMs: number, claimedAt?: number, waitMs = 0): PodInfo {
  return {
    name: `p${i}`, uid: `u${i}`, resourceVersion: String(i),
    labels: { [POOL_LABEL]: 'chatbot', assigned: claimedAt === undefined ? 'not_assigned' : 'assigned' },
    annotations: claimedAt === undefined ? {} : { [CLAIMED_AT]: new Date(claimedAt).toISOString(), [CLAIM_WAIT]: String(waitMs) },
    phase: 'Running', ready: true, readySince: readyAt, createdAt: readyAt - refillMs, podIP: `127.0.9.${i % 250}`, deleting: false, restartedAt: undefined,
  };
}

/** Pods claimed at `rate` per second over the `seconds` before `now`, each 4 s from creation to Ready. */
function claimedPods(now: number, rate: number, seconds: number): PodInfo[] {
  const pods: PodInfo[] = [];
  for (let i = 0; i < rate * seconds; i++) {
    const claimedAt = now - seconds * 1000 + (i * 1000) / rate;
    pods.push(pod(i, claimedAt - 2000, 4000, claimedAt));
  }
  return pods;
}

describe('sizing settings from annotations', () => {
  const defaults = { minSize: 3, maxSize: 3, ...SIZING_DEFAULTS };

  test('when the sizing annotations are set, then they override the defaults', () => {
    assert.deepEqual(settingsOf({ [MIN_SIZE]: '1', [MAX_SIZE]: '40', [TARGET_MISS_RATE]: '0.05', [RATE_WINDOW]: '20' }, defaults),
      { minSize: 1, maxSize: 40, targetMissRate: 0.05, rateWindowS: 20, scaleDownWindowS: 300 });
  });

  test('when a sizing annotation is out of bounds, then the settings are refused with a reason naming it', () => {
    for (const [key, value] of [[TARGET_MISS_RATE, '0'], [TARGET_MISS_RATE, '1'], [TARGET_MISS_RATE, 'often'], [RATE_WINDOW, '2'], [RATE_WINDOW, '1.5']]) {
      const got = settingsOf({ [key as string]: value as string }, defaults);
      assert.equal(typeof got, 'string');
      assert.match(got as string, new RegExp(`^${(key as string).replace(/\./g, '\\.')} "`));
    }
  });
});

describe('sizing inputs from the pod watch', () => {
  test('when two replicas see the same pods in any order, and again as the watch repeats them, then they decide the same size', () => {
    const now = 1_800_000_000_000;
    const pods = claimedPods(now, 2, 30);
    fc.assert(fc.property(fc.shuffledSubarray(pods, { minLength: pods.length }), fc.array(fc.nat(pods.length - 1), { maxLength: 20 }), (order, repeats) => {
      const a = new Sizer(0);
      const b = new Sizer(0);
      for (const p of pods) a.seen(p, 'assigned');
      for (const p of order) b.seen(p, 'assigned');
      for (const i of repeats) b.seen(pods[i] as PodInfo, 'assigned');
      assert.deepEqual(b.decide('chatbot', adaptive, 1, now + 3000), a.decide('chatbot', adaptive, 1, now + 3000));
    }));
  });

  test('when a replica has just started and sees fewer claims than the others did, then it never shrinks the pool', () => {
    const now = 1_800_000_000_000;
    const fresh = new Sizer(now - 5000);
    for (const p of claimedPods(now, 2, 4)) fresh.seen(p, 'assigned');
    assert.equal(fresh.decide('chatbot', adaptive, 30, now).target, 30);
    const old = new Sizer(now - historyMs(adaptive));
    old.seen(pod(9, now - 10_000, 3000), 'assigned');
    assert.ok(old.decide('chatbot', adaptive, 30, now).target < 30);
  });

  test('when no pod had turned Ready yet at an earlier tick, then that tick is sized with the first refill times, not a default', () => {
    const now = 1_800_000_000_000;
    const sizer = new Sizer(0);
    for (let i = 0; i < 4; i++) sizer.seen({ ...pod(i, now, 3000, now - 40_000 + i * 2500), readySince: undefined }, 'assigned');
    sizer.seen(pod(10, now - 3000, 3000), 'assigned');
    const d = sizer.decide('chatbot', adaptive, 1, now);
    assert.equal(d.refillS, 3);
    assert.ok(d.target <= 6, `sized to ${d.target}`);
  });

  test('when pods start slower than the refill samples say, then the refill time rises while they start, and falls back when they are gone', () => {
    const now = 1_800_000_000_000;
    const sizer = new Sizer(0);
    for (let i = 0; i < 20; i++) sizer.seen(pod(i, now - 60_000 + i * 1000, 3000), 'assigned');
    assert.equal(sizer.decide('chatbot', adaptive, 2, now).refillS, 3);
    const slow = [30, 31, 32].map((i) => ({ ...pod(i, now, 0), phase: 'Pending', ready: false, readySince: undefined, createdAt: now - 8000 }));
    for (const p of slow) sizer.seen(p, 'assigned');
    assert.equal(sizer.decide('chatbot', adaptive, 2, now).refillS, 6, 'three pods 7 s into their start, capped at twice 3 s');
    for (const p of slow) sizer.gone(p);
    assert.equal(sizer.decide('chatbot', adaptive, 2, now).refillS, 3);
  });

  test('when no pod of the pool was ever seen Ready, then the size is kept, not sized for a refill time nobody measured', () => {
    const now = 1_800_000_000_000;
    const sizer = new Sizer(0);
    assert.equal(sizer.decide('chatbot', adaptive, 7, now).target, 7);
    sizer.seen(pod(1, now - 10_000, 3000), 'assigned');
    assert.equal(sizer.decide('chatbot', adaptive, 7, now).target, 1);
  });

  test('when claims had waited, then the observed miss rate is their share of the window', () => {
    const now = 1_800_000_000_000;
    const sizer = new Sizer(0);
    [pod(1, now - 9000, 4000, now - 5000, 0), pod(2, now - 9000, 4000, now - 4000, 800), pod(3, now - 9000, 4000, now - 3000, 0), pod(4, now - 9000, 4000, now - 2000, 0)]
      .forEach((p) => sizer.seen(p, 'assigned'));
    assert.equal(sizer.observedMissRate('chatbot', adaptive, now), 0.25);
  });
});

describe('adaptive sizing on the kubernetes backend', () => {
  test('when another replica grows the pool and its Deployment changes many times within a second, then this replica shrinks it only after two ticks', async () => {
    const api = new FakeApi();
    api.deployments.set('chatbot-worker', poolDeployment('chatbot', 'chatbot-worker', { [MIN_SIZE]: '1', [MAX_SIZE]: '50' }));
    let watched = 0;
    const { pool } = await poolWith(api, 200, { now: () => Date.now() + watched });
    watched = 24 * 3600_000; // as if this replica had watched the pods for a day: it may shrink pools
    api.handlers.upsert(api.addWarm('w1', '127.0.9.1'));
    for (let i = 0; i < 100 && api.scaled !== 1; i++) await sleep(20);
    assert.equal(api.scaled, 1);
    await sleep(1200); // past the scaler's gap between two writes
    const writes = api.scales.length;
    for (let i = 0; i < 6; i++) {
      api.putDeployment({ ...(api.deployments.get('chatbot-worker') as DeploymentInfo), replicas: 10 });
      await sleep(50);
    }
    assert.equal(api.scales.length, writes, 'no shrink on the events of one moment');
    for (let i = 0; i < 150 && api.scaled !== 1; i++) await sleep(20);
    assert.equal(api.scaled, 1, 'shrunk back once the decisions held');
    await pool.stop();
  });

  test('when the slowest pods of an adaptive pool are claimed and deleted, then the pool does not shrink before its stabilization window', async () => {
    const api = new FakeApi();
    api.deployments.set('chatbot-worker', poolDeployment('chatbot', 'chatbot-worker', { [MIN_SIZE]: '1', [MAX_SIZE]: '50', [RATE_WINDOW]: '8' }));
    let watched = 0;
    const now = () => Date.now() + watched;
    const { pool } = await poolWith(api, 200, { now });
    watched = 24 * 3600_000; // as if this replica had watched the pods for a day: it may shrink pools
    // 24 claimed pods took 4 s to start, 30 warm ones 3 s: the 90th percentile is 4 s.
    const claimed = claimedPods(now() - 2000, 3, 8);
    for (const p of claimed) api.handlers.upsert(p);
    for (let i = 0; i < 30; i++) api.handlers.upsert(pod(100 + i, now() - 30_000, 3000));
    for (let i = 0; i < 100 && (api.scaled ?? 0) <= 1; i++) await sleep(50);
    await sleep(1500);
    const grown = api.scaled ?? 0;
    assert.ok(grown > 10, `scaled to ${grown}`);
    // Their sessions end: what they told of the refill time still holds for the ticks after they turned Ready.
    for (const p of claimed) api.handlers.remove(p);
    await sleep(3000);
    assert.equal(api.scaled, grown);
    await pool.stop();
  });

  test('when three replicas decide the same resize at the same moment, then one write lands and one resize is reported', async () => {
    const api = new FakeApi();
    const seen = api.deployments.get('chatbot-worker') as DeploymentInfo;
    const resized: string[] = [];
    const scalers = ['a', 'b', 'c'].map((replica) => new Scaler({
      api, logger: createLogger('silent'), reachable: () => undefined,
      resized: (deployment, was, replicas) => resized.push(`${replica}: ${deployment} ${was} -> ${replicas}`),
    }));
    for (const scaler of scalers) scaler.observe('chatbot-worker', seen.replicas, seen.resourceVersion, 7);
    await sleep(100);
    for (const scaler of scalers) scaler.stop();
    assert.deepEqual(api.scales, ['chatbot-worker=7']);
    assert.equal(resized.length, 1, resized.join('; '));
  });

  test('when an adaptive pool shows claims, then its Deployment is scaled to the model\'s size, with an Event and metrics naming the inputs', async () => {
    const api = new FakeApi();
    api.deployments.set('chatbot-worker', poolDeployment('chatbot', 'chatbot-worker', { [MIN_SIZE]: '1', [MAX_SIZE]: '50', [RATE_WINDOW]: '8' }));
    const { pool, metrics } = await poolWith(api);
    for (const p of claimedPods(Date.now() - 2000, 3, 8)) api.handlers.upsert(p);
    for (let i = 0; i < 100 && (api.scaled ?? 0) <= 1; i++) await sleep(50);
    const target = api.scaled ?? 0;
    assert.ok(target > 10, `scaled to ${target}`);
    const gauge = async (name: keyof typeof metrics) => ((await (metrics[name] as { get(): Promise<{ values: { labels: { pool?: string }; value: number }[] }> }).get()).values.find((v) => v.labels.pool === 'chatbot')?.value);
    assert.equal(await gauge('poolTargetSize'), target);
    assert.ok(Math.abs((await gauge('poolRefillSeconds') ?? 0) - 4) < 1e-9);
    assert.ok((await gauge('poolPredictedMissRate') ?? 1) <= 0.01);
    const event = api.events.find((e) => e.reason === 'PoolResized' && e.message.includes(`-> ${target} replicas`));
    assert.match(event?.message ?? '', /^pool chatbot: \d+ -> \d+ replicas; [\d.]+ claims\/s, refill 4 s, target miss rate 0.01, predicted [\d.e-]+; bounds 1-50$/);
    assert.equal(event?.object.name, 'chatbot-worker');
    await pool.stop();
  });
});
