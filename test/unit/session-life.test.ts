import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { errors } from '../../controller/src/errors.js';
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import { ClaimQueue, claimInOrder } from '../../controller/src/pool/claim-queue.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, SessionWorker } from '../../controller/src/pool/types.js';
import { Admission } from '../../controller/src/sessions/admission.js';
import { Sessions } from '../../controller/src/sessions/index.js';
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
    const s = await claimInOrder(this.queue, () => {
      if (this.free === 0) return undefined;
      this.free--;
      const t = this.now();
      return { hash: request.hash, worker: `w-${request.hash.slice(0, 4)}`, endpoint: { host: '127.0.0.1', port: 1 }, createdAt: t, lastActivity: t, client: request.client, version: '1' };
    }, request.signal);
    await this.claimDelay;
    this.live.set(s.hash, s);
    return s;
  }
  lookup(hash: string) { return this.live.get(hash); }
  async waitForSession(hash: string) { return this.live.get(hash); }
  sessions() { return this.live.values(); }
  async release(s: SessionWorker, reason: EndReason) {
    const current = this.live.get(s.hash);
    if (!current) return false;
    if (reason !== 'deleted' && current.version !== s.version) return false;
    this.live.delete(s.hash);
    this.released.push([s.hash, reason]);
    return true;
  }
  recordActivity(hash: string, at: number) { this.activity.push([hash, at]); }
  snapshot() { return { backend: 'fake', warm: this.free, warming: 0, assigned: this.live.size, pendingClaims: this.queue.length }; }
  onGone(l: GoneListener) { this.listeners.push(l); }
  gone(hash: string, kind: 'ended' | 'lost') { this.live.delete(hash); for (const l of this.listeners) l(hash, 'w', kind, 'test'); }
  async stop() {}
}

const limits = { maxSessions: 3, maxPerClient: 2, createsPerMinute: 0, idleTimeoutMs: 1000, maxLifetimeMs: 10_000, retryAfterS: 1, heartbeatMs: 100 };

function setup() {
  let t = 1_000_000;
  const clock = { now: () => t, advance: (ms: number) => { t += ms; } };
  const backend = new FakeBackend(clock.now);
  const metrics = createMetrics();
  const sessions = new Sessions(backend, limits, metrics, createLogger('silent'), clock.now);
  const count = async (name: string, label: string) => {
    const m = (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => Object.values(v.labels).includes(label));
    return m?.value ?? 0;
  };
  return { clock, backend, sessions, count };
}

describe('session admission', () => {
  test('when a client holds its cap, then its next session is refused with client_session_limit while others still get one', () => {
    const a = new Admission(limits, () => 0);
    const live = [{ client: 'c1' }, { client: 'c1' }] as SessionWorker[];
    assert.throws(() => a.admit('c1', live), (e: Error & { code?: string }) => e.code === 'client_session_limit');
    a.admit('c2', live)();
  });

  test('when claims are in flight, then they count against the caps until they settle', () => {
    const a = new Admission(limits, () => 0);
    const done = [a.admit('c1', []), a.admit('c2', []), a.admit('c3', [])];
    assert.throws(() => a.admit('c4', []), (e: Error & { code?: string }) => e.code === 'at_capacity');
    done[0]?.();
    a.admit('c4', []);
  });

  test('when the create rate is spent, then the next creation gets rate_limited with a retry time', () => {
    const a = new Admission({ ...limits, maxSessions: 100, maxPerClient: 100, createsPerMinute: 2 }, () => 0);
    a.admit('c', [])();
    a.admit('c', [])();
    assert.throws(() => a.admit('c', []), (e: Error & { code?: string; retryAfterS?: number }) => e.code === 'rate_limited' && (e.retryAfterS ?? 0) >= 1);
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
    backend.queue.wake();
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
