/**
 * Faults under load: virtual clients hold sessions and chat through three controller replicas
 * (behind a round-robin "load balancer") while a fault script kills a replica with SIGKILL,
 * deletes a warm and a claimed pod, and restarts the API server and then etcd the hard way.
 *
 * Success rates per phase are reported (t.diagnostic and .cluster/logs/chaos-summary.json),
 * not asserted: what a fault costs is a figure. What is asserted: affinity never breaks (every
 * reply's turn follows the last, every history holds exactly its own session's messages, the
 * session's worker pid never changes), the session of a deleted pod answers 410 session_lost
 * instead of moving elsewhere, every operation succeeds once the faults have healed, no pod
 * ever carried two sessions, and afterwards no claimed pod, no missing warm pod and no stray
 * process is left.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { alive, metric, parseLine, type Controller } from '../integration/harness.js';
import { stopComponent } from './components.js';
import { hashOf, isReady, poolFixture, POOL, type Pod, type PoolFixture } from './fixture.js';
import { Kube } from './kube.js';
import { kubeconfigPath, logDir } from './paths.js';
import { commandLine, markedPids } from './procs.js';
import { waitUntil } from './wait.js';

const POOL_SIZE = 6;
const CLIENTS = 5;
const TURNS = 5;
/** A user's pause between two messages; it keeps pod churn at a rate a 2-core machine can carry. */
const THINK_MS = 250;
const CONTROLLER_ENV = {
  POOL_SIZE: String(POOL_SIZE),
  CLAIM_TIMEOUT_MS: '8000',
  MAX_SESSIONS_PER_CLIENT: '100',
  // A replica killed mid-claim leaves a session that no client holds (the answer never left)
  // and no replica knows to end: the idle reaper ends those, so it must act within the test.
  SESSION_IDLE_TIMEOUT_S: '20',
};
const WORKER_ENTRY = 'worker-image/dist/server.js';

type Phase = 'warmup' | 'replica-kill' | 'pod-delete' | 'kube-apiserver-restart' | 'etcd-restart' | 'clean';
type OpKind = 'create' | 'healthz' | 'chat' | 'history' | 'delete';

interface Op {
  phase: Phase;
  kind: OpKind;
  /** `ok`, `<status> <error code>`, or `connection <code>`. */
  outcome: string;
}

interface Tracked {
  id: string;
  hash: string;
  /** Worker pid the session reported first (its /healthz, through the router). */
  pid?: number;
  ended: boolean;
}

/** The error code under a fetch failure (undici wraps it in `cause`). */
function errorCode(err: unknown): string {
  const cause = (err as { cause?: { code?: string } } | null)?.cause;
  return cause?.code ?? (err as { name?: string } | null)?.name ?? 'error';
}

/**
 * Round robin over the replicas, as a Service would spread connections. A refused connection
 * (nothing listens: the request never left) moves on to the next replica; anything else is the
 * answer, since a request that may have reached a replica must not be sent twice.
 */
class Balancer {
  failovers = 0;
  private next = 0;
  constructor(readonly replicas: Controller[]) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    let refused: unknown;
    for (let i = 0; i < this.replicas.length; i++) {
      const c = this.replicas[this.next++ % this.replicas.length] as Controller;
      try {
        return await fetch(`${c.base}${path}`, { ...init, signal: AbortSignal.timeout(20_000) });
      } catch (err) {
        if (errorCode(err) !== 'ECONNREFUSED') throw err;
        this.failovers++;
        refused = err;
      }
    }
    throw refused;
  }
}

const containerPid = (p: Pod): number | undefined => {
  const id = p.status?.containerStatuses?.[0]?.containerID;
  return id?.startsWith('process://') ? Number(id.slice('process://'.length)) : undefined;
};


describe('kubernetes backend: faults under load', () => {
  let f: PoolFixture;
  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-chaos');
  });
  after(() => f.teardown());

  test('when a replica, pods, the API server and etcd fail under load, then no pod serves two sessions, sessions never move, and everything recovers', async (t) => {
    const names = ['chaos-a', 'chaos-b', 'chaos-c'];
    const lb = new Balancer([]);
    for (const name of names) lb.replicas.push(await f.controller(name, CONTROLLER_ENV));
    await waitUntil(`${POOL_SIZE} warm pods`, () => f.warmReady(POOL_SIZE), 120_000);

    const ops: Op[] = [];
    const sessions: Tracked[] = [];
    const violations: string[] = [];
    let phase: Phase = 'warmup';
    let phaseStart = 0;
    let done = false;
    /** While set, clients finish the session they hold and start no new one. */
    let paused = false;
    const opsInPhase = () => ops.length - phaseStart;
    const enter = (next: Phase) => {
      phase = next;
      phaseStart = ops.length;
      t.diagnostic(`${new Date().toISOString()} phase ${next}`);
    };
    /**
     * Lets the load run in the current phase until it has made `n` more operations. An
     * operation counts in the phase it started in, so one cut by the next fault counts before it.
     */
    const load = (n: number) => {
      const target = opsInPhase() + n;
      return waitUntil(`${n} operations in phase ${phase}`, async () => (opsInPhase() >= target ? true : undefined), 120_000);
    };

    async function request(kind: OpKind, path: string, init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> } | undefined> {
      const at = phase;
      try {
        const res = await lb.fetch(path, init);
        const text = await res.text();
        let body: Record<string, unknown> = {};
        try {
          body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          body = { error: 'not_json' };
        }
        ops.push({ phase: at, kind, outcome: res.ok ? 'ok' : `${res.status} ${String(body.error ?? '')}` });
        return { status: res.status, body };
      } catch (err) {
        ops.push({ phase: at, kind, outcome: `connection ${errorCode(err)}` });
        return undefined;
      }
    }

    /** The exchanges of one session; the first failure ends them (what was sent may or may not have arrived). */
    async function converse(s: Tracked): Promise<void> {
      const health = await request('healthz', `/sessions/${s.id}/healthz`);
      if (health?.status !== 200) return;
      s.pid = health.body.pid as number;
      const sent: string[] = [];
      for (let turn = 1; turn <= TURNS; turn++) {
        await sleep(THINK_MS);
        const message = `${s.id.slice(0, 8)} turn ${turn}`;
        const reply = await request('chat', `/sessions/${s.id}/chat`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ message }),
        });
        if (reply?.status !== 200) return;
        sent.push(message);
        if (reply.body.turn !== turn) {
          violations.push(`session ${s.hash.slice(0, 8)}: reply numbered turn ${String(reply.body.turn)} where ${turn} was due`);
          return;
        }
      }
      const history = await request('history', `/sessions/${s.id}/history`);
      if (history?.status !== 200) return;
      const seen = (history.body.turns as { message: string }[]).map((x) => x.message);
      if (JSON.stringify(seen) !== JSON.stringify(sent)) {
        violations.push(`session ${s.hash.slice(0, 8)}: history ${JSON.stringify(seen)} is not its own ${JSON.stringify(sent)}`);
      }
      const again = await request('healthz', `/sessions/${s.id}/healthz`);
      if (again?.status === 200 && again.body.pid !== s.pid) {
        violations.push(`session ${s.hash.slice(0, 8)}: worker pid ${String(again.body.pid)}, first ${String(s.pid)}`);
      }
    }

    /** DELETE until the router gives an answer that ends the matter (retrying 503s and connection errors). */
    async function end(s: Tracked): Promise<void> {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const res = await request('delete', `/sessions/${s.id}`, { method: 'DELETE' });
        if (res && [204, 404, 410].includes(res.status)) {
          s.ended = true;
          return;
        }
        await sleep(500);
      }
    }

    async function client(): Promise<void> {
      while (!done) {
        if (paused) {
          await sleep(200);
          continue;
        }
        const created = await request('create', '/sessions', { method: 'POST' });
        if (created?.status !== 201) {
          await sleep(500);
          continue;
        }
        const s: Tracked = { id: created.body.id as string, hash: hashOf(created.body.id as string), ended: false };
        sessions.push(s);
        try {
          await converse(s);
        } finally {
          await end(s);
        }
        await sleep(THINK_MS);
      }
    }

    // What the API server shows, sampled while it answers: which session each pod carried, and
    // which worker pid each pod ran.
    const hashesOfPod = new Map<string, Set<string>>();
    const podsOfHash = new Map<string, Set<string>>();
    const pidOfPod = new Map<string, number>();
    let samples = 0;
    const add = (m: Map<string, Set<string>>, k: string, v: string) => m.set(k, (m.get(k) ?? new Set()).add(v));
    async function sample(): Promise<void> {
      for (const p of (await f.kube.get<{ items: Pod[] }>(f.podsPath)).items) {
        const pid = containerPid(p);
        if (pid) pidOfPod.set(p.metadata.uid, pid);
        const hash = p.metadata.labels?.['warmpool.dev/session'];
        if (!hash) continue;
        add(hashesOfPod, p.metadata.uid, hash);
        add(podsOfHash, hash, p.metadata.uid);
      }
      samples++;
    }
    async function sampler(): Promise<void> {
      while (!done) {
        await sample().catch(() => undefined);
        await sleep(500);
      }
    }

    const killed: { what: string; pid: number }[] = [];
    /** Seconds from a component's restart until every replica took claims again, and until every replica's informer was back. */
    const recovery: Record<string, { claims: number; informers: number }> = {};
    /** Sessions the test made outside the load (probes, the one whose pod it deletes). */
    const ownHashes = new Set<string>();
    /**
     * A session whose pod is deleted under it is lost: every replica answers 410 session_lost
     * from then on, and no reply ever comes from another worker.
     */
    async function loseClaimedPod(): Promise<void> {
      const id = await waitUntil('a session to lose', async () => {
        const res = await lb.fetch('/sessions', { method: 'POST' });
        return res.status === 201 ? ((await res.json()) as { id: string }).id : undefined;
      }, 60_000);
      ownHashes.add(hashOf(id));
      let turn = 0;
      const say = async (c: Controller) => {
        const res = await fetch(`${c.base}/sessions/${id}/chat`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":"are you there?"}', signal: AbortSignal.timeout(20_000),
        });
        const body = (await res.json()) as { turn?: number; error?: string };
        if (res.status === 200 && body.turn !== ++turn) violations.push(`lost session: reply numbered turn ${String(body.turn)} where ${turn} was due`);
        return { status: res.status, error: body.error };
      };
      assert.equal((await say(lb.replicas[0] as Controller)).status, 200, 'the session to lose chats');
      const pod = await waitUntil('the pod of the session to lose', () => f.podOf(id), 30_000);
      await f.kube.delete(`${f.podsPath}/${pod.metadata.name}`);
      for (const [i, c] of lb.replicas.entries()) {
        let last: { status: number; error?: string | undefined } | undefined;
        await waitUntil(`${names[i] as string} answers session_lost`, async () => {
          last = await say(c);
          return last.status === 410 ? true : undefined;
        }, 30_000).catch(() => undefined);
        assert.deepEqual(last, { status: 410, error: 'session_lost' }, `${names[i] as string} tells the session of a deleted pod it is lost`);
      }
    }

    /** Healed: the API server is ready (so etcd is back) and every replica takes claims again (its informer is back). */
    async function recovered(): Promise<void> {
      const admin = Kube.fromKubeconfig(kubeconfigPath);
      try {
        await waitUntil('the API server is ready', async () => ((await admin.get<string>('/readyz')) === 'ok' ? true : undefined), 120_000);
      } finally {
        admin.close();
      }
      for (const [i, c] of lb.replicas.entries()) {
        const id = await waitUntil(`${names[i] as string} takes claims again`, async () => {
          const res = await fetch(`${c.base}/sessions`, { method: 'POST' });
          return res.status === 201 ? ((await res.json()) as { id: string }).id : undefined;
        }, 120_000);
        ownHashes.add(hashOf(id));
        assert.equal((await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' })).status, 204, 'the probe session ends');
      }
    }

    /**
     * Seconds after `restarted` until the last replica whose informer lost the API server since
     * `since` logged it in sync again (0 when none lost it): the router's own recovery, apart
     * from the control plane's (a refilled pool needs kube-controller-manager and kube-scheduler
     * back as well).
     */
    function informersBack(since: number, restarted: number): number {
      const at = (line: string, msg: string) => {
        const l = parseLine(line);
        return l?.msg === msg && Date.parse(String(l.time)) >= since ? Date.parse(String(l.time)) : undefined;
      };
      return Math.max(0, ...lb.replicas.map((c) => {
        const lost = c.output.map((l) => at(l, 'pod informer lost the API server')).find((x) => x !== undefined);
        if (lost === undefined) return 0;
        const back = c.output.map((l) => at(l, 'pod informer in sync')).find((x) => x !== undefined && x >= lost);
        return back === undefined ? Infinity : Math.max(0, back - restarted) / 1000;
      }));
    }

    const running = [...Array.from({ length: CLIENTS }, client), sampler()];
    try {
      await load(60);

      enter('replica-kill');
      const crashed = lb.replicas[1] as Controller;
      process.kill(-(crashed.proc.pid as number), 'SIGKILL');
      killed.push({ what: `controller ${names[1]}`, pid: crashed.proc.pid as number });
      await crashed.exited;
      await load(40);
      lb.replicas[1] = await f.controller(names[1] as string, CONTROLLER_ENV);
      await load(40);

      enter('pod-delete');
      const warm = (await waitUntil('a warm pod', () => f.warmReady(1), 60_000))[0] as Pod;
      await f.kube.delete(`${f.podsPath}/${warm.metadata.name}`);
      await loseClaimedPod();
      await load(40);

      // Each component is down while the load makes a few operations, and the phase lasts
      // until every replica takes claims again.
      for (const component of ['kube-apiserver', 'etcd'] as const) {
        enter(`${component}-restart`);
        const stoppedAt = Date.now();
        const stopped = await stopComponent(component);
        killed.push({ what: component, pid: stopped.pid });
        await load(20);
        await stopped.restart();
        const restarted = Date.now();
        await recovered();
        recovery[component] = { claims: (Date.now() - restarted) / 1000, informers: informersBack(stoppedAt, restarted) };
        // Sessions under way again when the next fault comes.
        await load(30);
      }

      // Healed means the pool has refilled too: after an etcd restart the ReplicaSet controller
      // can sit in its own retry backoff for several seconds before it replaces claimed pods.
      // The clients pause meanwhile: five of them claiming without a break keep a pool of six
      // below five warm pods whenever a worker takes longer to start than a session lasts.
      paused = true;
      await waitUntil('the pool refilled after the faults', () => f.warmReady(POOL_SIZE - 1), 120_000);
      paused = false;
      enter('clean');
      const firstClean = sessions.length;
      await load(150);
      await waitUntil(`${CLIENTS} sessions started and ended in the clean phase`, async () =>
        (sessions.slice(firstClean).filter((s) => s.ended).length >= CLIENTS ? true : undefined), 120_000);
    } finally {
      done = true;
      await Promise.all(running);
      for (const [i, c] of [...f.running.entries()]) writeFileSync(join(logDir, `chaos-controller-${i}.log`), `${c.output.join('\n')}\n`);
    }
    await sample();

    // The figures.
    const phases = [...new Set(ops.map((o) => o.phase))].map((name) => {
      const mine = ops.filter((o) => o.phase === name);
      const ok = mine.filter((o) => o.outcome === 'ok').length;
      const failures: Record<string, number> = {};
      for (const o of mine) if (o.outcome !== 'ok') failures[`${o.kind}: ${o.outcome}`] = (failures[`${o.kind}: ${o.outcome}`] ?? 0) + 1;
      return { phase: name, ops: mine.length, ok, rate: mine.length ? ok / mine.length : 1, failures };
    });
    for (const p of phases) {
      const why = Object.entries(p.failures).map(([k, v]) => `${k} x${v}`).join(', ');
      t.diagnostic(`${p.phase}: ${p.ok}/${p.ops} ok (${(p.rate * 100).toFixed(1)}%)${why ? `; ${why}` : ''}`);
    }
    const live = lb.replicas;
    const ended = async (reason: string) => (await Promise.all(live.map((c) => metric(c, 'warmpool_sessions_ended_total', `reason="${reason}"`)))).reduce((a, b) => a + b, 0);
    const [idleEnds, orphanEnds] = [await ended('idle'), await ended('orphan')];
    // Claims made for clients that never got the answer (a replica killed mid-claim, a write
    // that timed out and landed later): sessions on pods that no client holds.
    const clientHashes = new Set(sessions.map((s) => s.hash));
    const unheld = [...podsOfHash.keys()].filter((h) => !clientHashes.has(h) && !ownHashes.has(h)).length;
    const summary = {
      clients: CLIENTS, replicas: live.length, poolSize: POOL_SIZE, sessions: sessions.length, failovers: lb.failovers,
      samples, sessionsSeenOnPods: sessions.filter((s) => podsOfHash.has(s.hash)).length, unheld, idleEnds, orphanEnds, recovery, phases, violations,
    };
    writeFileSync(join(logDir, 'chaos-summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    t.diagnostic(`${sessions.length} sessions over ${CLIENTS} clients, ${lb.failovers} failovers to the next replica, ${summary.sessionsSeenOnPods} sessions seen on their pod in ${samples} samples`);
    for (const [component, r] of Object.entries(recovery)) {
      t.diagnostic(`after the ${component} restart: every replica's informer in sync ${r.informers.toFixed(1)}s later, claims through every replica ${r.claims.toFixed(1)}s later`);
    }
    t.diagnostic(`${unheld} claimed pods no client held; sessions ended idle: ${idleEnds}, as orphans: ${orphanEnds}`);

    // Affinity held through every fault, and the clean phase had no failure at all.
    assert.deepEqual(violations, [], 'no session ever answered from another worker');
    const clean = phases.find((p) => p.phase === 'clean');
    assert.ok(clean && clean.ops > 0, 'the clean phase made operations');
    assert.deepEqual(clean.failures, {}, 'every operation after the faults healed succeeded');

    // (a) No two sessions ever had the same pod.
    for (const [uid, hashes] of hashesOfPod) assert.equal(hashes.size, 1, `pod ${uid} carried one session, not ${[...hashes].join(', ')}`);
    for (const [hash, uids] of podsOfHash) assert.equal(uids.size, 1, `session ${hash.slice(0, 8)} was on one pod, not ${[...uids].join(', ')}`);
    const pids = sessions.filter((s) => s.pid !== undefined).map((s) => s.pid);
    assert.equal(new Set(pids).size, pids.length, 'every session reported its own worker pid');
    for (const s of sessions) {
      const uid = [...(podsOfHash.get(s.hash) ?? [])][0];
      const podPid = uid === undefined ? undefined : pidOfPod.get(uid);
      if (s.pid !== undefined && podPid !== undefined) assert.equal(s.pid, podPid, `session ${s.hash.slice(0, 8)} was served by its own pod's process`);
    }

    // (b) Every session is ended: no claimed pod is left. A claim whose answer was lost is ended
    // by its replica, or by the idle reaper when that replica was the one killed.
    assert.ok(sessions.every((s) => s.ended), 'every client ended its session');
    let claimed: string[] = [];
    await waitUntil('no claimed pod is left', async () => {
      claimed = (await f.claimed()).map((p) => p.metadata.name);
      return claimed.length === 0 ? true : undefined;
    }, 90_000).catch(() => undefined);
    assert.deepEqual(claimed, [], 'no claimed pod without a live session');

    // (c) The pool is back to POOL_SIZE Ready warm pods, and no more.
    let pool: { ready: number; all: number } = { ready: -1, all: -1 };
    await waitUntil(`${POOL_SIZE} Ready warm pods`, async () => {
      const all = await f.pods(`app.kubernetes.io/name=${POOL}`);
      pool = { ready: all.filter((p) => p.metadata.labels?.assigned === 'not_assigned' && isReady(p)).length, all: all.length };
      return pool.ready === POOL_SIZE && pool.all === POOL_SIZE ? true : undefined;
    }, 90_000).catch(() => undefined);
    assert.deepEqual(pool, { ready: POOL_SIZE, all: POOL_SIZE }, 'the pool is back to its size, all Ready and warm');

    // (d) No leaked process: every worker process of this cluster runs a pod that exists, and
    // nothing that was killed lives on.
    let stray: number[] = [];
    await waitUntil('every worker process belongs to a pod', async () => {
      const running = new Set((await f.kube.get<{ items: Pod[] }>('/api/v1/pods')).items.map(containerPid).filter((p) => p !== undefined));
      stray = markedPids().filter((pid) => commandLine(pid).some((a) => a.endsWith(WORKER_ENTRY)) && !running.has(pid));
      return stray.length === 0 ? true : undefined;
    }, 60_000).catch(() => undefined);
    assert.deepEqual(stray, [], 'no worker process outlives its pod');
    for (const k of killed) assert.ok(!alive(k.pid), `${k.what} (pid ${k.pid}) is gone`);
  });
});
