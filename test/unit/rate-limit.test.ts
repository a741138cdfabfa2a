import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RateLimiter } from '../../controller/src/sessions/rate-limit.js';

/** A limiter on a clock the test moves by hand. */
function limiter(perMinute: number, maxKeys?: number) {
  let now = 0;
  const l = new RateLimiter(perMinute, () => now, maxKeys);
  return { l, advance: (ms: number) => { now += ms; } };
}

function drain(l: RateLimiter, key: string): number {
  let taken = 0;
  while (l.take(key) === 0) taken++;
  return taken;
}

describe('session creation rate limit', () => {
  test('when a client starts a burst, then it gets perMinute creations and then a wait in whole seconds', () => {
    const { l } = limiter(6);
    assert.equal(drain(l, 'a'), 6);
    assert.equal(l.take('a'), 10, 'one token refills in 60/6 s');
  });

  test('when time passes, then tokens come back at the configured rate and no faster', () => {
    const { l, advance } = limiter(6);
    drain(l, 'a');
    advance(9_000);
    assert.equal(l.take('a'), 1, 'one second short of a token');
    advance(1_000);
    assert.equal(l.take('a'), 0);
    assert.equal(l.take('a'), 10);
    advance(3_600_000);
    assert.equal(drain(l, 'a'), 6, 'an idle client gets its burst back, never more');
  });

  test('when one client is limited, then another client is not', () => {
    const { l } = limiter(2);
    drain(l, 'a');
    assert.equal(l.take('b'), 0);
  });

  test('when the rate is 0, then nothing is limited and nothing is stored', () => {
    const { l } = limiter(0);
    for (let i = 0; i < 1000; i++) assert.equal(l.take('a'), 0);
    assert.equal(l.size, 0);
  });

  test('when the table outgrows its bound, then refilled buckets go first and a limited client stays limited', () => {
    const { l, advance } = limiter(60, 10);
    drain(l, 'hot');
    for (let i = 0; i < 9; i++) l.take(`k${i}`);
    advance(2_000);
    l.take('new');
    assert.ok(l.size <= 10, `table bounded, holds ${l.size}`);
    assert.equal(drain(l, 'hot'), 2, 'the drained client (the oldest entry) kept its bucket: two tokens refilled in 2 s, not a fresh burst');
  });

  test('when a flood of distinct clients fills the table, then it stays bounded', () => {
    const { l } = limiter(60, 100);
    for (let i = 0; i < 10_000; i++) l.take(`flood${i}`);
    assert.ok(l.size <= 100, `table bounded, holds ${l.size}`);
  });
});
