/**
 * Claims on the real control plane (the loopback cluster of test/cluster/): `POST /sessions`
 * latency and burst rate with 1 and 3 replicas, next to the floor measured in the same round on
 * the same API server: the single write a claim makes, a conditional merge PATCH that flips a
 * warm pod's labels (and so sets the ReplicaSet and the scheduler to work, on these same two
 * cores). A PATCH of an annotation only, which starts nothing, is recorded beside it.
 * Every burst is checked for double claims: each session on its own pod, claimed pods = claims.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Controller } from '../test/integration/harness.js';
import { ROOT } from '../test/integration/harness.js';
import { poolFixture, type Pod, type PoolFixture } from '../test/cluster/fixture.js';
import { kubeconfigPath } from '../test/cluster/paths.js';
import { waitUntil } from '../test/cluster/wait.js';
import { median, percentile, QUICK, round } from './lib.js';

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** Sequential conditional PATCHes of warm pods' annotations: an API server write that starts nothing. */
async function annotationPatchLatency(f: PoolFixture, pods: Pod[], count: number): Promise<number[]> {
  const out: number[] = [];
  const versions = new Map(pods.map((p) => [p.metadata.name, p.metadata.resourceVersion]));
  for (let i = 0; i < count; i++) {
    const name = pods[i % pods.length]?.metadata.name as string;
    const t = process.hrtime.bigint();
    const updated = await f.kube.mergePatch<Pod>(`${f.podsPath}/${name}`, { metadata: { resourceVersion: versions.get(name), annotations: { 'bench.warmpool.dev/touch': String(i) } } });
    out.push(ms(t));
    versions.set(name, updated.metadata.resourceVersion);
  }
  return out;
}

/** The claim's own write done by hand: a conditional PATCH flipping the pool label, with a session label. */
function flip(f: PoolFixture, pod: Pod, i: number): Promise<unknown> {
  return f.kube.mergePatch(`${f.podsPath}/${pod.metadata.name}`, {
    metadata: { resourceVersion: pod.metadata.resourceVersion, labels: { assigned: 'assigned', 'warmpool.dev/session': i.toString(16).padStart(40, '0') } },
  });
}

async function deleteClaimed(f: PoolFixture, size: number): Promise<void> {
  await Promise.all((await f.claimed()).map((p) => f.kube.delete(`${f.podsPath}/${p.metadata.name}`).catch(() => undefined)));
  await waitUntil('no claimed pod', async () => ((await f.claimed()).length === 0 ? true : undefined), 120_000);
  await waitUntil(`${size} warm pods`, () => f.warmReady(size), 180_000);
}

async function claim(c: Controller): Promise<{ id?: string; ms: number; status: number }> {
  const t = process.hrtime.bigint();
  const res = await fetch(`${c.base}/sessions`, { method: 'POST' });
  const body = (await res.json()) as { id?: string };
  return { ms: ms(t), status: res.status, ...(body.id ? { id: body.id } : {}) };
}

/** Each session on a distinct pod, and as many claimed pods as sessions: the double-claim check. */
async function doubleClaims(f: PoolFixture, ids: string[]): Promise<number> {
  const names = new Set((await Promise.all(ids.map((id) => f.podOf(id)))).map((p) => p?.metadata.name));
  const claimed = (await f.claimed()).length;
  return Math.max(ids.length - names.size, Math.abs(claimed - ids.length));
}

async function endAll(f: PoolFixture, c: Controller, ids: string[], size: number): Promise<void> {
  await Promise.all(ids.map((id) => fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' })));
  await waitUntil('no claimed pod', async () => ((await f.claimed()).length === 0 ? true : undefined), 120_000);
  await waitUntil(`${size} warm pods`, () => f.warmReady(size), 180_000);
}

export async function benchClaims() {
  const startedCluster = !existsSync(kubeconfigPath);
  const tsx = path.join(ROOT, 'node_modules/.bin/tsx');
  if (startedCluster) execFileSync(tsx, ['test/cluster/cluster.ts', 'up'], { cwd: ROOT, stdio: 'inherit' });
  const size = QUICK ? 6 : 20;
  const rounds = QUICK ? 1 : 3;
  const f = await poolFixture('wp-bench', { MODEL_LOAD_DELAY_MS: '0' });
  const annotation: number[] = [];
  const raw: number[] = [];
  const rawRates: number[] = [];
  const single: number[] = [];
  const rates1: number[] = [];
  const rates3: number[] = [];
  let doubles = 0;
  let refused = 0;
  try {
    const env = { POOL_SIZE: String(size), MAX_SESSIONS_PER_CLIENT: '1000', CLAIM_TIMEOUT_MS: '30000' };
    const a = await f.controller('bench-a', env);
    const b = await f.controller('bench-b', env);
    const c = await f.controller('bench-c', env);
    for (let r = 0; r < rounds; r++) {
      const warm = (await waitUntil(`${size} warm pods`, () => f.warmReady(size), 180_000)).slice(0, size);
      annotation.push(...(await annotationPatchLatency(f, warm, QUICK ? 10 : 40)));
      for (const [i, pod] of ((await f.warmReady(size)) as Pod[]).slice(0, size).entries()) {
        const t = process.hrtime.bigint();
        await flip(f, pod, i);
        raw.push(ms(t));
      }
      await deleteClaimed(f, size);
      const burstPods = ((await f.warmReady(size)) as Pod[]).slice(0, size);
      const t = process.hrtime.bigint();
      await Promise.all(burstPods.map((pod, i) => flip(f, pod, i)));
      rawRates.push(size / (ms(t) / 1000));
      await deleteClaimed(f, size);

      // One client, one claim at a time, through one replica.
      const seq: string[] = [];
      for (let i = 0; i < size; i++) {
        const got = await claim(a);
        if (got.id) seq.push(got.id);
        else refused++;
        single.push(got.ms);
      }
      doubles += await doubleClaims(f, seq);
      await endAll(f, a, seq, size);

      // A burst of `size` claims at once: through one replica, then spread over three.
      for (const [replicas, rates] of [[[a], rates1], [[a, b, c], rates3]] as const) {
        const t = process.hrtime.bigint();
        const burst = await Promise.all(Array.from({ length: size }, (_, i) => claim(replicas[i % replicas.length] as Controller)));
        const elapsed = ms(t);
        const ids = burst.flatMap((x) => (x.id ? [x.id] : []));
        refused += burst.length - ids.length;
        rates.push(ids.length / (elapsed / 1000));
        doubles += await doubleClaims(f, ids);
        await endAll(f, a, ids, size);
      }
    }
  } finally {
    await f.teardown();
    if (startedCluster) execFileSync(tsx, ['test/cluster/cluster.ts', 'down'], { cwd: ROOT, stdio: 'inherit' });
  }
  const rawP50 = median(raw);
  const claimP50 = median(single);
  return {
    poolSize: size,
    rounds,
    annotationPatch: { samples: annotation.length, p50Ms: round(median(annotation), 2), p99Ms: round(percentile(annotation, 99), 2) },
    rawPatch: { samples: raw.length, p50Ms: round(rawP50, 2), p99Ms: round(percentile(raw, 99), 2), burstPerSecond: round(median(rawRates), 1) },
    claim: { samples: single.length, p50Ms: round(claimP50, 2), p99Ms: round(percentile(single, 99), 2) },
    claimTargetMs: round(1.5 * rawP50 + 2, 2),
    burst1PerSecond: round(median(rates1), 1),
    burst3PerSecond: round(median(rates3), 1),
    burst1OverRaw: round(median(rates1) / median(rawRates), 2),
    burst3OverRaw: round(median(rates3) / median(rawRates), 2),
    doubleClaims: doubles,
    refused,
  };
}
