import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launch, parseLine } from '../test/integration/harness.js';
import { CONTROLLER, QUICK, round, wrk } from './lib.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a sample's time went, by the function it was taken in (self time). */
function category(fn: string, url: string): string {
  if (/^(writev|writeLatin1String|writeString|writeBuffer|writeUtf8String)$/.test(fn)) return 'socket writes (native)';
  if (fn === '(garbage collector)') return 'garbage collector';
  if (url === '' && (fn === 'parse' || fn === 'stringify')) return `JSON.${fn}`;
  if (url === '' && (fn === 'connect' || fn === 'close')) return 'TCP connect and close (native)';
  if (url.includes('controller/dist')) return 'warmpool code';
  if (url.includes('node_modules/@kubernetes/client-node')) return 'Kubernetes client library';
  if (/node_modules\/(node-fetch|whatwg-url|tr46)\//.test(url)) return "node-fetch (the client library's HTTP)";
  if (url.includes('node_modules/undici') || url.startsWith('wasm')) return 'undici (with llhttp wasm)';
  if (url.includes('node_modules/prom-client')) return 'prom-client';
  if (/node_modules\/(express|router|body-parser)\//.test(url)) return 'express';
  if (/node_modules\/(pino|sonic-boom|fast-redact)\//.test(url)) return 'pino (logging)';
  if (/node:_tls|node:tls|node:https/.test(url)) return 'TLS';
  if (/node:_http|node:http/.test(url)) return 'node http';
  if (/node:net|stream|node:events|task_queues|timers/.test(url)) return 'node streams, events, timers';
  if (url.includes('crypto') || fn === 'Hash') return 'crypto';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
  return pkg ?? 'other';
}

/** Self time of a V8 CPU profile's busy samples, as shares of the busy time by category and by function. */
export function summariseProfile(profile: CpuProfile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!frame || frame.functionName === '(idle)') return;
    busy += dt;
    const cat = category(frame.functionName, frame.url);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + dt);
    const name = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*node_modules\//, '').replace(/^.*\/controller\/dist\//, 'controller/')}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + dt);
  });
  const share = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, t]) => ({ name, share: round(t / busy, 3) }));
  return { busySeconds: round(busy / 1e6, 2), categories: share(byCategory, 12), topFunctions: share(byFunction, 15) };
}

async function until<T>(what: string, check: () => T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * The controller under the proxy benchmark's load (c=32 on a session's /healthz), run with
 * `node --cpu-prof`: the share of busy samples per part of the stack, to say where a request's
 * CPU goes. The raw .cpuprofile (tens of MB) is summarised and removed; for a flame graph, run
 * `node --cpu-prof controller/dist/main.js` under load and open the file in Chrome DevTools.
 */
export async function benchProfile(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warmpool-prof-'));
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('KUBE') && !k.startsWith('npm_')) env[k] = v;
  Object.assign(env, { HOME: dir, PORT: '0', ADMIN_PORT: '0', LISTEN_HOST: '127.0.0.1', BACKEND: 'local', POOL_SIZE: '1', LOG_LEVEL: 'info' });
  const c = launch(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, CONTROLLER], env);
  const seconds = QUICK ? 3 : 8;
  let load;
  try {
    const listening = await until('listening', () => c.output.map(parseLine).find((l) => l?.msg === 'listening'));
    await until('a warm worker', () => c.output.map(parseLine).find((l) => l?.msg === 'worker warm'));
    const base = `http://127.0.0.1:${listening.port as number}`;
    const { id } = (await (await fetch(`${base}/sessions`, { method: 'POST' })).json()) as { id: string };
    load = await wrk(`${base}/sessions/${id}/healthz`, 32, seconds);
  } finally {
    process.kill(-(c.proc.pid as number), 'SIGTERM');
    await c.exited;
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
  rmSync(dir, { recursive: true, force: true });
  return { load, ...summariseProfile(profile) };
}
