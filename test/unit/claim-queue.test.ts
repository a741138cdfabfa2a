import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClaimQueue, claimInOrder } from '../../controller/src/pool/claim-queue.js';

function queue(timeoutMs = 1000, maxPending = 10) {
  return new ClaimQueue({ timeoutMs, maxPending, retryAfterS: () => 3 });
}

describe('claim queue', () => {
  test('when workers turn warm one by one, then waiting claims get them in arrival order', async () => {
    const q = queue();
    const free: string[] = [];
    const got: string[] = [];
    const claims = ['a', 'b', 'c'].map((who) => claimInOrder(q, ['p'], () => free.shift()).then((w) => got.push(`${who}:${w}`)));
    await new Promise((r) => setImmediate(r));
    assert.equal(q.length, 3);
    for (const w of ['w1', 'w2', 'w3']) {
      free.push(w);
      q.wake('p');
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(claims);
    assert.deepEqual(got, ['a:w1', 'b:w2', 'c:w3']);
  });

  test('when a woken claim finds nothing, then it waits again at the head of the line', async () => {
    const q = queue();
    const free: string[] = [];
    const first = claimInOrder(q, ['p'], () => free.shift());
    await new Promise((r) => setImmediate(r));
    const second = claimInOrder(q, ['p'], () => free.shift());
    await new Promise((r) => setImmediate(r));
    q.wake('p');
    await new Promise((r) => setImmediate(r));
    assert.equal(q.length, 2);
    free.push('w1');
    q.wake('p');
    assert.equal(await first, 'w1');
    free.push('w2');
    q.wake('p');
    assert.equal(await second, 'w2');
  });

  test('when nobody waits and a worker is free, then the claim takes it without queueing', async () => {
    const q = queue();
    assert.equal(await claimInOrder(q, ['p'], () => 'w'), 'w');
    assert.equal(q.length, 0);
  });

  test('when the timeout passes, then the claim fails with no_warm_worker and its Retry-After', async () => {
    const q = queue(20);
    await assert.rejects(claimInOrder(q, ['p'], () => undefined), (err: { code: string; status: number; retryAfterS: number }) => {
      assert.equal(err.code, 'no_warm_worker');
      assert.equal(err.status, 503);
      assert.equal(err.retryAfterS, 3);
      return true;
    });
    assert.equal(q.length, 0);
  });

  test('when the queue is full, then a new claim fails at once with claim_queue_full', async () => {
    const q = queue(200, 1);
    const waiting = claimInOrder(q, ['p'], () => undefined);
    await new Promise((r) => setImmediate(r));
    await assert.rejects(claimInOrder(q, ['p'], () => undefined), { code: 'claim_queue_full', status: 503 });
    await assert.rejects(waiting, { code: 'no_warm_worker' });
  });
});
