import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { errors } from '../../controller/src/errors.js';
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import { ClaimQueue, claimInOrder } from '../../controller/src/pool/claim-queue.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, SessionWorker } from '../../controller/src/pool/types.js';
import { Admission } from '../../controller/src/sessions/admission.js';
import type { Delivery, Settings } from '../../controller/src/sessions/delivery.js';
import { Sessions } from '../../controller/src/sessions/index.js';
import { choosePools } from '../../controller/src/sessions/placement.js';
import { dueSessions } from '../../controller/src/sessions/reaper.js';
import { sessionHash } from '../../controller/src/sessions/tokens.js';

/**
 * A backend whose sessions are plain objects: claims take from `free` (or wait in a real claim
 * queue), releases record what was asked, and `version` changes stand for another replica's
 * activity writes.
 */
class FakeBackend implements PoolBackend {
  readonly name = 'local';
  readonly live = new Map<string, SessionWorker>();
  readonly released: [string, EndReason][] = [];
  readonly activity: [string, number][] = [];
  free = 0;
  claimDelay: Promise<void> = Promise.resolve();
  private listeners: GoneListener[] = [];
  readonly queue = new ClaimQueue({ timeoutMs: 5000, maxPending: 10, retryAfterS: () => 1 });
  constructor(private readonly now: () => number) {}
  async start() {}
  isReady() { return true; }
  async claim(request: ClaimRequest): Promise<SessionWorker> {
    const s = await claimInOrder(this.queue, request.pools, () => {
      if (this.free === 0) return undefined;
      this.free--;
      const t = this.now();
      const claimed: SessionWorker = { hash: request.hash, worker: `w-${request.hash.slice(0, 4)}`, endpoint: { host: '127.0.0.1', port: 1 }, createdAt: t, lastActivity: t, client: request.client, pool: 'p', version: '1' };
      return claimed;
    }, request.signal);
    await this.claimDelay;
    this.live.set(s.hash, s);
    return s;
  }
  lookup(hash: string) { return this.live.get(hash); }
  async waitForSession(hash: string) { return this.live.get(hash); }
  sessions() { return this.live.values(); }
  sessionCount(client?: string) { return [...this.live.values()].filter((s) => client === undefined || s.client === client).length; }
  async release(s: SessionWorker, reason: EndReason) {
    const current = this.live.get(s.hash);
    if (!current) return false;
    if (reason !== 'deleted' && current.version !== s.version) return false;
    this.live.delete(s.hash);
    this.released.push([s.hash, reason]);
    return true;
  }
  recordActivity(hash: string, at: number) { this.activity.push([hash, at]); }
  pools() { return ['p']; }
  confirm() {}
  snapshot() {
    const counts = { warm: this.free, warming: 0, assigned: this.live.size };
    return { backend: 'fake', ...counts, pendingClaims: this.queue.length, pools: { p: { ...counts, size: 0 } } };
  }
  onGone(l: GoneListener) { this.listeners.push(l); }
  gone(hash: string, kind: 'ended' | 'lost') { this.live.delete(hash); for (const l of this.listeners) l({ hash, worker: 'w', pool: 'p' }, kind, 'test'); }
  async stop() {}
}

const limits = { maxSessions: 3, maxPerClient: 2, createsPerMinute: 0, idleTimeoutMs: 1000, maxLifetimeMs: 10_000, retryAfterS: 1, heartbeatMs: 100, defaultPool: undefined, deliveryTimeoutMs: 1000 };

function setup(deliver: (endpoint: unknown, settings: Settings) => Promise<Delivery> = async () => ({ outcome: 'accepted' })) {
  let t = 1_000_000;
  const clock = { now: () => t, advance: (ms: number) => { t += ms; } };
  const backend = new FakeBackend(clock.now);
  const metrics = createMetrics();
  const sessions = new Sessions(backend, limits, metrics, createLogger('silent'), clock.now, deliver);
  const count = async (name: string, label: string) => {
    const m = (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => Object.values(v.labels).includes(label));
    return m?.value ?? 0;
  };
  return { clock, backend, sessions, count };
}

/** No session yet, of anyone. */
const none = () => 0;

describe('session admission', () => {
  test('when a client holds its cap, then its next session is refused with client_session_limit while others still get one', () => {
    const a = new Admission(limits, () => 0);
    const live = (client?: string) => (client === undefined || client === 'c1' ? 2 : 0);
    assert.throws(() => a.admit('c1', live), (e: Error & { code?: string }) => e.code === 'client_session_limit');
    a.admit('c2', live)();
  });

  test('when claims are in flight, then they count against the caps until they settle', () => {
    const a = new Admission(limits, () => 0);
    const done = [a.admit('c1', none), a.admit('c2', none), a.admit('c3', none)];
    assert.throws(() => a.admit('c4', none), (e: Error & { code?: string }) => e.code === 'at_capacity');
    done[0]?.();
    a.admit('c4', none);
  });

  test('when the create rate is spent, then the next creation gets rate_limited with a retry time', () => {
    const a = new Admission({ ...limits, maxSessions: 100, maxPerClient: 100, createsPerMinute: 2 }, () => 0);
    a.admit('c', none)();
    a.admit('c', none)();
    assert.throws(() => a.admit('c', none), (e: Error & { code?: string; retryAfterS?: number }) => e.code === 'rate_limited' && (e.retryAfterS ?? 0) >= 1);
  });
});

describe('session life', () => {
  test('when a session is idle past the timeout, then the reaper ends it as idle', async () => {
    const { clock, backend, sessions, count } = setup();
    backend.free = 1;
    const { worker } = await sessions.create('c');
    clock.advance(999);
    await sessions.reap();
    assert.equal(backend.released.length, 0);
    clock.advance(1);
    await sessions.reap();
    assert.deepEqual(backend.released, [[worker.hash, 'idle']]);
    assert.equal(await count('warmpool_sessions_ended_total', 'idle'), 1);
  });

  test('when an exchange is in flight, then the heartbeat records activity for the other replicas and the reaper leaves the session alone', async () => {
    const { clock, backend, sessions } = setup();
    backend.free = 1;
    const { worker } = await sessions.create('c');
    const done = sessions.begin(worker.hash);
    backend.activity.length = 0;
    for (let i = 0; i < 30; i++) {
      clock.advance(100);
      (sessions as unknown as { activity: { heartbeat(): void } }).activity.heartbeat();
    }
    assert.equal(backend.activity.length, 30, 'one activity record per heartbeat while in flight');
    await sessions.reap();
    assert.equal(backend.released.length, 0);
    done();
    clock.advance(1000);
    await sessions.reap();
    assert.deepEqual(backend.released.map(([, r]) => r), ['idle']);
  });

  test('when another replica wrote activity after the idle decision, then the conditional end fails and the session keeps routing', async () => {
    const { clock, backend, sessions } = setup();
    backend.free = 1;
    const { token, worker } = await sessions.create('c');
    clock.advance(2000);
    const decided = dueSessions({ sessions: backend.sessions(), lastActivity: (s) => s.lastActivity, busy: () => false, now: clock.now(), limits });
    assert.equal(decided.length, 1);
    backend.live.set(worker.hash, { ...worker, version: '2', lastActivity: clock.now() });
    assert.equal(await backend.release(decided[0]![0], 'idle'), false);
    assert.equal((await sessions.resolve(token)).hash, worker.hash);
  });

  test('when a session passes its lifetime, then it ends as lifetime even with an exchange in flight', async () => {
    const { clock, backend, sessions } = setup();
    backend.free = 1;
    const { worker } = await sessions.create('c');
    sessions.begin(worker.hash);
    clock.advance(10_000);
    await sessions.reap();
    assert.deepEqual(backend.released, [[worker.hash, 'lifetime']]);
  });

  test('when a waiting client leaves, then its claim leaves the queue and no worker is claimed for it', async () => {
    const { backend, sessions, count } = setup();
    const left = new AbortController();
    const waiting = sessions.create('c', { signal: left.signal });
    await new Promise((r) => setImmediate(r));
    assert.equal(backend.queue.length, 1);
    left.abort();
    await assert.rejects(waiting, (e: Error & { code?: string }) => e.code === 'client_closed');
    assert.equal(backend.queue.length, 0);
    backend.free = 1;
    backend.queue.wake('p');
    assert.equal(backend.live.size, 0);
    assert.equal(await count('warmpool_claims_total', 'client_closed'), 1);
  });

  test('when a claim lands after its client left, then it is released at once as abandoned', async () => {
    const { backend, sessions, count } = setup();
    backend.free = 1;
    let land!: () => void;
    backend.claimDelay = new Promise((r) => { land = r; });
    const left = new AbortController();
    const creating = sessions.create('c', { signal: left.signal });
    await new Promise((r) => setImmediate(r));
    left.abort();
    land();
    await assert.rejects(creating, (e: Error & { code?: string }) => e.code === 'client_closed');
    assert.deepEqual(backend.released.map(([, r]) => r), ['abandoned']);
    assert.equal(backend.live.size, 0);
    assert.equal(await count('warmpool_sessions_ended_total', 'abandoned'), 1);
    assert.equal(await count('warmpool_claims_total', 'abandoned'), 1);
  });

  test('when a session ends or its worker is lost, then its id answers 410 with the right code, and an unknown id 404', async () => {
    const { backend, sessions } = setup();
    backend.free = 2;
    const ended = await sessions.create('c');
    const lost = await sessions.create('c');
    await sessions.end(ended.token);
    backend.gone(sessionHash(lost.token), 'lost');
    await assert.rejects(sessions.resolve(ended.token), (e: Error) => e.message === errors.sessionEnded().message);
    await assert.rejects(sessions.resolve(lost.token), (e: Error & { code?: string }) => e.code === 'session_lost');
    await assert.rejects(sessions.resolve('A'.repeat(22)), (e: Error & { code?: string }) => e.code === 'session_not_found');
  });
});

describe('pools and settings', () => {
  const code = (c: string) => (e: Error & { code?: string }) => e.code === c;

  test('when a session names pools, then they are used in its order, each must exist, and a repeat counts once', () => {
    assert.deepEqual(choosePools(['b', 'a', 'b'], ['a', 'b'], undefined), ['b', 'a']);
    assert.throws(() => choosePools(['a', 'nope'], ['a', 'b'], undefined), code('pool_not_found'));
  });

  test('when a session names none, then DEFAULT_POOL, else the only pool, else 400 pool_required', () => {
    assert.deepEqual(choosePools(undefined, ['a', 'b'], 'b'), ['b']);
    assert.deepEqual(choosePools([], ['a'], undefined), ['a']);
    assert.throws(() => choosePools(undefined, ['a', 'b'], undefined), code('pool_required'));
    assert.throws(() => choosePools(undefined, ['a'], 'gone'), code('pool_not_found'));
  });

  test('when the worker takes the settings, then it gets exactly them before the session exists, and the claim is confirmed', async () => {
    const seen: Settings[] = [];
    const { backend, sessions } = setup(async (_e, settings) => { seen.push(settings); return { outcome: 'accepted' }; });
    backend.free = 1;
    await sessions.create('c', { settings: { system: 'be brief' } });
    assert.deepEqual(seen, [{ system: 'be brief' }]);
    assert.equal(backend.live.size, 1);
  });

  test('when the worker refuses the settings, then its claim ends as orphan and the client gets 400 settings_rejected with the worker\'s words', async () => {
    const { backend, sessions, count } = setup(async () => ({ outcome: 'rejected', message: 'the worker refused the settings: unknown key' }));
    backend.free = 3;
    await assert.rejects(sessions.create('c', { settings: { nope: 1 } }), (e: Error & { code?: string }) => e.code === 'settings_rejected' && /unknown key/.test(e.message));
    assert.deepEqual(backend.released.map(([, r]) => r), ['orphan']);
    assert.equal(backend.live.size, 0);
    assert.equal(await count('warmpool_claims_total', 'settings_rejected'), 1);
  });

  test('when workers fail to take the settings, then each is released and another claimed under a new id, up to three, then 503 worker_failed', async () => {
    let calls = 0;
    const { backend, sessions, count } = setup(async () => (++calls < 3 ? { outcome: 'failed', why: 'ECONNREFUSED' } : { outcome: 'accepted' }));
    backend.free = 6;
    const { worker } = await sessions.create('c');
    assert.equal(backend.released.length, 2);
    assert.equal(new Set([...backend.released.map(([h]) => h), worker.hash]).size, 3, 'every attempt had its own id');
    assert.equal(await count('warmpool_claims_total', 'delivery_failed'), 2);
    calls = -10;
    await assert.rejects(sessions.create('c'), code('worker_failed'));
    assert.equal(backend.released.length, 5);
  });
});

