import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decide, historyMs, missProbability, refillEstimate, sizeFor, startingRefill, DEFAULT_REFILL_S, SETTLE_MS, type Arrivals, type SizingSettings } from '../../controller/src/pool/sizing.js';

const settings: SizingSettings = { minSize: 1, maxSize: 100, targetMissRate: 0.01, rateWindowS: 60, scaleDownWindowS: 300 };

/** Claims landed at the given epoch ms; those in `late` had waited. */
function arrivals(times: number[], late: number[] = []): Arrivals {
  const within = (list: number[], from: number, to: number) => list.filter((t) => t >= from && t < to).length;
  return { count: (from, to) => within(times, from, to), waited: (from, to) => within(late, from, to) };
}

/** `rate` claims per second, evenly spaced, over [fromMs, toMs). */
function steady(rate: number, fromMs: number, toMs: number): number[] {
  const out: number[] = [];
  for (let t = fromMs; t < toMs; t += 1000 / rate) out.push(Math.round(t));
  return out;
}

const T0 = 1_000_000_000_000;

describe('sizing model', () => {
  test('when the load is small, then the miss probability is Erlang C', () => {
    assert.ok(Math.abs(missProbability(0.5, 1) - 0.5) < 1e-12, 'one pod: a claim waits while it refills');
    assert.ok(Math.abs(missProbability(1, 2) - 1 / 3) < 1e-12);
    assert.equal(missProbability(2, 2), 1, 'a load the pool cannot carry: every claim waits');
    assert.equal(missProbability(5, 0), 1);
    assert.equal(missProbability(0, 1), 0);
  });

  test('when a size is computed, then it is the smallest whose miss probability is within the target', () => {
    fc.assert(fc.property(fc.double({ min: 0.01, max: 5000, noNaN: true }), fc.constantFrom(0.1, 0.01, 0.001), (load, eps) => {
      const n = sizeFor(load, eps);
      assert.ok(missProbability(load, n) <= eps, `${n} pods for load ${load}`);
      assert.ok(n === 1 || missProbability(load, n - 1) > eps, `${n - 1} would do for load ${load}`);
    }));
    assert.equal(sizeFor(0, 0.01), 0);
  });

  test('when the load crosses from the exact formula to the Halfin-Whitt approximation, then the size moves by at most 0.1 %', () => {
    for (const eps of [0.1, 0.01, 0.001]) assert.ok(Math.abs(sizeFor(5000.001, eps) - sizeFor(5000, eps)) <= 5);
  });

  test('when refill samples are given, then the estimate is their 90th percentile, and a default without any', () => {
    assert.equal(refillEstimate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 9);
    assert.equal(refillEstimate([4]), 4);
    assert.equal(refillEstimate([]), DEFAULT_REFILL_S);
  });

  test('when pods are still starting, then their ages count as samples, capped at twice the estimate, and never lower it', () => {
    const samples = Array.from({ length: 18 }, () => 3);
    assert.equal(startingRefill(samples, []), 3);
    assert.equal(startingRefill(samples, [5, 5, 5]), 5, 'three slow starts of 21 reach the 90th percentile');
    assert.equal(startingRefill(samples, [600, 600, 600]), 6, 'a pod that never starts counts as twice the estimate');
    assert.equal(startingRefill([3, 3, 3, 4], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), 4, 'young starting pods do not lower it');
  });
});

describe('sizing decisions', () => {
  const base = { refill: () => 5, settings, current: 1, completeSince: 0 };

  test('when min equals max, then the target is that size whatever the claims', () => {
    const fixed = { ...settings, minSize: 4, maxSize: 4 };
    const busy = arrivals(steady(20, T0 - 60_000, T0));
    assert.equal(decide({ ...base, arrivals: busy, settings: fixed, now: T0 }).target, 4);
    assert.equal(decide({ ...base, arrivals: arrivals([]), settings: fixed, now: T0 }).target, 4);
  });

  test('when claims arrive faster, then the target grows at the next tick, up to max-size', () => {
    const quiet = decide({ ...base, arrivals: arrivals([]), now: T0 });
    assert.equal(quiet.target, 1);
    const burst = arrivals(steady(4, T0 - 15_000, T0));
    const d = decide({ ...base, arrivals: burst, now: T0 + 3000 });
    assert.ok(d.target >= sizeFor(d.rate * 5, 0.01));
    assert.ok(d.target > 10);
    assert.ok(d.predictedMissRate <= 0.01);
    assert.equal(decide({ ...base, arrivals: arrivals(steady(400, T0 - 15_000, T0)), now: T0 + 3000 }).target, 100);
  });

  test('when claims stop, then the target holds for the stabilization window and then falls by bounded steps to min-size', () => {
    const claims = arrivals(steady(4, T0 - 120_000, T0));
    const peak = decide({ ...base, arrivals: claims, now: T0 + 3000 }).target;
    let last = peak;
    for (let s = 3; s <= 1500; s += 1) {
      const { target } = decide({ ...base, arrivals: claims, now: T0 + s * 1000 });
      if (s <= 300) assert.equal(target, peak, `at ${s} s`);
      assert.ok(target <= last, `grew at ${s} s`);
      assert.ok(target >= Math.floor(last * 0.75) || s % 75 !== 0, `fell more than a step at ${s} s`);
      last = target;
    }
    assert.equal(last, 1);
  });

  test('when every claim of the window had to wait, then the demand counted is doubled', () => {
    const times = steady(2, T0 - 60_000, T0);
    const hits = decide({ ...base, arrivals: arrivals(times), now: T0 + 2000 });
    const saturated = decide({ ...base, arrivals: arrivals(times, times), now: T0 + 2000 });
    assert.ok(Math.abs(saturated.rate - 2 * hits.rate) < 1e-9);
    assert.ok(saturated.target > hits.target);
  });

  test('when the refill time falls, then the pool shrinks only after the stabilization window', () => {
    const claims = arrivals(steady(2, T0 - 600_000, T0 + 600_000));
    const refill = (tick: number) => (tick < T0 ? 10 : 5);
    const before = decide({ ...base, arrivals: claims, refill, now: T0 }).target;
    assert.equal(decide({ ...base, arrivals: claims, refill, now: T0 + 200_000 }).target, before);
    assert.ok(decide({ ...base, arrivals: claims, refill, now: T0 + 600_000 }).target < before);
  });

  test('when two replicas decide within the same tick, then they agree', () => {
    const claims = arrivals(steady(3, T0 - 200_000, T0).filter((t) => t % 7 !== 0));
    fc.assert(fc.property(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 }), (a, b) => {
      const at = T0 + 50_000 + SETTLE_MS;
      assert.deepEqual(decide({ ...base, arrivals: claims, now: at + a }), decide({ ...base, arrivals: claims, now: at + b }));
    }));
  });

  test('when a replica has watched for less than the history a decision reads, then it never shrinks the pool', () => {
    const started = T0;
    const d = decide({ ...base, arrivals: arrivals([]), current: 12, completeSince: started, now: started + 10_000 });
    assert.equal(d.target, 12);
    const later = decide({ ...base, arrivals: arrivals([]), current: 12, completeSince: started, now: started + historyMs(settings) });
    assert.equal(later.target, 1);
  });

  test('when a replica has watched for less than the history, then it grows the pool for the demand of now, not for the peaks of its partial past', () => {
    // A burst that ended 120 s ago, within the stabilization window: a replica that watched it
    // holds the pool up; one that started during it sees part of it and leaves the size alone.
    const claims = arrivals(steady(4, T0 - 180_000, T0 - 120_000));
    const watchedAll = decide({ ...base, arrivals: claims, current: 3, now: T0 });
    assert.ok(watchedAll.target > 10, `${watchedAll.target}`);
    const startedLate = decide({ ...base, arrivals: claims, current: 3, completeSince: T0 - 130_000, now: T0 });
    assert.equal(startedLate.target, 3);
    const busyNow = decide({ ...base, arrivals: arrivals(steady(4, T0 - 60_000, T0)), current: 3, completeSince: T0 - 130_000, now: T0 + 2000 });
    assert.equal(busyNow.target, busyNow.recommended);
    assert.ok(busyNow.target > 10, `${busyNow.target}`);
  });
});
