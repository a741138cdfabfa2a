/**
 * The status page's data (/status.json) and its guard: figures equal to /pool and /metrics, a
 * bounded history, recent ends, no session id or setting in anything the page serves, the
 * security headers, and API_TOKENS guarding the page by bearer token or login cookie.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sessionHash } from '../../controller/src/sessions/tokens.js';
import { SECURITY_HEADERS } from '../../controller/src/status/routes.js';
import type { StatusReport } from '../../controller/src/status/report.js';
import { eventually, metric, pool, startController, waitWarm, type Controller } from './harness.js';

const TOKEN = 'status-page-token-0123456789';
const SECRET_SETTING = 'never-shown-setting-5f1c2';

async function status(c: Controller, headers: Record<string, string> = {}): Promise<StatusReport> {
  const res = await fetch(`${c.admin}/status.json`, { headers });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json() as Promise<StatusReport>;
}

describe('status page data', () => {
  let c: Controller;
  const ids: string[] = [];
  before(async () => {
    c = await startController({ POOL_SIZE: '2', STATUS_SAMPLE_S: '0.2', STATUS_HISTORY_S: '2', SESSION_CREATE_RATE: '0' });
    await waitWarm(c, 2);
  });
  after(async () => {
    await c.stop();
  });

  test('when sessions are created and one is ended, then /status.json shows them as /pool and /metrics count them', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${c.base}/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ settings: { system: SECRET_SETTING } }),
      });
      assert.equal(res.status, 201);
      ids.push(((await res.json()) as { id: string }).id);
    }
    assert.equal((await fetch(`${c.base}/sessions/${ids[0]}`, { method: 'DELETE' })).status, 204);
    const s = await eventually('a settled pool', async () => {
      const [report, p] = await Promise.all([status(c), pool(c) as unknown as Promise<{ pools: Record<string, unknown> }>]);
      const { claims: _c, ends: _e, ...figures } = report.pools.chatbot ?? {} as never;
      return JSON.stringify(figures) === JSON.stringify(p.pools.chatbot) && report.pools.chatbot?.warm === 2 ? report : undefined;
    });
    assert.equal(s.backend, 'local');
    assert.equal(s.health.watch, 'none');
    assert.equal(s.health.ready, true);
    assert.equal(s.pools.chatbot?.claims.claimed, await metric(c, 'warmpool_claims_total', 'pool="chatbot",result="claimed"'));
    assert.equal(s.pools.chatbot?.claims.claimed, 2);
    assert.equal(s.pools.chatbot?.ends.deleted, 1);
    assert.equal(s.sessions.count, await metric(c, 'warmpool_sessions_active'));
    assert.deepEqual(s.sessions.shown.map((x) => x.hash), [sessionHash(ids[1] as string).slice(0, 12)]);
    assert.deepEqual(s.recentEnds.map((e) => [e.hash, e.reason, e.pool]), [[sessionHash(ids[0] as string).slice(0, 12), 'deleted', 'chatbot']]);
  });

  test('when the charts have sampled longer than STATUS_HISTORY_S, then the history holds that span and no more', async () => {
    await eventually('a full history', async () => ((await status(c)).history.length >= 10 ? true : undefined));
    await new Promise((r) => setTimeout(r, 600));
    const { history } = await status(c);
    assert.equal(history.length, 10);
    assert.ok(history.every((h) => h.pools.chatbot?.size === 2), 'every sample has the pool');
    for (let i = 1; i < history.length; i++) assert.ok((history[i]?.at ?? 0) > (history[i - 1]?.at ?? 0), 'oldest first');
  });

  test('when anything the page serves is read, then no session id and no setting is in it, and the security headers are on', async () => {
    for (const path of ['/', '/status.json', '/assets/app.js', '/assets/style.css', '/assets/favicon.svg']) {
      const res = await fetch(`${c.admin}${path}`);
      assert.equal(res.status, 200, path);
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers.get(name), value, `${path} ${name}`);
      const body = await res.text();
      for (const id of ids) assert.ok(!body.includes(id), `${path} shows a session id`);
      assert.ok(!body.includes(SECRET_SETTING), `${path} shows a setting`);
    }
    assert.match((await fetch(`${c.admin}/`)).headers.get('content-security-policy') ?? '', /default-src 'none'/);
  });
});

describe('status page with API_TOKENS', () => {
  let c: Controller;
  before(async () => {
    c = await startController({ POOL_SIZE: '1', API_TOKENS: TOKEN });
  });
  after(async () => {
    await c.stop();
  });

  test('when no token is given, then the page is a login form and its data is refused; /metrics and probes stay open', async () => {
    const page = await fetch(`${c.admin}/`);
    assert.equal(page.status, 401);
    assert.match(await page.text(), /<form[^>]+action="\/login"/);
    assert.equal((await fetch(`${c.admin}/status.json`)).status, 401);
    assert.equal((await fetch(`${c.admin}/status.json`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401);
    assert.equal((await fetch(`${c.admin}/metrics`)).status, 200);
    assert.equal((await fetch(`${c.admin}/healthz`)).status, 200);
  });

  test('when a script sends a bearer token, then it gets the data', async () => {
    assert.equal((await status(c, { authorization: `Bearer ${TOKEN}` })).backend, 'local');
  });

  test('when the login form posts a token, then a wrong one is refused and a right one sets a cookie that holds no token', async () => {
    const login = (token: string, headers: Record<string, string> = {}) => fetch(`${c.admin}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({ token }).toString(),
    });
    const wrong = await login('not-the-token-0123456789');
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /not one of API_TOKENS/);
    assert.equal(wrong.headers.get('set-cookie'), null);
    assert.equal((await login(TOKEN, { origin: 'http://evil.example' })).status, 403);
    assert.equal((await login(TOKEN, { 'sec-fetch-site': 'cross-site' })).status, 403);

    const right = await login(TOKEN, { origin: c.admin });
    assert.equal(right.status, 303);
    assert.equal(right.headers.get('location'), '/');
    const setCookie = right.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /^warmpool_admin=\d+\.[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    assert.ok(!setCookie.includes(TOKEN));
    const cookie = setCookie.split(';')[0] as string;
    assert.equal((await fetch(`${c.admin}/`, { headers: { cookie } })).status, 200);
    assert.equal((await status(c, { cookie })).replica.length > 0, true);
    const [expiry, mac] = cookie.slice('warmpool_admin='.length).split('.') as [string, string];
    for (const forged of [`${Number(expiry) + 1}.${mac}`, `${expiry}.${mac[0] === 'A' ? 'B' : 'A'}${mac.slice(1)}`]) {
      assert.equal((await fetch(`${c.admin}/status.json`, { headers: { cookie: `warmpool_admin=${forged}` } })).status, 401, forged);
    }
  });
});
