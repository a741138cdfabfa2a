/**
 * Claims at scale on the real control plane, with warm pools of hollow pods (Running and Ready
 * on the cluster's hollow Nodes, with a pod IP and no process: test/cluster/hollow-pod.ts). For
 * each pool size: the raw floor (the claim's own write done by hand: a conditional merge PATCH
 * flipping a warm pod's labels) and `POST /sessions` through 1 and then 3 controller replicas,
 * each at a steady 75/s and 300/s (open loop) and in a burst; claim latency as the client sees
 * it, conflicts and API writes per claim, controller CPU per claim and heap per cached pod.
 * Every phase is checked for double claims.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import type { Controller } from '../test/integration/harness.js';
import { ROOT } from '../test/integration/harness.js';
import { hashOf, poolFixture, POOL_LABEL, POOL_NAME, isReady, type PoolFixture } from '../test/cluster/fixture.js';
import { Kube } from '../test/cluster/kube.js';
import { kubeconfigPath } from '../test/cluster/paths.js';
import { waitUntil } from '../test/cluster/wait.js';
import { QUICK, round } from './lib.js';
import { apiCounters, burst, controllerCounters, cpuByPart, delta, heapUsedMb, latency, openLoop, place, profiled, type Sample } from './scale-load.js';

const list = (name: string, fallback: string): number[] => (process.env[name] ?? fallback).split(',').filter(Boolean).map(Number);
/** BENCH_SCALE_SIZES, BENCH_SCALE_RATES and BENCH_SCALE_BURST (0: none) narrow a run down. */
const SIZES = QUICK ? [200] : list('BENCH_SCALE_SIZES', '1000,5000');
const RATES = QUICK ? [50] : list('BENCH_SCALE_RATES', '75,300');
const SECONDS = QUICK ? 3 : 10;
const BURST = QUICK ? 50 : Number(process.env.BENCH_SCALE_BURST ?? '300');

interface Load {
  name: string;
  run: (call: (i: number) => Promise<boolean>) => Promise<{ samples: Sample[]; perSecond: number }>;
}

/** Each steady load for SECONDS, or shorter where that would take more than 90 % of the pool. */
const loads = (size: number): Load[] => [
  ...RATES.map((rate): Load => {
    const count = Math.min(rate * SECONDS, Math.floor(0.9 * size));
    return {
      name: `${rate}/s for ${round(count / rate, 1)} s`,
      run: async (call) => {
        const r = await openLoop(rate, count, call);
        return { samples: r.samples, perSecond: r.samples.filter((s) => s.ok).length / r.seconds };
      },
    };
  }),
  ...(BURST > 0 ? [{ name: `burst of ${BURST}`, run: (call: (i: number) => Promise<boolean>) => burst(BURST, call) }] : []),
];

/**
 * Bursts run a second time with the control plane on one core and the controllers, node agents
 * and load generator on the other (`place`), where the machine has two cores or more.
 */
const SPLIT_BURST = BURST > 0 && cpus().length >= 2;

/** `work` with the processes split between cores, then shared again whatever happens. */
async function split<T>(cs: Controller[], work: () => Promise<T>): Promise<T> {
  place('split', cs);
  try {
    return await work();
  } finally {
    place('shared', cs);
  }
}

/** The pool as a controller's cache has it (cheaper to ask than listing thousands of pods). */
async function counts(c: Controller): Promise<{ warm: number; assigned: number }> {
  const pool = (await (await fetch(`${c.admin}/pool`)).json()) as { pools: Record<string, { warm: number; assigned: number }> };
  return pool.pools[POOL_NAME] ?? { warm: 0, assigned: 0 };
}

const warm = async (c: Controller): Promise<number> => (await counts(c)).warm;

/**
 * Deletes every claimed pod (one collection delete, sent again every minute while any is left:
 * thousands of pods outlast a request's deadline) and waits until the pool is full again.
 */
async function refill(f: PoolFixture, c: Controller, size: number): Promise<void> {
  let sent = 0;
  await waitUntil('no claimed pod left', async () => {
    if ((await counts(c)).assigned === 0) return true;
    if (Date.now() - sent > 60_000) {
      sent = Date.now();
      void f.kube.delete(`${f.podsPath}?labelSelector=${encodeURIComponent('assigned=assigned')}`).catch(() => undefined);
    }
    return undefined;
  }, 900_000);
  await waitUntil(`${size} warm pods`, async () => ((await warm(c)) >= size ? true : undefined), 900_000);
}

/** A claim through `c`; the session id given out goes to `given`. */
function claimVia(c: Controller, given: string[]): () => Promise<boolean> {
  return async () => {
    const res = await fetch(`${c.base}/sessions`, { method: 'POST' });
    const body = (await res.json()) as { id?: string };
    if (res.status === 201 && body.id) given.push(body.id);
    return res.status === 201;
  };
}

/**
 * Sessions given out whose pod does not carry them (two claims of one pod: the later label
 * overwrote the earlier), and claimed pods no client got an id for (a claim that landed after
 * its request failed, released later by the orphan sweep).
 */
async function audit(f: PoolFixture, given: string[]): Promise<{ doubleClaims: number; strayClaims: number }> {
  const onPods = new Set((await f.claimed()).map((p) => p.metadata.labels?.['warmpool.dev/session']));
  const hashes = new Set(given.map(hashOf));
  return { doubleClaims: [...hashes].filter((h) => !onPods.has(h)).length, strayClaims: [...onPods].filter((h) => h && !hashes.has(h)).length };
}

/**
 * One phase: the load, with the controllers' counters read around it (and a second and a half
 * for the writes a claim sets off after its answer), and the API server's read around it and
 * the pool's refill (`replaced`), so the cluster's writes and watch events per claim include
 * the replacement of every claimed pod.
 */
async function phase(f: PoolFixture, admin: Kube, cs: Controller[], load: Load, replaced: () => Promise<void>, call: (i: number) => Promise<boolean>, given?: string[]) {
  const [writes0, counters0] = await Promise.all([apiCounters(admin), controllerCounters(cs)]);
  const parts0 = cpuByPart(cs);
  const r = await load.run(call);
  const parts1 = cpuByPart(cs);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const counters1 = await controllerCounters(cs);
  await replaced();
  const writes1 = await apiCounters(admin);
  const ok = r.samples.filter((s) => s.ok).length;
  const apiWritesByKind = delta(writes1, writes0);
  const podEvents = apiWritesByKind['pod events'] ?? 0;
  delete apiWritesByKind['pod events'];
  const controllerWrites = delta(counters1.requests, counters0.requests);
  delete controllerWrites.list;
  const claimsBy = delta(counters1.claims, counters0.claims);
  return {
    load: load.name,
    replicas: cs.length,
    ...latency(r.samples),
    perSecond: round(r.perSecond, 1),
    apiWritesPerClaim: round(Object.values(apiWritesByKind).reduce((a, b) => a + b, 0) / Math.max(ok, 1), 2),
    apiWritesByKind,
    controllerWritesPerClaim: round(Object.values(controllerWrites).reduce((a, b) => a + b, 0) / Math.max(ok, 1), 2),
    controllerWrites,
    podWatchEventsPerClaim: round(podEvents / Math.max(ok, 1), 1),
    conflictsPerClaim: round((claimsBy.conflict ?? 0) / Math.max(ok, 1), 3),
    cpuMsPerClaim: cs.length ? round(((counters1.cpu - counters0.cpu) * 1000) / Math.max(ok, 1), 2) : undefined,
    // While the load ran (not the 1.5 s after it): who spent the machine's cores, in ms per claim.
    cpuMsPerClaimByPart: Object.fromEntries(Object.entries(delta(parts1, parts0)).map(([part, s]) => [part, round((s * 1000) / Math.max(ok, 1), 2)])),
    ...(given ? await audit(f, given) : {}),
  };
}

/** The raw floor's calls: flips of the warm Ready pods listed now, each at the version listed. */
async function flips(f: PoolFixture, raw: Kube): Promise<(i: number) => Promise<boolean>> {
  const pods = (await f.pods(`${POOL_LABEL}=${POOL_NAME},assigned=not_assigned`)).filter(isReady);
  return async (i) => {
    const pod = pods[i];
    if (!pod) return false;
    await raw.mergePatch(`${f.podsPath}/${pod.metadata.name}`, {
      metadata: { resourceVersion: pod.metadata.resourceVersion, labels: { assigned: 'assigned', 'warmpool.dev/session': i.toString(16).padStart(40, '0') } },
    });
    return true;
  };
}

async function oneSize(size: number) {
  const f = await poolFixture(`wp-scale-${size}`, {}, { hollow: true });
  const admin = Kube.fromKubeconfig(kubeconfigPath);
  // The controller's own limit on connections to the API server, so the floor is taken on the same terms.
  const raw = Kube.fromKubeconfig(kubeconfigPath, { maxSockets: 16 });
  const phases = [];
  try {
    // The defaults but for the limits a load of thousands of sessions from one client needs, and
    // the activity flush (the test fixture's is 0.5 s) back at its default.
    const env = { POOL_SIZE: String(size), MAX_SESSIONS: '100000', MAX_SESSIONS_PER_CLIENT: '100000', MAX_PENDING_CLAIMS: '100000', CLAIM_TIMEOUT_MS: '30000', ACTIVITY_FLUSH_S: '30' };
    const a = await f.controller('scale-a', { ...env, NODE_OPTIONS: '--inspect=127.0.0.1:0' });
    const heapEarly = await heapUsedMb(a);
    const podsEarly = await warm(a);
    const t0 = Date.now();
    await waitUntil(`${size} warm pods`, async () => ((await warm(a)) >= size ? true : undefined), 900_000);
    const fillSeconds = (Date.now() - t0) / 1000;
    const heapFull = await heapUsedMb(a);
    // The ReplicaSet replaces every claimed pod: the pool is whole again with the claimed pods still there.
    const replaced = () => waitUntil(`${size} warm pods again`, async () => ((await warm(a)) >= size ? true : undefined), 900_000).then(() => undefined);
    for (const load of loads(size)) {
      phases.push({ ...(await phase(f, admin, [], load, replaced, await flips(f, raw))), path: 'raw PATCH', placement: 'shared' });
      await refill(f, a, size);
      const given: string[] = [];
      phases.push({ ...(await phase(f, admin, [a], load, replaced, claimVia(a, given), given)), path: 'POST /sessions', placement: 'shared' });
      await refill(f, a, size);
    }
    const burstLoad = loads(size).at(-1) as Load;
    if (SPLIT_BURST) {
      phases.push({ ...(await split([a], async () => phase(f, admin, [], burstLoad, replaced, await flips(f, raw)))), path: 'raw PATCH', placement: 'split' });
      await refill(f, a, size);
      const given: string[] = [];
      phases.push({ ...(await split([a], () => phase(f, admin, [a], burstLoad, replaced, claimVia(a, given), given))), path: 'POST /sessions', placement: 'split' });
      await refill(f, a, size);
    }
    // One more burst through one replica, profiled (so not among the measured phases: the
    // profiler costs CPU): where a claim's CPU goes.
    const burstProfile = BURST > 0 ? await profiled(a, () => burst(BURST, claimVia(a, []))) : undefined;
    if (burstProfile) await refill(f, a, size);
    const replicas = [a, await f.controller('scale-b', env), await f.controller('scale-c', env)];
    const spread = (given: string[]) => {
      const via = replicas.map((c) => claimVia(c, given));
      return (i: number) => (via[i % 3] as () => Promise<boolean>)();
    };
    for (const load of loads(size)) {
      const given: string[] = [];
      phases.push({ ...(await phase(f, admin, replicas, load, replaced, spread(given), given)), path: 'POST /sessions', placement: 'shared' });
      await refill(f, a, size);
    }
    if (SPLIT_BURST) {
      const given: string[] = [];
      phases.push({ ...(await split(replicas, () => phase(f, admin, replicas, burstLoad, replaced, spread(given), given))), path: 'POST /sessions', placement: 'split' });
      await refill(f, a, size);
    }
    return { size, fillSeconds: round(fillSeconds, 1), heapEarlyMb: round(heapEarly, 1), heapFullMb: round(heapFull, 1), heapPerPodKiB: round(((heapFull - heapEarly) * 1024) / (size - podsEarly), 2), phases, burstProfile };
  } finally {
    raw.close();
    admin.close();
    await f.teardown();
  }
}

export async function benchScale() {
  const startedCluster = !existsSync(kubeconfigPath);
  const tsx = path.join(ROOT, 'node_modules/.bin/tsx');
  if (startedCluster) execFileSync(tsx, ['test/cluster/cluster.ts', 'up'], { cwd: ROOT, stdio: 'inherit' });
  const sizes = [];
  try {
    for (const size of SIZES) {
      console.log(`   pool of ${size} hollow pods`);
      sizes.push(await oneSize(size));
    }
  } finally {
    if (startedCluster) execFileSync(tsx, ['test/cluster/cluster.ts', 'down'], { cwd: ROOT, stdio: 'inherit' });
  }
  return { seconds: SECONDS, burst: BURST, sizes };
}
