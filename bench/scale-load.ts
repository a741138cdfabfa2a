/**
 * The load and the counters of the `scale` part: an open-loop generator (requests start on a
 * fixed schedule whether or not earlier ones have answered, as clients of a service arrive), and
 * the figures read around each phase: the API server's request counters by verb and resource,
 * the controllers' own request counters, their CPU time and memory.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Controller } from '../test/integration/harness.js';
import { collectGarbage, inspect } from '../test/integration/inspector.js';
import type { Kube } from '../test/cluster/kube.js';
import { commandLine, markedPids } from '../test/cluster/procs.js';
import { cpuSeconds, percentile, round, TICK_S } from './lib.js';
import { summariseProfile, type CpuProfile } from './profile.js';

export interface Sample {
  ms: number;
  ok: boolean;
}

const since = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** One timed call: its latency, and whether it succeeded. */
export async function timed(call: () => Promise<boolean>): Promise<Sample> {
  const t = process.hrtime.bigint();
  const ok = await call().catch(() => false);
  return { ms: since(t), ok };
}

/** `count` calls started `rate` per second on schedule (open loop); resolves when all have answered. */
export async function openLoop(rate: number, count: number, call: (i: number) => Promise<boolean>): Promise<{ samples: Sample[]; seconds: number }> {
  const t0 = process.hrtime.bigint();
  const pending: Promise<Sample>[] = [];
  for (let i = 0; i < count; i++) {
    const wait = (i * 1000) / rate - since(t0);
    if (wait > 1) await sleep(wait);
    pending.push(timed(() => call(i)));
  }
  const samples = await Promise.all(pending);
  return { samples, seconds: since(t0) / 1000 };
}

/** `count` calls at once; the rate is successes over the time until the last answered. */
export async function burst(count: number, call: (i: number) => Promise<boolean>): Promise<{ samples: Sample[]; perSecond: number }> {
  const t0 = process.hrtime.bigint();
  const samples = await Promise.all(Array.from({ length: count }, (_, i) => timed(() => call(i))));
  return { samples, perSecond: samples.filter((s) => s.ok).length / (since(t0) / 1000) };
}

export function latency(samples: Sample[]) {
  const ms = samples.filter((s) => s.ok).map((s) => s.ms);
  return { ok: ms.length, failed: samples.length - ms.length, p50Ms: round(percentile(ms, 50), 1), p90Ms: round(percentile(ms, 90), 1), p99Ms: round(percentile(ms, 99), 1) };
}

/** Sums of a Prometheus text exposition's counters, grouped by the values of `by`, filtered by `keep`. */
export function sumBy(text: string, metric: string, by: string[], keep: (labels: Record<string, string>) => boolean = () => true): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    const close = line.startsWith(`${metric}{`) ? line.lastIndexOf('}') : metric.length;
    const labels: Record<string, string> = {};
    for (const m of line.slice(metric.length + 1, close).matchAll(/(\w+)="([^"]*)"/g)) labels[m[1] as string] = m[2] as string;
    if (!keep(labels)) continue;
    const key = by.map((k) => labels[k] ?? '').join(' ');
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(close + 1).trim()));
  }
  return out;
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION', 'APPLY', 'CREATE', 'UPDATE']);

/** The API server's writes so far, by "VERB resource[/subresource]", and the "pod events" it sent to all watchers. */
export async function apiCounters(admin: Kube): Promise<Map<string, number>> {
  const text = await admin.get<string>('/metrics');
  const all = sumBy(text, 'apiserver_request_total', ['verb', 'resource', 'subresource'], (l) => WRITES.has(l.verb ?? '') && !l.dry_run);
  const out = new Map([...all].map(([k, v]) => [k.trim().replace(/ (\S+) (\S+)$/, ' $1/$2'), v]));
  out.set('pod events', sumBy(text, 'apiserver_watch_events_total', [], (l) => l.kind === 'Pod').get('') ?? 0);
  return out;
}

export function delta(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

/** What the controllers have done so far: their API requests by verb, claims by result, CPU seconds. */
export async function controllerCounters(cs: Controller[]) {
  const requests = new Map<string, number>();
  const claims = new Map<string, number>();
  let cpu = 0;
  for (const c of cs) {
    const text = await (await fetch(`${c.admin}/metrics`)).text();
    for (const [k, v] of sumBy(text, 'warmpool_kube_requests_total', ['verb'])) requests.set(k, (requests.get(k) ?? 0) + v);
    for (const [k, v] of sumBy(text, 'warmpool_claims_total', ['result'])) claims.set(k, (claims.get(k) ?? 0) + v);
    cpu += cpuSeconds(c.proc.pid as number);
  }
  return { requests, claims, cpu };
}

/** The control plane's own processes (the rest of the cluster, the node agents, stands in for other machines). */
const CONTROL_PLANE: Record<string, string> = { 'kube-apiserver': 'API server', etcd: 'etcd', 'kube-controller-manager': 'controller manager', 'kube-scheduler': 'scheduler' };

/** Which part of the run a cluster process is: a control-plane component, or a node agent. */
function partOf(pid: number): string | undefined {
  const argv = commandLine(pid);
  return CONTROL_PLANE[path.basename(argv[0] ?? '')] ?? (argv.some((a) => a.includes('node-agent')) ? 'node agents' : undefined);
}

/**
 * CPU seconds so far of each part of the run on this machine: the control plane's components,
 * the node agents, the controllers and this process (the load generator), and how much of the
 * machine was idle. Read around a phase, it says who spent the cores a claim needs.
 */
export function cpuByPart(cs: Controller[]): Map<string, number> {
  const out = new Map<string, number>();
  const add = (part: string, seconds: number) => out.set(part, (out.get(part) ?? 0) + seconds);
  for (const pid of markedPids()) {
    const part = partOf(pid);
    if (part) add(part, cpuSeconds(pid));
  }
  for (const c of cs) add('controllers', cpuSeconds(c.proc.pid as number));
  add('load generator', cpuSeconds(process.pid));
  const [user, nice, system, idle, iowait] = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.split(/\s+/).slice(1, 6).map(Number) ?? [];
  add('idle (all cores)', ((idle ?? NaN) + (iowait ?? NaN)) * TICK_S);
  add('busy (all cores)', ((user ?? NaN) + (nice ?? NaN) + (system ?? NaN)) * TICK_S);
  return out;
}

/**
 * Where the processes may run. `split` puts the control plane on core 0 and everything else (the
 * controllers, the node agents, this load generator) on the other cores, as on a cluster where
 * the controller does not share the API server's machine: a burst then shows whether the
 * controller or the API server sets the claim rate. `shared` lets every process use every core.
 */
export function place(placement: 'shared' | 'split', cs: Controller[]): void {
  const all = `0-${cpus().length - 1}`;
  // A thread that ends while taskset walks them fails the call: the second try sees it gone.
  const pin = (pid: number, list: string) => {
    const run = () => execFileSync('taskset', ['-a', '-p', '-c', list, String(pid)], { stdio: 'ignore' });
    try {
      run();
    } catch {
      run();
    }
  };
  const rest = `1-${cpus().length - 1}`;
  for (const pid of markedPids()) {
    const part = partOf(pid);
    if (part) pin(pid, placement === 'shared' ? all : part === 'node agents' ? rest : '0');
  }
  for (const pid of [...cs.map((c) => c.proc.pid as number), process.pid]) pin(pid, placement === 'shared' ? all : rest);
}

/**
 * A controller's heap in use right after a full collection (so garbage, such as a list of
 * thousands of whole pods just parsed, does not count), which its inspector makes happen.
 */
export async function heapUsedMb(c: Controller): Promise<number> {
  await collectGarbage(c);
  const text = await (await fetch(`${c.admin}/metrics`)).text();
  return (sumBy(text, 'nodejs_heap_size_used_bytes', []).get('') ?? NaN) / 2 ** 20;
}

/** `work` with the controller's CPU profiled through its inspector: where its time went meanwhile. */
export async function profiled(c: Controller, work: () => Promise<unknown>): Promise<ReturnType<typeof summariseProfile>> {
  const inspector = await inspect(c);
  try {
    await inspector.send('Profiler.enable');
    await inspector.send('Profiler.start');
    await work();
    const { profile } = await inspector.send<{ profile: CpuProfile }>('Profiler.stop');
    return summariseProfile(profile);
  } finally {
    inspector.close();
  }
}
