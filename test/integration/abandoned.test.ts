import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createSession, eventually, metric, pool, startController, waitWarm } from './harness.js';

describe('clients that stop waiting', () => {
  test('when clients give up while waiting for a warm worker, then they leave the queue and no worker is claimed for them', async () => {
    // Workers take 1.5 s to load: the one warm worker goes to the first session, the rest wait.
    const c = await startController({ POOL_SIZE: '1', MODEL_LOAD_DELAY_MS: '1500' });
    try {
      await waitWarm(c, 1);
      const held = await createSession(c);
      const gaveUp = await Promise.all(Array.from({ length: 4 }, () =>
        fetch(`${c.base}/sessions`, { method: 'POST', signal: AbortSignal.timeout(200) }).then((r) => r.status, (err: Error) => err.name)));
      assert.deepEqual(gaveUp, Array(4).fill('TimeoutError'));
      await eventually('the queue to empty', async () => ((await pool(c)).pendingClaims === 0 ? true : undefined));
      assert.equal(await metric(c, 'warmpool_claims_total', 'result="client_closed"'), 4);
      await waitWarm(c, 1);
      const p = await pool(c);
      assert.equal(p.assigned, 1, 'only the live session holds a worker');
      assert.equal(p.warm, 1, 'the replacement stays warm for the next client');
      assert.equal((await fetch(`${c.base}/sessions/${held}/history`)).status, 200);
    } finally {
      await c.stop();
    }
  });
});
