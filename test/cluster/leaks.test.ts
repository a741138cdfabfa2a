/**
 * Hundreds to thousands of sessions through one replica, one after another: nothing may
 * accumulate. Claimed pods must all be gone, open sockets must not grow, and the heap retained
 * after a full garbage collection must stay where it was. LEAK_SESSIONS sets the count: 300 in
 * `npm test` (a socket or a pod kept per session shows within that), 2,000 in
 * `npm run test:soak`, which CI runs after `npm test` (a slow heap trend needs the length, and
 * the length is about 12 minutes on two cores).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { eventually } from '../integration/harness.js';
import { churn, footprint, INSPECTABLE, type FootprintSample } from './churn.js';
import { poolFixture, type PoolFixture } from './fixture.js';
import { kubeconfigPath } from './paths.js';

const SESSIONS = Number(process.env.LEAK_SESSIONS ?? 300);
const POOL_SIZE = 10;
const MiB = 2 ** 20;

describe('leaks', () => {
  let f: PoolFixture;
  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-leaks', { MODEL_LOAD_DELAY_MS: '0' });
  });
  after(() => f.teardown());

  test(`when ${SESSIONS} sessions are created and ended in sequence, then no pod stays claimed, sockets do not grow and the retained heap stays flat`, async (t) => {
    const c = await f.controller('leaks', { POOL_SIZE: String(POOL_SIZE), CLAIM_TIMEOUT_MS: '30000', ...INSPECTABLE });
    await eventually(`${POOL_SIZE} warm pods`, () => f.warmReady(POOL_SIZE), 120_000);
    const every = Math.max(1, Math.floor(SESSIONS / 20));
    const run = await churn(c, SESSIONS, every);
    assert.deepEqual(run.failures.slice(0, 5), [], `${run.failures.length} of ${SESSIONS} sessions failed`);

    await eventually('no claimed pod', async () => ((await f.claimed()).length === 0 ? true : undefined), 60_000);
    await eventually(`${POOL_SIZE} warm pods again`, () => f.warmReady(POOL_SIZE), 120_000);

    // The first samples (after a warm-up of `every` sessions) set the baseline; a socket kept per
    // ended session would push the count up by hundreds, idle keep-alive churn by one or two.
    const samples = run.samples.slice(1);
    const early = samples.slice(0, Math.max(1, Math.floor(samples.length / 4)));
    const baseline = Math.max(...early.map((s) => s.sockets));
    const settled = await eventually('sockets back to the early level', async () => {
      const now = await footprint(c, SESSIONS);
      return now.sockets <= baseline + 1 ? now : undefined;
    }, 30_000).catch(() => undefined);
    const first = samples[0] as FootprintSample;
    const last = samples[samples.length - 1] as FootprintSample;
    t.diagnostic(`${SESSIONS} sessions in ${run.seconds.toFixed(0)} s (${(SESSIONS / run.seconds).toFixed(1)}/s)`);
    t.diagnostic(`rss first ${(first.rssBytes / MiB).toFixed(1)} MiB, last ${(last.rssBytes / MiB).toFixed(1)} MiB`);
    t.diagnostic(`heap after GC first ${(first.heapUsedBytes / MiB).toFixed(1)} MiB, last ${(last.heapUsedBytes / MiB).toFixed(1)} MiB`);
    t.diagnostic(`sockets first ${first.sockets}, last ${last.sockets}, early max ${baseline}; fds first ${first.fds}, last ${last.fds}`);
    assert.ok(settled, `open sockets grew: early max ${baseline}, samples ${samples.map((s) => s.sockets).join(' ')}`);
    // Bounded caches (10,000 tombstones of ~100 bytes, the rate-limit table) may fill by a
    // megabyte; anything kept per session (a socket, a response, a closure) is kilobytes each.
    const allowance = 2 * MiB + SESSIONS * 1024;
    assert.ok(last.heapUsedBytes <= first.heapUsedBytes + allowance, `retained heap rose from ${(first.heapUsedBytes / MiB).toFixed(1)} to ${(last.heapUsedBytes / MiB).toFixed(1)} MiB over ${SESSIONS} sessions`);
  });
});
