import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import type { PoolBackend, PoolSnapshot, SessionWorker } from '../../controller/src/pool/types.js';
import { histogramTotals, Ring, StatusHistory, windowBetween } from '../../controller/src/status/history.js';
import { ENDS_KEPT, StatusReporter } from '../../controller/src/status/report.js';

const HASH = 'a'.repeat(40);

function snapshotWith(pools: PoolSnapshot['pools'], pendingClaims = 0): PoolSnapshot {
  return { backend: 'kubernetes', warm: 0, warming: 0, assigned: 0, pendingClaims, pools };
}

describe('status history', () => {
  test('when more items than its capacity are pushed, then a ring keeps the latest, oldest first', () => {
    const ring = new Ring<number>(3);
    for (let i = 1; i <= 5; i++) ring.push(i);
    assert.deepEqual(ring.values(), [3, 4, 5]);
  });

  test('when claims are observed between two readings, then the window has their count, mean and the 95th percentile\'s bucket', async () => {
    const metrics = createMetrics();
    const before = await histogramTotals(metrics.claimWait);
    for (const s of [0.004, 0.004, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.2]) metrics.claimWait.observe(s);
    const w = windowBetween(before, await histogramTotals(metrics.claimWait));
    assert.equal(w.count, 20);
    assert.ok(Math.abs((w.meanS ?? 0) - (0.008 + 17 * 0.02 + 0.2) / 20) < 1e-9);
    assert.equal(w.p95S, 0.025, '19 of 20 are at or under 25 ms');
    const after = await histogramTotals(metrics.claimWait);
    assert.deepEqual(windowBetween(after, after), { count: 0, meanS: null, p95S: null });
    metrics.claimWait.observe(100);
    assert.equal(windowBetween(after, await histogramTotals(metrics.claimWait)).p95S, null, 'past the last bucket');
  });

  test('when a pool reports adaptive sizing, then its samples carry the target, and the history stays within its capacity', async () => {
    const metrics = createMetrics();
    let t = 1000;
    const pools = { chat: { warm: 2, warming: 1, assigned: 3, size: 3, sizing: { target: 5, arrivalsPerS: 0.4 } } };
    const history = new StatusHistory({ snapshot: () => snapshotWith(pools, 2), metrics, now: () => t }, 4);
    for (let i = 0; i < 6; i++) {
      metrics.claimDuration.observe(0.01);
      await history.sample();
      t += 500;
    }
    const samples = history.samples();
    assert.equal(samples.length, 4);
    assert.deepEqual(samples.map((s) => s.at), [2000, 2500, 3000, 3500]);
    assert.deepEqual(samples[3]?.pools.chat, { warm: 2, warming: 1, assigned: 3, size: 3, target: 5 });
    assert.equal(samples[3]?.queue, 2);
    assert.equal(samples[3]?.claimLatency.count, 1, 'each sample counts its own interval');
  });
});

describe('status report', () => {
  function reporter(sessions: SessionWorker[], now: number) {
    const metrics = createMetrics();
    // A pool's `sizing` section is what adaptive sizing adds to the backend's figures.
    const chat = { warm: 1, warming: 0, assigned: 1, size: 2, sizing: { target: 2, why: 'fixed' } };
    const backend = {
      snapshot: () => snapshotWith({ chat }),
      sessions: () => sessions,
      isReady: () => true,
      watchState: () => 'reconnecting',
    } as unknown as PoolBackend;
    const history = new StatusHistory({ snapshot: backend.snapshot, metrics }, 10);
    const r = new StatusReporter({
      replica: 'r-1', backend, metrics, history, sampleEveryMs: 5000,
      expiresAt: (s) => s.createdAt + 60_000, accepting: () => true,
      lastProblem: () => ({ at: now - 1, line: 'pod informer lost the API server: ECONNREFUSED' }),
      now: () => now,
    });
    return { r, metrics };
  }

  test('when sessions, claims and ends are known, then the report shows them by hash prefix, per pool, newest end first', async () => {
    const now = 100_000;
    const session = { hash: HASH, worker: 'w', endpoint: { host: '127.0.0.1', port: 1 }, createdAt: now - 30_000, lastActivity: now, client: 'c', pool: 'chat', version: '1' };
    const { r, metrics } = reporter([session], now);
    metrics.claimsTotal.inc({ pool: 'chat', result: 'claimed' }, 3);
    metrics.claimsTotal.inc({ pool: 'chat', result: 'conflict' });
    metrics.claimsTotal.inc({ pool: '', result: 'pool_not_found' }, 2);
    metrics.sessionsEnded.inc({ pool: 'chat', reason: 'idle' });
    r.recordEnd({ hash: 'b'.repeat(40), pool: 'chat', reason: 'idle', createdAt: now - 9000, at: now - 2000 });
    r.recordEnd({ hash: 'c'.repeat(40), pool: 'chat', reason: 'lost', at: now - 1000 });
    const report = await r.report();
    assert.deepEqual(report.pools.chat?.claims, { claimed: 3, conflict: 1 });
    assert.deepEqual(report.pools.chat?.ends, { idle: 1 });
    assert.deepEqual(report.pools.chat?.sizing, { target: 2, why: 'fixed' });
    assert.deepEqual(report.unplacedClaims, { pool_not_found: 2 });
    assert.deepEqual(report.sessions, { count: 1, shown: [{ hash: 'a'.repeat(12), pool: 'chat', ageS: 30, expiresInS: 30 }] });
    assert.deepEqual(report.recentEnds, [
      { hash: 'c'.repeat(12), pool: 'chat', reason: 'lost', at: now - 1000 },
      { hash: 'b'.repeat(12), pool: 'chat', reason: 'idle', at: now - 2000, livedS: 7 },
    ]);
    assert.deepEqual(report.health, { ready: true, watch: 'reconnecting', lastProblem: { at: now - 1, line: 'pod informer lost the API server: ECONNREFUSED' } });
    assert.ok(!JSON.stringify(report).includes(HASH.slice(0, 13)), 'no more of a hash than its prefix');
  });

  test('when more sessions end than it keeps, then the report lists the latest ones only', async () => {
    const { r } = reporter([], 1);
    for (let i = 0; i < ENDS_KEPT + 5; i++) r.recordEnd({ hash: `${i}`.padStart(40, '0'), pool: 'chat', reason: 'deleted', at: i });
    const ends = (await r.report()).recentEnds;
    assert.equal(ends.length, ENDS_KEPT);
    assert.equal(ends[0]?.at, ENDS_KEPT + 4);
  });
});

describe('logger problems', () => {
  test('when a warning or an error is logged, then onProblem gets its message and error; info does not reach it', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { destination: new Writable({ write: (_c, _e, done) => done() }), onProblem: (l) => lines.push(l) });
    logger.info('fine');
    logger.warn({ err: 'ECONNREFUSED', retryInMs: 500 }, 'pod informer lost the API server');
    logger.error({ err: new Error('boom') }, 'cannot end session');
    logger.warn('plain');
    assert.deepEqual(lines, ['pod informer lost the API server: ECONNREFUSED', 'cannot end session: boom', 'plain']);
  });
});
