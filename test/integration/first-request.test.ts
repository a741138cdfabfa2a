import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { alive, createSession, eventually, metric, ROOT, startController, waitWarm, type Controller } from './harness.js';

const FAILING = `'${process.execPath}' '${path.join(ROOT, 'test/integration/fixtures/first-request-failing-worker.mjs')}'`;

/** The first request of an implicit session, which the fixture worker fails as the headers ask. */
async function implicit(c: Controller, headers: Record<string, string>, body: string) {
  const res = await fetch(`${c.base}/echo?q=1`, { method: 'POST', headers: { 'content-type': 'text/plain', ...headers }, body });
  return { status: res.status, id: res.headers.get('x-session-id'), cookie: res.headers.get('set-cookie'), json: (await res.json()) as Record<string, unknown> };
}

describe('a fresh worker failing the first request of an implicit session', () => {
  let c: Controller;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'warmpool-first-request-'));
    c = await startController({ LOCAL_POOLS: `flaky=3:${FAILING}`, SESSION_CREATE_RATE: '0', MAX_SESSIONS_PER_CLIENT: '100' });
    await waitWarm(c, 3);
  });
  after(async () => {
    await c.stop();
  });

  for (const how of ['reset', '500']) {
    test(`when it fails with ${how === 'reset' ? 'a dropped connection' : 'a 500'}, then the request and its body go to another worker under a new session, and the failed worker is gone`, async () => {
      await waitWarm(c, 3);
      const orphans = await metric(c, 'warmpool_sessions_ended_total', 'pool="flaky",reason="orphan"');
      const once = path.join(dir, `once-${how}`);
      const body = `a body sent once by the client, replayed by the router (${how})`;
      const res = await implicit(c, { 'x-fail-how': how, 'x-fail-once': once }, body);
      assert.equal(res.status, 200);
      assert.deepEqual([res.json.url, res.json.body], ['/echo?q=1', body]);
      const failedPid = Number(readFileSync(once, 'utf8'));
      assert.notEqual(res.json.pid, failedPid);
      assert.ok(res.id, 'the client gets its session id');
      assert.ok(res.cookie?.includes(res.id), 'and its cookie, for the same session');
      const again = (await (await fetch(`${c.base}/sessions/${res.id}/echo`)).json()) as { pid: number };
      assert.equal(again.pid, res.json.pid, 'the id names the worker that answered');
      await eventually('the failed worker to stop', async () => (alive(failedPid) ? undefined : true));
      assert.equal(await metric(c, 'warmpool_sessions_ended_total', 'pool="flaky",reason="orphan"'), orphans + 1);
      assert.ok(c.output.some((l) => l.includes('worker failed the first request of its session')));
    });
  }

  test('when every worker fails it, then the router stops after three workers and the client gets the last one\'s answer', async () => {
    await waitWarm(c, 3);
    const orphans = await metric(c, 'warmpool_sessions_ended_total', 'pool="flaky",reason="orphan"');
    const claimed = await metric(c, 'warmpool_claims_total', 'pool="flaky",result="claimed"');
    const res = await implicit(c, { 'x-fail-how': '500', 'x-fail-always': '1' }, 'doomed');
    assert.deepEqual([res.status, res.json.error], [500, 'broken']);
    assert.ok(res.id);
    assert.equal(await metric(c, 'warmpool_claims_total', 'pool="flaky",result="claimed"'), claimed + 3);
    await eventually('two failed workers ended', async () =>
      (await metric(c, 'warmpool_sessions_ended_total', 'pool="flaky",reason="orphan"')) === orphans + 2 ? true : undefined);
  });

  test('when a worker fails a request of an explicit session, then nothing is sent again: the client gets the failure', async () => {
    await waitWarm(c, 3);
    const orphans = await metric(c, 'warmpool_sessions_ended_total', 'pool="flaky",reason="orphan"');
    const id = await createSession(c);
    const res = await fetch(`${c.base}/sessions/${id}/echo`, { method: 'POST', headers: { 'x-fail-how': 'reset', 'x-fail-always': '1' }, body: 'x' });
    assert.deepEqual([res.status, ((await res.json()) as { error: string }).error], [502, 'upstream_unavailable']);
    assert.equal(await metric(c, 'warmpool_sessions_ended_total', 'pool="flaky",reason="orphan"'), orphans);
  });

  test('when the first request\'s body is over the limit, then 413 comes before any claim', async () => {
    const claimed = await metric(c, 'warmpool_claims_total', 'result="claimed"');
    const big = 'x'.repeat(1024 * 1024 + 1);
    // Chunked: no Content-Length to refuse it by, so only reading it shows the size.
    const res = await fetch(`${c.base}/echo`, { method: 'POST', body: new Blob([big]).stream(), duplex: 'half' } as RequestInit);
    assert.deepEqual([res.status, ((await res.json()) as { error: string }).error], [413, 'body_too_large']);
    assert.equal(await metric(c, 'warmpool_claims_total', 'result="claimed"'), claimed);
  });
});

test('when the worker after a failed one cannot be had in time, then the client gets 503 and no session id or cookie of the ended one', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warmpool-first-request-'));
  // One warm worker, and no time to wait for its replacement to start.
  const c = await startController({ LOCAL_POOLS: `one=1:${FAILING}`, CLAIM_TIMEOUT_MS: '1', SESSION_CREATE_RATE: '0' });
  try {
    await waitWarm(c, 1);
    const res = await implicit(c, { 'x-fail-how': '500', 'x-fail-once': path.join(dir, 'once') }, 'x');
    assert.deepEqual([res.status, res.json.error], [503, 'no_warm_worker']);
    assert.deepEqual([res.id, res.cookie], [null, null]);
  } finally {
    await c.stop();
  }
});
