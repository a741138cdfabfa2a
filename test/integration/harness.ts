import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const ECHO_WORKER = `'${process.execPath}' '${path.join(ROOT, 'test/integration/fixtures/echo-worker.mjs')}'`;

export interface Controller {
  proc: ChildProcess;
  base: string;
  admin: string;
  /** Every stdout and stderr line so far. */
  output: string[];
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

/**
 * The environment every test controller starts from: ports 0 on loopback, the local backend
 * found by `auto` (a fresh HOME, no KUBECONFIG, so nothing points at a cluster), fast workers.
 */
function baseEnv(overrides: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('KUBE') && !k.startsWith('npm_')) env[k] = v;
  }
  return {
    ...env,
    HOME: mkdtempSync(path.join(os.tmpdir(), 'warmpool-home-')),
    PORT: '0',
    ADMIN_PORT: '0',
    LISTEN_HOST: '127.0.0.1',
    BACKEND: 'auto',
    POOL_SIZE: '2',
    LOG_LEVEL: 'debug',
    SHUTDOWN_TIMEOUT_S: '5',
    ...overrides,
  };
}

/** Spawns a command in its own process group and collects its output lines. */
export function launch(command: string, args: string[], env: Record<string, string>) {
  const proc = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const output: string[] = [];
  for (const stream of [proc.stdout, proc.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      output.push(...lines);
    });
  }
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, output, exited };
}

export async function startController(overrides: Record<string, string> = {}, via: 'node' | 'npm' = 'node'): Promise<Controller> {
  const env = baseEnv(overrides);
  const { proc, output, exited } = via === 'npm'
    ? launch('npm', ['start', '--silent'], env)
    : launch(process.execPath, ['controller/dist/main.js'], env);
  let exitCode: number | null | undefined;
  void exited.then((c) => { exitCode = c; });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const line = output.map(parseLine).find((l) => l?.msg === 'listening');
    if (line) {
      const controller: Controller = {
        proc,
        output,
        exited,
        base: `http://127.0.0.1:${line.port as number}`,
        admin: `http://127.0.0.1:${line.adminPort as number}`,
        async stop() {
          if (exitCode === undefined) process.kill(-(proc.pid as number), 'SIGTERM');
          return exited;
        },
      };
      return controller;
    }
    if (exitCode !== undefined) throw new Error(`controller exited (${exitCode}) before listening:\n${output.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`controller did not listen in time:\n${output.join('\n')}`);
    await sleep(50);
  }
}

export function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export interface PollOptions {
  /** Pause between tries. */
  intervalMs?: number;
  /** Run before every try; what it throws ends the wait at once (a try's own errors mean "not yet"). */
  failFast?: () => void;
}

/** Polls `check` until it returns a value other than undefined, or fails after `ms`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = 30_000,
  { intervalMs = 50, failFast }: PollOptions = {},
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    failFast?.();
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(intervalMs);
  }
}

/** One sample from a controller's /metrics, `name{labels}` with labels as written there; 0 when absent. */
export async function metric(c: Controller, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${c.admin}/metrics`)).text();
  const key = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(key));
  return Number(line?.slice(key.length).split(' ')[0] ?? 0);
}

export async function pool(c: Controller): Promise<{ warm: number; warming: number; assigned: number; pendingClaims: number }> {
  return (await fetch(`${c.admin}/pool`)).json() as never;
}

export function waitWarm(c: Controller, n: number): Promise<true> {
  return eventually(`${n} warm workers`, async () => ((await pool(c)).warm >= n ? true : undefined));
}

export async function createSession(c: Controller, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${c.base}/sessions`, { method: 'POST', headers });
  if (res.status !== 201) throw new Error(`POST /sessions answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export async function chat(c: Controller, id: string, message: string): Promise<{ reply: string; turn: number }> {
  const res = await fetch(`${c.base}/sessions/${id}/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message }),
  });
  if (res.status !== 200) throw new Error(`chat answered ${res.status}: ${await res.text()}`);
  return res.json() as never;
}

export async function workerPid(c: Controller, id: string): Promise<number> {
  return ((await (await fetch(`${c.base}/sessions/${id}/healthz`)).json()) as { pid: number }).pid;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface ProcessStat {
  pid: number;
  /** R, S, D, Z... */
  state: string;
  ppid: number;
  pgrp: number;
}

/** Every process on the machine, from /proc/<pid>/stat. */
function processes(): ProcessStat[] {
  const out: ProcessStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state = '', ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(entry), state, ppid: Number(ppid), pgrp: Number(pgrp) });
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** Pids whose parent is `pid` (the local backend's workers are its children). */
export function childPids(pid: number): number[] {
  return processes().filter((p) => p.ppid === pid).map((p) => p.pid);
}

/** Live (not zombie) processes in the process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  return processes().filter((p) => p.pgrp === pgid && p.state !== 'Z').map((p) => p.pid);
}
