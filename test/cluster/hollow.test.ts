/**
 * Claims at a size the real worker processes would not fit on a small machine: a pool of
 * hundreds of hollow pods (Running and Ready on the cluster's hollow Nodes, with no process) and
 * two controller replicas taking a concurrent stream of sessions. Correctness only (timings are
 * `npm run bench`, part scale): no pod claimed twice, every claim on a Ready pod with an IP, and
 * the ReplicaSet refills the pool.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Controller } from '../integration/harness.js';
import { hashOf, isReady, poolFixture, type Pod, type PoolFixture } from './fixture.js';
import { waitUntil } from './wait.js';

const POOL_SIZE = 300;

/** When the pod's Ready condition last turned (whole seconds, as the API server keeps it). */
const readySince = (pod: Pod): number =>
  Date.parse((pod.status?.conditions as { type: string; lastTransitionTime?: string }[] | undefined)?.find((c) => c.type === 'Ready')?.lastTransitionTime ?? '');
const CLAIMS = 240;
const CONCURRENCY = 40;

describe('claims on a pool of hollow pods', () => {
  let f: PoolFixture;
  let replicas: Controller[];

  before(async () => {
    f = await poolFixture('warmpool-hollow', {}, { hollow: true });
    const env = { POOL_SIZE: String(POOL_SIZE), MAX_SESSIONS: '1000', MAX_SESSIONS_PER_CLIENT: '1000' };
    replicas = await Promise.all(['hollow-a', 'hollow-b'].map((name) => f.controller(name, env)));
  });

  after(async () => {
    await f.teardown();
  });

  test(`when ${CLAIMS} sessions are claimed ${CONCURRENCY} at a time through two replicas from ${POOL_SIZE} hollow pods, then each has a pod of its own that was Ready, and the pool refills`, async () => {
    await waitUntil(`${POOL_SIZE} warm hollow pods`, () => f.warmReady(POOL_SIZE), 120_000);
    const ids: string[] = [];
    const statuses: number[] = [];
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < CLAIMS; i = next++) {
        const res = await fetch(`${(replicas[i % 2] as Controller).base}/sessions`, { method: 'POST' });
        const body = (await res.json()) as { id?: string };
        statuses.push(res.status);
        if (body.id) ids.push(body.id);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert.deepEqual([...new Set(statuses)], [201]);

    const claimed = await f.claimed();
    const byHash = new Map(claimed.map((p) => [p.metadata.labels?.['warmpool.dev/session'], p]));
    assert.equal(claimed.length, CLAIMS, 'as many claimed pods as sessions');
    assert.equal(byHash.size, CLAIMS, 'no two claimed pods carry one session');
    for (const id of ids) {
      const pod = byHash.get(hashOf(id));
      assert.ok(pod, `session ${id.slice(0, 6)} has a claimed pod`);
      assert.ok(isReady(pod) && pod.status?.podIP?.startsWith('127.'), `${pod.metadata.name} is Ready with a loopback pod IP`);
      assert.ok(readySince(pod) <= Date.parse(pod.metadata.annotations?.['warmpool.dev/claimed-at'] ?? ''), `${pod.metadata.name} was Ready before its claim`);
    }

    await waitUntil(`the pool refilled to ${POOL_SIZE} warm pods`, () => f.warmReady(POOL_SIZE), 120_000);
  });
});
