/**
 * A hung API server (SIGSTOP: connections are accepted, nothing answers) under load: sessions
 * keep routing from the watch cache, claims answer 503 backend_unavailable instead of hanging,
 * the controller's connections to the API server stay bounded because each request is cancelled
 * at its deadline, and after SIGCONT everything recovers by itself.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { chat, createSession, metric, type Controller } from '../integration/harness.js';
import { apiServerPort, pauseComponent } from './components.js';
import { poolFixture, type PoolFixture } from './fixture.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

/** The client adapter's request sockets (maxSockets) plus the watch's own connection, and slack for sockets closing. */
const SOCKET_BOUND = 16 + 4;
const PAUSE_MS = 9000;

/** Open TCP connections from process `pid` to `port` on loopback (their inodes): its socket fds matched against the kernel's tables. */
function connectionsTo(pid: number, port: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1] as string);
    } catch {
      // closed meanwhile
    }
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const open = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    for (const row of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const cols = row.trim().split(/\s+/);
      if (cols.length > 9 && (cols[2] as string).endsWith(`:${hexPort}`) && inodes.has(cols[9] as string)) open.add(cols[9] as string);
    }
  }
  return open;
}

/** Until `ms` have passed: samples `pid`'s connections to `port` every 100 ms. */
async function sampleConnections(pid: number, port: number, ms: number) {
  const started = Date.now();
  let max = 0;
  let early: Set<string> | undefined;
  let last = new Set<string>();
  while (Date.now() - started < ms) {
    last = connectionsTo(pid, port);
    max = Math.max(max, last.size);
    if (!early && Date.now() - started > 1500) early = new Set(last);
    await sleep(100);
  }
  return { max, early: early ?? new Set<string>(), last };
}

/** Until `ms` have passed: waves of 10 concurrent claims, each answer with its time. */
async function claimWaves(c: Controller, ms: number) {
  const started = Date.now();
  const claims: { status: number; error?: string; ms: number }[] = [];
  while (Date.now() - started < ms) {
    await Promise.all(Array.from({ length: 10 }, async () => {
      const t0 = Date.now();
      const res = await fetch(`${c.base}/sessions`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      claims.push({ status: res.status, ...((await res.json()) as { error?: string }), ms: Date.now() - t0 });
    }));
  }
  return claims;
}

/** Until `ms` have passed: one chat on each session every 200 ms (each must answer 200); resolves the count. */
async function chatAlong(c: Controller, ids: string[], ms: number): Promise<number> {
  const started = Date.now();
  let chats = 0;
  while (Date.now() - started < ms) {
    for (const id of ids) await chat(c, id, `message ${chats++}`);
    await sleep(200);
  }
  return chats;
}

describe('kubernetes backend with a hung API server', () => {
  let f: PoolFixture;
  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-hung');
  });
  after(() => f.teardown());

  test('when the API server hangs under load, then sessions keep routing, claims answer 503 backend_unavailable, sockets stay bounded, and all recovers after SIGCONT', async (t) => {
    const c = await f.controller('hung', { POOL_SIZE: '4', CLAIM_TIMEOUT_MS: '30000', MAX_SESSIONS_PER_CLIENT: '100' });
    await waitUntil('4 warm pods', () => f.warmReady(4), 60_000);
    const held = [await createSession(c), await createSession(c)];
    await waitUntil('2 warm pods again', () => f.warmReady(2), 60_000);
    const pid = c.proc.pid as number;
    const port = apiServerPort();
    // The watch's connection and idle keep-alive ones: they may well stay open through the pause.
    const beforePause = connectionsTo(pid, port);
    const apiServer = pauseComponent('kube-apiserver');
    const [sockets, claims, chats] = await Promise.all([
      sampleConnections(pid, port, PAUSE_MS),
      claimWaves(c, PAUSE_MS - 3000),
      chatAlong(c, held, PAUSE_MS),
    ]).finally(() => apiServer.resume());
    // A connection opened for a request during the pause ends with that request, at its deadline.
    const outlived = [...sockets.early].filter((inode) => sockets.last.has(inode) && !beforePause.has(inode)).length;
    t.diagnostic(`paused ${PAUSE_MS} ms: ${claims.length} claims (slowest ${Math.max(...claims.map((x) => x.ms))} ms), ${chats} chats, at most ${sockets.max} connections to the API server (${beforePause.size} before), ${outlived} opened in the first 1.5 s still open at the end`);
    assert.ok(claims.length >= 10);
    for (const claim of claims) assert.deepEqual([claim.status, claim.error], [503, 'backend_unavailable']);
    assert.ok(chats >= 4, 'existing sessions routed from the cache during the pause');
    assert.ok(sockets.max <= SOCKET_BOUND, `at most ${SOCKET_BOUND} connections to the API server (saw ${sockets.max})`);
    assert.equal(outlived, 0, 'no connection opened during the pause outlived its request\'s deadline');
    assert.ok(await metric(c, 'warmpool_kube_requests_total', 'verb="patch",code="timeout"') > 0, 'the cancelled requests were counted');

    const fresh = await waitUntil('claims work again', async () => {
      const res = await fetch(`${c.base}/sessions`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      return res.status === 201 ? ((await res.json()) as { id: string }).id : undefined;
    }, 30_000);
    await chat(c, fresh, 'after the pause');
    for (const id of held) await chat(c, id, 'after the pause');
    // Claim writes cancelled during the pause may have landed after it: their pods are ended.
    await waitUntil('only the live sessions hold pods', async () => ((await f.claimed()).length === held.length + 1 ? true : undefined), 30_000);
  });
});
