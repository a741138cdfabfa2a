import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { describe, test } from 'node:test';
import { ECHO_WORKER, ROOT, createSession, eventually, pool, startController, waitWarm } from './harness.js';

describe('pressure', () => {
  test('when no worker is warm, then a claim waits CLAIM_TIMEOUT_MS and gets 503 no_warm_worker with Retry-After', async () => {
    const c = await startController({ POOL_SIZE: '0', CLAIM_TIMEOUT_MS: '300' });
    try {
      const res = await fetch(`${c.base}/sessions`, { method: 'POST' });
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('retry-after'), '1');
      assert.equal(((await res.json()) as { error: string }).error, 'no_warm_worker');
    } finally {
      await c.stop();
    }
  });

  test('when a claim is waiting and a worker turns warm, then the waiting claim gets it', async () => {
    const c = await startController({ POOL_SIZE: '1', MODEL_LOAD_DELAY_MS: '1500', CLAIM_TIMEOUT_MS: '20000' });
    try {
      await waitWarm(c, 1);
      await createSession(c);
      const waiting = fetch(`${c.base}/sessions`, { method: 'POST' });
      await eventually('the claim to queue', async () => ((await (await fetch(`${c.admin}/pool`)).json()) as { pendingClaims: number }).pendingClaims === 1 || undefined);
      assert.equal((await waiting).status, 201);
    } finally {
      await c.stop();
    }
  });

  test('when MAX_PENDING_CLAIMS are waiting, then one more is refused at once with claim_queue_full', async () => {
    const c = await startController({ POOL_SIZE: '0', CLAIM_TIMEOUT_MS: '5000', MAX_PENDING_CLAIMS: '1' });
    try {
      const first = fetch(`${c.base}/sessions`, { method: 'POST' });
      await eventually('the first claim to queue', async () => ((await (await fetch(`${c.admin}/pool`)).json()) as { pendingClaims: number }).pendingClaims === 1 || undefined);
      const second = await fetch(`${c.base}/sessions`, { method: 'POST' });
      assert.equal(second.status, 503);
      assert.equal(((await second.json()) as { error: string }).error, 'claim_queue_full');
      assert.ok(second.headers.get('retry-after'), 'second.headers.get(\'retry-after\')');
      assert.equal((await first).status, 503);
    } finally {
      await c.stop();
    }
  });

  test('when MAX_SESSIONS are open, then another gets 503 at_capacity; when a client holds MAX_SESSIONS_PER_CLIENT, then it gets 429', async () => {
    const c = await startController({ POOL_SIZE: '3', MAX_SESSIONS: '2', MAX_SESSIONS_PER_CLIENT: '1', TRUST_PROXY: 'true', LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      await waitWarm(c, 3);
      await createSession(c, { 'x-forwarded-for': '203.0.113.1' });
      const again = await fetch(`${c.base}/sessions`, { method: 'POST', headers: { 'x-forwarded-for': '203.0.113.1' } });
      assert.equal(again.status, 429);
      assert.equal(((await again.json()) as { error: string }).error, 'client_session_limit');
      await createSession(c, { 'x-forwarded-for': '203.0.113.2' });
      const full = await fetch(`${c.base}/sessions`, { method: 'POST', headers: { 'x-forwarded-for': '203.0.113.3' } });
      assert.equal(full.status, 503);
      assert.equal(((await full.json()) as { error: string }).error, 'at_capacity');
    } finally {
      await c.stop();
    }
  });

  test('when a client starts sessions faster than SESSION_CREATE_RATE, then it gets 429 rate_limited with Retry-After and other clients still get theirs', async () => {
    const c = await startController({ POOL_SIZE: '2', SESSION_CREATE_RATE: '2', TRUST_PROXY: 'true', LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      const from = (addr: string) => ({ 'x-forwarded-for': addr });
      for (let i = 0; i < 2; i++) {
        const id = await createSession(c, from('203.0.113.1'));
        assert.equal((await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' })).status, 204);
      }
      const third = await fetch(`${c.base}/sessions`, { method: 'POST', headers: from('203.0.113.1') });
      assert.equal(third.status, 429, 'ending sessions does not give creations back');
      assert.equal(((await third.json()) as { error: string }).error, 'rate_limited');
      assert.ok(Number(third.headers.get('retry-after')) >= 1, `Retry-After ${third.headers.get('retry-after')}`);
      const implicit = await fetch(`${c.base}/chat`, { method: 'POST', headers: from('203.0.113.1') });
      assert.equal(implicit.status, 429, 'an implicit session counts as a creation too');
      const forged = await fetch(`${c.base}/sessions`, { method: 'POST', headers: from('198.51.100.9, 203.0.113.1') });
      assert.equal(forged.status, 429, 'entries a client puts before the one its proxy appends are not its identity');
      await createSession(c, from('203.0.113.2'));
    } finally {
      await c.stop();
    }
  });

  test('when auth is on, then the creation rate is kept per API token and a forged X-Forwarded-For changes nothing', async () => {
    const [a, b] = ['token-a-0123456789abcdef', 'token-b-0123456789abcdef'];
    const c = await startController({ POOL_SIZE: '2', SESSION_CREATE_RATE: '1', API_TOKENS: `${a},${b}`, LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      const as = (token: string, addr: string) => ({ authorization: `Bearer ${token}`, 'x-forwarded-for': addr });
      await createSession(c, as(a, '203.0.113.1'));
      const again = await fetch(`${c.base}/sessions`, { method: 'POST', headers: as(a, '203.0.113.99') });
      assert.equal(again.status, 429);
      assert.equal(((await again.json()) as { error: string }).error, 'rate_limited');
      const wrong = await fetch(`${c.base}/sessions`, { method: 'POST', headers: as('not-a-token-0123456789', '203.0.113.1') });
      assert.equal(wrong.status, 401, 'a bad token is refused before it is charged to anyone');
      await createSession(c, as(b, '203.0.113.1'));
    } finally {
      await c.stop();
    }
  });
});

/** fetch refuses to send a Connection header, so hop-by-hop tests go through node:http. */
function rawGet(base: string, path: string, headers: Record<string, string>): Promise<{ url: string; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    http.get(`${base}${path}`, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve(JSON.parse(body) as never));
    }).on('error', reject);
  });
}

describe('bad input', () => {
  test('when ids are unknown or malformed, then the answer is 404 session_not_found as JSON', async () => {
    const c = await startController({ POOL_SIZE: '1', LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      for (const path of ['/sessions/AAAAAAAAAAAAAAAAAAAAAA', '/sessions/AAAAAAAAAAAAAAAAAAAAAA/chat', '/sessions/x/chat', '/sessions/%00%ff/x', '/sessions/%2Fetc%2Fpasswd/x', `/sessions/${'a'.repeat(5000)}/x`]) {
        const res = await fetch(`${c.base}${path}`);
        assert.equal(res.status, 404, path);
        assert.match(res.headers.get('content-type') ?? '', /application\/json/);
        assert.equal(((await res.json()) as { error: string }).error, 'session_not_found', path);
      }
      const header = await fetch(`${c.base}/anything`, { headers: { 'x-session-id': 'not a token' } });
      assert.equal(header.status, 404);
      // An id is matched as written: percent-encoding a live one names no session, on any route.
      const live = await createSession(c);
      const encoded = [...live].map((ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
      for (const [method, path] of [['GET', `/sessions/${encoded}`], ['DELETE', `/sessions/${encoded}`], ['GET', `/sessions/${encoded}/echo`]] as const) {
        const res = await fetch(`${c.base}${path}`, { method });
        assert.equal(res.status, 404, `${method} ${path}`);
      }
      assert.equal((await fetch(`${c.base}/sessions/${live}`)).status, 200, 'the session itself is untouched');
      const method = await fetch(`${c.base}/sessions`, { method: 'GET' });
      assert.equal(method.status, 405);
      assert.equal(((await method.json()) as { error: string }).error, 'method_not_allowed');
    } finally {
      await c.stop();
    }
  });

  test('when a body is over MAX_BODY_BYTES, declared or streamed, then the answer is 413', async () => {
    const c = await startController({ POOL_SIZE: '1', MAX_BODY_BYTES: '1000', LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      await waitWarm(c, 1);
      const id = await createSession(c);
      const declared = await fetch(`${c.base}/sessions/${id}/chat`, { method: 'POST', body: 'x'.repeat(5000) });
      assert.equal(declared.status, 413);
      assert.equal(((await declared.json()) as { error: string }).error, 'body_too_large');
      const chunks = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('y'.repeat(500)));
          controller.close();
        },
      });
      const streamed = await fetch(`${c.base}/sessions/${id}/chat`, { method: 'POST', body: chunks, duplex: 'half' } as RequestInit);
      assert.equal(streamed.status, 413);
      const small = await fetch(`${c.base}/sessions/${id}/chat`, { method: 'POST', body: 'z'.repeat(900) });
      assert.equal(small.status, 200);
      const implicit = await fetch(`${c.base}/chat`, { method: 'POST', body: 'x'.repeat(5000) });
      assert.equal(implicit.status, 413);
      assert.equal(implicit.headers.get('x-session-id'), null, 'no session was made for it');
      assert.equal((await pool(c)).assigned, 1, 'an oversized request costs no worker');
    } finally {
      await c.stop();
    }
  });

  test('when a worker stays silent past UPSTREAM_TIMEOUT_S, then the answer is 504 upstream_timeout and the session goes on', async () => {
    const c = await startController({ POOL_SIZE: '1', UPSTREAM_TIMEOUT_S: '0.5', LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      await waitWarm(c, 1);
      const id = await createSession(c);
      const silent = await fetch(`${c.base}/sessions/${id}/silent`);
      assert.equal(silent.status, 504);
      assert.equal(((await silent.json()) as { error: string }).error, 'upstream_timeout');
      const after = await fetch(`${c.base}/sessions/${id}/echo`);
      assert.equal(after.status, 200);
    } finally {
      await c.stop();
    }
  });

  test('when an environment value is bad, then the controller exits 1 naming the variable', () => {
    const bad: [string, string][] = [['POOL_SIZE', 'three'], ['PORT', '70000'], ['AUTO_SESSION', 'maybe'], ['LOCAL_POOLS', 'no-equals'], ['API_TOKENS', 'short']];
    for (const [name, value] of bad) {
      const run = spawnSync(process.execPath, ['controller/dist/main.js'], { cwd: ROOT, env: { ...process.env, [name]: value }, encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 1, `${name}=${value}`);
      assert.match(run.stderr, new RegExp(`invalid configuration: ${name}`));
    }
  });

  test('when a session is used, then its token reaches neither the logs nor the worker', async () => {
    const c = await startController({ POOL_SIZE: '1', LOCAL_WORKER_CMD: ECHO_WORKER, LOG_LEVEL: 'trace', API_TOKENS: 'test-api-token-0123456789' });
    try {
      await waitWarm(c, 1);
      const id = await createSession(c, { authorization: 'Bearer test-api-token-0123456789', 'x-request-id': 'trace-1234' });
      await eventually('the claim is logged with the request id', () => c.output.find((l) => l.includes('"session claimed"') && l.includes('"reqId":"trace-1234"')));
      const seen = async (init: RequestInit, path = `/sessions/${id}/echo?q=1`) => {
        const res = await fetch(`${c.base}${path}`, init);
        assert.equal(res.status, 200);
        return (await res.json()) as { url: string; headers: Record<string, string> };
      };
      const explicit = await seen({ headers: { cookie: `a=1; warmpool_session=${id}; b=2`, authorization: 'Bearer test-api-token-0123456789' } });
      assert.equal(explicit.url, '/echo?q=1');
      const viaHeader = await rawGet(c.base, '/plain/path', { 'x-session-id': id, connection: 'keep-alive, x-hop', 'x-hop': 'secret' });
      assert.equal(viaHeader.url, '/plain/path');
      for (const got of [explicit, viaHeader]) {
        assert.ok(!JSON.stringify(got).includes(id), 'the worker never sees the token');
        assert.equal(got.headers.authorization, undefined);
        assert.equal(got.headers['x-forwarded-for'], '127.0.0.1');
      }
      assert.equal(explicit.headers.cookie, 'a=1; b=2');
      assert.match(explicit.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/, 'the worker gets a request id');
      assert.equal(viaHeader.headers['x-hop'], undefined);
      const unauthorized = await fetch(`${c.base}/sessions`, { method: 'POST', headers: { authorization: 'Bearer wrong-token-wrong-token' } });
      assert.equal(unauthorized.status, 401);
      await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' });
      await eventually('the end to be logged', () => c.output.some((l) => l.includes('session ended')) || undefined);
      await c.stop();
      assert.ok(!c.output.some((l) => l.includes(id)), 'the token is in no log line');
      assert.ok(!c.output.some((l) => l.includes('test-api-token-0123456789')), 'the API token is in no log line');
    } finally {
      await c.stop();
    }
  });
});

describe('admin port', () => {
  test('when scraped and probed, then it serves the DESIGN metrics, health, readiness and the pool', async () => {
    const c = await startController({ POOL_SIZE: '1', LOCAL_WORKER_CMD: ECHO_WORKER });
    try {
      await waitWarm(c, 1);
      const id = await createSession(c);
      await (await fetch(`${c.base}/sessions/${id}/x`)).text();
      const metrics = await (await fetch(`${c.admin}/metrics`)).text();
      for (const name of ['warmpool_pool_pods', 'warmpool_sessions_active', 'warmpool_claims_total', 'warmpool_claim_duration_seconds', 'warmpool_claim_queue_length', 'warmpool_claim_wait_seconds', 'warmpool_pod_startup_seconds', 'warmpool_proxy_requests_total', 'warmpool_proxy_ttfb_seconds', 'warmpool_websockets_active', 'warmpool_sessions_ended_total', 'warmpool_kube_requests_total', 'process_cpu_seconds_total']) {
        assert.match(metrics, new RegExp(`^# TYPE ${name} `, 'm'), name);
      }
      assert.match(metrics, /^warmpool_claims_total\{pool="chatbot",result="claimed"\} 1$/m);
      assert.match(metrics, /^warmpool_sessions_active 1$/m);
      assert.match(metrics, /^warmpool_proxy_requests_total\{code="200"\} 1$/m);
      assert.ok(!metrics.includes(id), '!metrics.includes(id)');
      assert.equal((await fetch(`${c.admin}/healthz`)).status, 200);
      assert.equal((await fetch(`${c.admin}/readyz`)).status, 200);
      const pool = (await (await fetch(`${c.admin}/pool`)).json()) as Record<string, unknown>;
      assert.equal(pool.assigned, 1);
      assert.equal(pool.backend, 'local');
      assert.equal((pool.config as { poolSize: number }).poolSize, 1);
      const client = await (await fetch(`${c.base}/metrics`, { headers: { 'x-session-id': id } })).text();
      assert.ok(!client.includes('warmpool_'), 'the client port forwards /metrics to the worker, it serves none of its own');
    } finally {
      await c.stop();
    }
  });
});

