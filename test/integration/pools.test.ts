import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { alive, eventually, metric, pool, ROOT, startController, type Controller } from './harness.js';

/** Answers 404 to everything but /healthz: a worker with no settings route. */
const BARE = `'${process.execPath}' '${path.join(ROOT, 'test/integration/fixtures/ws-reset-worker.mjs')}'`;
const REFERENCE = `'${process.execPath}' '${path.join(ROOT, 'worker-image/dist/server.js')}'`;
/** The reference worker with a slow start, so a claimed pool stays empty for a while. */
const SLOW = (ms: number) => `env MODEL_LOAD_DELAY_MS=${ms} ${REFERENCE}`;

async function create(c: Controller, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${c.base}/sessions`, {
    method: 'POST',
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function warm(c: Controller, pools: Record<string, number>): Promise<void> {
  await eventually('warm pools', async () => {
    const p = (await pool(c)) as unknown as { pools: Record<string, { warm: number }> };
    return Object.entries(pools).every(([name, n]) => (p.pools[name]?.warm ?? 0) >= n) ? true : undefined;
  });
}

describe('several local pools', () => {
  let c: Controller;
  before(async () => {
    c = await startController({ SESSION_CREATE_RATE: '0', LOCAL_POOLS: `big=2:${REFERENCE};small=1:${SLOW(1500)}`, TOKEN_DELAY_MS: '0' });
    await warm(c, { big: 2, small: 1 });
  });
  after(async () => {
    await c.stop();
  });

  test('when a session names a pool, then its worker comes from that pool, and the session says so', async () => {
    const small = await create(c, { pool: 'small' });
    assert.equal(small.status, 201);
    assert.equal(small.json.pool, 'small');
    const seen = (await (await fetch(`${c.base}/sessions/${String(small.json.id)}`)).json()) as { pool: string };
    assert.equal(seen.pool, 'small');
    const p = (await pool(c)) as unknown as { pools: Record<string, { assigned: number }> };
    assert.equal(p.pools.small?.assigned, 1);
    assert.equal(await metric(c, 'warmpool_claims_total', 'pool="small",result="claimed"'), 1);
    await fetch(`${c.base}/sessions/${String(small.json.id)}`, { method: 'DELETE' });
  });

  test('when the first pool of a list has no warm worker, then the next one serves, and the first is waited for when none has one', async () => {
    await warm(c, { big: 2, small: 1 });
    const first = await create(c, { pool: ['small', 'big'] });
    const fallback = await create(c, { pool: ['small', 'big'] });
    assert.deepEqual([first.json.pool, fallback.json.pool], ['small', 'big']);
    // small's replacement takes 1.5 s to load; big still has one warm: take it, then wait on small.
    const big = await create(c, { pool: 'big' });
    assert.equal(big.json.pool, 'big');
    const waited = await create(c, { pool: ['small', 'big'] });
    assert.equal(waited.status, 201);
    assert.ok(['small', 'big'].includes(String(waited.json.pool)));
  });

  test('when a session names an unknown pool, or none while there are two, then 404 pool_not_found or 400 pool_required, and no worker is claimed', async () => {
    const before = (await pool(c)).assigned;
    assert.deepEqual([(await create(c, { pool: 'nope' })).status, (await create(c, { pool: ['big', 'nope'] })).json.error], [404, 'pool_not_found']);
    const none = await create(c);
    assert.deepEqual([none.status, none.json.error], [400, 'pool_required']);
    assert.equal((await pool(c)).assigned, before);
  });
});

describe('session settings', () => {
  let c: Controller;
  let failOnce: string;
  before(async () => {
    failOnce = path.join(mkdtempSync(path.join(os.tmpdir(), 'warmpool-fail-once-')), 'failed');
    const flaky = `env FAIL_ONCE_FILE=${failOnce} '${process.execPath}' '${path.join(ROOT, 'test/integration/fixtures/settings-once-failing-worker.mjs')}'`;
    c = await startController({ SESSION_CREATE_RATE: '0', MAX_SESSIONS_PER_CLIENT: '100', LOCAL_POOLS: `chatbot=2:${REFERENCE};bare=1:${BARE};flaky=2:${flaky}`, DEFAULT_POOL: 'chatbot', TOKEN_DELAY_MS: '0' });
    await warm(c, { chatbot: 2, bare: 1, flaky: 2 });
  });
  after(async () => {
    await c.stop();
  });

  test('when a session has a system prompt, then its worker\'s replies follow it, and the settings reach no log line', async () => {
    const s = await create(c, { settings: { system: 'containers', user: 'ada-secret-user' } });
    assert.equal(s.status, 201);
    assert.equal(s.json.pool, 'chatbot', 'DEFAULT_POOL');
    const reply = (await (await fetch(`${c.base}/sessions/${String(s.json.id)}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'hello there' }) })).json()) as { reply: string };
    assert.match(reply.reply, /^Containers\b/);
    assert.ok(!c.output.some((l) => l.includes('ada-secret-user') && !l.includes('"worker stdout"')), 'the controller never logs settings');
  });

  test('when the worker refuses the settings, then the client gets 400 settings_rejected with its words, and that worker is gone', async () => {
    const before = (await pool(c)) as unknown as { pools: Record<string, { assigned: number }> };
    const s = await create(c, { settings: { colour: 'blue' } });
    assert.deepEqual([s.status, s.json.error], [400, 'settings_rejected']);
    assert.match(String(s.json.message), /unknown setting "colour"/);
    const after = (await pool(c)) as unknown as { pools: Record<string, { assigned: number }> };
    assert.equal(after.pools.chatbot?.assigned, before.pools.chatbot?.assigned);
  });

  test('when a worker fails to take the settings, then it is released and the session lands on another worker of the pool', async () => {
    const s = await create(c, { pool: 'flaky' });
    assert.equal(s.status, 201);
    assert.equal(await metric(c, 'warmpool_claims_total', 'pool="flaky",result="delivery_failed"'), 1);
    const served = (await (await fetch(`${c.base}/sessions/${String(s.json.id)}/whoami`)).json()) as { pid: number };
    const failed = c.output.find((l) => l.includes('worker failed to take the session settings'));
    assert.ok(failed, 'the failure is logged');
    assert.ok(alive(served.pid));
  });

  test('when a worker without a /session route gets empty settings, then the session works; with settings, they are refused', async () => {
    const plain = await create(c, { pool: 'bare' });
    assert.equal(plain.status, 201);
    await warm(c, { bare: 1 });
    const refused = await create(c, { pool: 'bare', settings: { system: 'x' } });
    assert.deepEqual([refused.status, refused.json.error], [400, 'settings_rejected']);
    assert.match(String(refused.json.message), /takes no settings/);
  });

  test('when POST /sessions gets any body at all, then it answers 201 or a JSON 4xx with a stable code, never 5xx', async () => {
    const codes = new Set(['invalid_body', 'pool_not_found', 'settings_too_large', 'unsupported_media_type', 'body_too_large', 'settings_rejected']);
    const body = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.record({ pool: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 20 }), fc.constantFrom('chatbot', 'bare', ['nope', 'chatbot'])), settings: fc.jsonValue() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.string(),
    );
    await fc.assert(fc.asyncProperty(body, fc.constantFrom('application/json', 'text/plain', 'application/merge-patch+json'), async (raw, type) => {
      const res = await fetch(`${c.base}/sessions`, { method: 'POST', headers: { 'content-type': type }, body: raw });
      const json = (await res.json()) as { id?: string; error?: string };
      if (res.status === 201) {
        await fetch(`${c.base}/sessions/${String(json.id)}`, { method: 'DELETE' });
        return;
      }
      assert.ok(res.status >= 400 && res.status < 500, `${res.status} for ${type} ${raw.slice(0, 80)}`);
      assert.ok(codes.has(String(json.error)), `${String(json.error)} for ${raw.slice(0, 80)}`);
    }), { numRuns: 60 });
  });
});
