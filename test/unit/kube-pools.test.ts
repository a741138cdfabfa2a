import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLAIMED_AT, LAST_ACTIVITY, MAX_SIZE, MIN_SIZE, type DeploymentInfo, type PodInfo } from '../../controller/src/pool/kubernetes/index.js';
import { FakeApi, poolDeployment, poolWith } from './fake-kube.js';

const PENDING = Symbol('pending');
const settled = <T>(p: Promise<T>): Promise<T | typeof PENDING> => Promise.race([p, new Promise<typeof PENDING>((r) => setImmediate(() => r(PENDING)))]);

async function until(what: string, check: () => boolean, ms = 2000): Promise<void> {
  for (const start = Date.now(); !check(); await sleep(5)) {
    if (Date.now() - start > ms) assert.fail(`timed out waiting until ${what}`);
  }
}

/** A backend on a fake API with the pools `chatbot` and `small`. */
async function twoPools(timeoutMs = 200) {
  const api = new FakeApi();
  api.deployments.set('small-worker', poolDeployment('small'));
  return { api, ...(await poolWith(api, timeoutMs)) };
}

const hash = (c: string): string => c.repeat(40);

describe('kubernetes pools from Deployments', () => {
  test('when two pool Deployments exist, then both are listed and scaled, and a claim takes the first listed pool with a warm pod', async () => {
    const { api, pool } = await twoPools();
    assert.deepEqual([...pool.pools()].sort(), ['chatbot', 'small']);
    await until('both Deployments are scaled', () => api.scales.length === 2);
    assert.deepEqual(api.scales.sort(), ['chatbot-worker=3', 'small-worker=3']);
    api.handlers.upsert(api.addWarm('c1', '127.0.9.1', 'chatbot'));
    const fallback = await pool.claim({ hash: hash('a'), client: 'c', pools: ['small', 'chatbot'] });
    assert.deepEqual([fallback.pool, fallback.worker], ['chatbot', 'c1'], 'small has no warm pod: chatbot serves');
    api.handlers.upsert(api.addWarm('c2', '127.0.9.2', 'chatbot'));
    api.handlers.upsert(api.addWarm('s1', '127.0.9.3', 'small'));
    const first = await pool.claim({ hash: hash('b'), client: 'c', pools: ['small', 'chatbot'] });
    assert.deepEqual([first.pool, first.worker], ['small', 's1'], 'the first listed pool wins when it has a warm pod');
    assert.deepEqual(pool.snapshot().pools, {
      chatbot: { warm: 1, warming: 0, assigned: 1, size: 3 },
      small: { warm: 0, warming: 0, assigned: 1, size: 3 },
    });
    await pool.stop();
  });

  test('when a claim on two pools finds no warm pod, then it waits and is served by whichever pool turns warm first', async () => {
    const { api, pool } = await twoPools(5000);
    for (const [c, second] of [['c', 'small'], ['d', 'chatbot']] as const) {
      const waiting = pool.claim({ hash: hash(c), client: 'c', pools: ['chatbot', 'small'] });
      assert.equal(await settled(waiting), PENDING);
      api.handlers.upsert(api.addWarm(`${second}-${c}`, '127.0.9.4', second));
      const got = await waiting;
      assert.deepEqual([got.pool, got.worker], [second, `${second}-${c}`]);
    }
    await pool.stop();
  });

  test('when a pool Deployment is applied while running, then it is claimable; when deleted, it takes no claim while its sessions go on', async () => {
    const api = new FakeApi();
    const { pool } = await poolWith(api, 5000);
    assert.deepEqual(pool.pools(), ['chatbot']);
    api.putDeployment(poolDeployment('small'));
    await until('the new pool is listed', () => pool.pools().includes('small'));
    await until('the new pool is scaled', () => api.scales.includes('small-worker=3'));
    api.handlers.upsert(api.addWarm('s1', '127.0.9.1', 'small'));
    const s = await pool.claim({ hash: hash('e'), client: 'c', pools: ['small'] });
    assert.equal(s.pool, 'small');
    const waiting = pool.claim({ hash: hash('f'), client: 'c', pools: ['small'] });
    assert.equal(await settled(waiting), PENDING);
    api.deleteDeployment('small-worker');
    await assert.rejects(waiting, { code: 'no_warm_worker' }, 'a claim waiting for the deleted pool alone fails at once');
    assert.deepEqual(pool.pools(), ['chatbot']);
    api.handlers.upsert(api.addWarm('s2', '127.0.9.2', 'small'));
    await assert.rejects(pool.claim({ hash: hash('f'), client: 'c', pools: ['small'] }), { code: 'no_warm_worker' }, 'a warm pod of a deleted pool is not claimed');
    assert.equal(pool.lookup(s.hash)?.worker, 's1', 'the session of the deleted pool goes on');
    assert.deepEqual(Object.keys(pool.snapshot().pools), ['chatbot']);
    await pool.stop();
  });

  test('when someone else scales a pool Deployment, then the watch shows it and its replicas are set back', async () => {
    const api = new FakeApi();
    const { pool } = await poolWith(api);
    await until('scaled to 3', () => api.scaled === 3);
    api.putDeployment({ ...(api.deployments.get('chatbot-worker') as DeploymentInfo), replicas: 7 });
    await until('scaled back to 3', () => api.scales.length === 2 && api.scaled === 3);
    await pool.stop();
  });

  test('when something else keeps setting a pool Deployment\'s replicas back, then the writes space out instead of looping', async () => {
    const api = new FakeApi();
    const { pool } = await poolWith(api);
    await until('scaled to 3', () => api.scaled === 3);
    // Another writer that undoes every write of ours at once (a replica with another default).
    const write = api.scaleDeployment.bind(api);
    api.scaleDeployment = async (name, replicas) => {
      await write(name, replicas);
      api.putDeployment({ ...(api.deployments.get(name) as DeploymentInfo), replicas: 7 });
    };
    api.putDeployment({ ...(api.deployments.get('chatbot-worker') as DeploymentInfo), replicas: 7 });
    // A shrink waits for two ticks of decisions (1-2 s); then each undone write doubles the gap.
    await sleep(3500);
    await pool.stop();
    assert.ok(api.scales.length >= 2 && api.scales.length <= 6, `${api.scales.length} writes in 3.5 s`);
  });

  test('when no pool Deployment exists, then the backend is not ready and says why, and turns ready once one is applied', async () => {
    const api = new FakeApi();
    api.deployments.clear();
    const { pool } = await poolWith(api);
    assert.equal(pool.isReady(), false);
    assert.match(pool.snapshot().problem ?? '', /no pool Deployment/);
    api.putDeployment(poolDeployment('chatbot'));
    await until('ready', () => pool.isReady());
    assert.equal(pool.snapshot().problem, undefined);
    await pool.stop();
  });

  test('when a Deployment labelled as a pool lacks the pool or free label in its selector, then it is no pool and an Event says why', async () => {
    const api = new FakeApi();
    const broken = poolDeployment('small');
    api.deployments.set('small-worker', { ...broken, selector: { 'warmpool.dev/pool': 'small' } });
    const { pool, metrics } = await poolWith(api);
    assert.deepEqual(pool.pools(), ['chatbot']);
    const event = api.events.find((e) => e.object.name === 'small-worker');
    assert.deepEqual([event?.object.kind, event?.reason, event?.type], ['Deployment', 'InvalidPool', 'Warning']);
    assert.match(event?.message ?? '', /selector matchLabels lack assigned: not_assigned/);
    const errors = (await metrics.poolConfigErrors.get()).values.find((v) => v.labels.pool === 'small');
    assert.equal(errors?.value, 1);
    await pool.stop();
  });
});

describe('kubernetes pool settings from annotations', () => {
  test('when a size annotation is bad, then it is reported once (log, metric, Event) and the pool keeps its last good settings', async () => {
    const api = new FakeApi();
    const { pool, metrics } = await poolWith(api);
    const put = (annotations: Record<string, string>) => api.putDeployment({ ...(api.deployments.get('chatbot-worker') as DeploymentInfo), annotations });
    await until('scaled to the default', () => api.scaled === 3);
    put({ [MIN_SIZE]: 'lots' });
    await until('the problem shows', () => pool.snapshot().pools.chatbot?.problem !== undefined);
    assert.equal(pool.snapshot().pools.chatbot?.size, 3, 'no good settings yet: the defaults');
    put({ [MIN_SIZE]: '2', [MAX_SIZE]: '2' });
    await until('scaled to the new size', () => api.scaled === 2, 4000);
    assert.equal(pool.snapshot().pools.chatbot?.problem, undefined);
    put({ [MIN_SIZE]: '6', [MAX_SIZE]: '5' });
    await until('the problem shows', () => pool.snapshot().pools.chatbot?.problem !== undefined);
    put({ [MIN_SIZE]: '6', [MAX_SIZE]: '5', other: 'a change that keeps the bad value' });
    await sleep(10);
    assert.equal(pool.snapshot().pools.chatbot?.size, 2, 'the last good settings stay');
    assert.equal(api.scaled, 2);
    const events = api.events.filter((e) => e.reason === 'InvalidPoolSettings').map((e) => e.message);
    assert.deepEqual(events, [
      'pool chatbot: warmpool.dev/min-size "lots" is not a whole number from 0 to 10000; keeping min-size 3, max-size 3',
      'pool chatbot: warmpool.dev/min-size 6 is over warmpool.dev/max-size 5; keeping min-size 2, max-size 2',
    ]);
    assert.equal((await metrics.poolConfigErrors.get()).values.find((v) => v.labels.pool === 'chatbot')?.value, 2);
    await pool.stop();
  });

  test('when only min-size is set above the default max-size, then it is a fixed size, not an error', async () => {
    const api = new FakeApi();
    api.deployments.set('chatbot-worker', poolDeployment('chatbot', 'chatbot-worker', { [MIN_SIZE]: '8' }));
    const { pool } = await poolWith(api);
    await until('scaled to 8', () => api.scaled === 8);
    assert.equal(pool.snapshot().pools.chatbot?.problem, undefined);
    await pool.stop();
  });
});

describe('kubernetes claims whose delivery is never confirmed', () => {
  test('when a claim is not confirmed within the bound, then any replica ends it as orphan; a confirmed one stays', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    api.addWarm('w2', '127.0.9.2');
    const { pool, metrics } = await poolWith(api, 200, { orphanSweepMs: 10, undeliveredMs: 100, activityFlushMs: 20 });
    const lost = await pool.claim({ hash: hash('1'), client: 'c', pools: ['chatbot'] });
    const kept = await pool.claim({ hash: hash('2'), client: 'c', pools: ['chatbot'] });
    pool.confirm(kept);
    const activity = (p: PodInfo) => Date.parse(p.annotations[LAST_ACTIVITY] ?? '') > Date.parse(p.annotations[CLAIMED_AT] ?? '');
    await until('the flush wrote the confirmation', () => activity(api.pods.get(kept.worker) as PodInfo));
    const confirmed = api.pods.get(kept.worker) as PodInfo;
    api.handlers.upsert(confirmed);
    await until('the unconfirmed claim\'s pod is deleted', () => !api.pods.has(lost.worker));
    await sleep(150);
    assert.ok(api.pods.has(kept.worker), 'the confirmed session stays');
    assert.equal((await metrics.sessionsEnded.get()).values.find((v) => v.labels.reason === 'orphan')?.value, 1);
    await pool.stop();
  });

  test('when the confirm write fails, then it stays pending and the flush writes it', async () => {
    const api = new FakeApi();
    api.addWarm('w1', '127.0.9.1');
    const { pool } = await poolWith(api, 200, { activityFlushMs: 20 });
    const s = await pool.claim({ hash: hash('3'), client: 'c', pools: ['chatbot'] });
    api.beforePatch = () => {
      api.beforePatch = undefined;
      throw Object.assign(new Error('kubernetes patch cancelled'), { code: 'ETIMEDOUT' });
    };
    pool.confirm(s);
    const activity = () => Date.parse((api.pods.get(s.worker) as PodInfo).annotations[LAST_ACTIVITY] ?? '');
    const claimedAt = Date.parse((api.pods.get(s.worker) as PodInfo).annotations[CLAIMED_AT] ?? '');
    await until('the flush wrote the activity', () => activity() > claimedAt);
    assert.equal(api.patches, 3, 'the claim, the failed confirm write, the flush');
    await pool.stop();
  });
});
