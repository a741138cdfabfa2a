import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT, type Controller } from '../test/integration/harness.js';

/** BENCH_QUICK=1: every phase shortened and repeated less, to check that the bench runs at all. */
export const QUICK = process.env.BENCH_QUICK === '1';
export const WORKER = path.join(ROOT, 'worker-image/dist/server.js');
export const CONTROLLER = path.join(ROOT, 'controller/dist/main.js');

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile; NaN for no samples, so a missing figure shows as such. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** A port that was free a moment ago on loopback (the same approach as the local backend). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function waitHttp(url: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer in ${ms} ms`);
    await sleep(50);
  }
}

export interface Proc {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** A helper process in its own group, stopped with SIGTERM (SIGKILL after 5 s) by its group id. */
export function startProcess(command: string, args: string[], env: Record<string, string> = {}, cwd = ROOT): Proc {
  const proc = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (c: string) => { stderr = (stderr + c).slice(-4000); });
  let stopping = false;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.once('exit', (code) => {
    if (!stopping) console.error(`${command} exited early (${code}): ${stderr}`);
  });
  return {
    proc,
    async stop() {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const kill = (sig: NodeJS.Signals) => {
        try {
          process.kill(-(proc.pid as number), sig);
        } catch {
          // Already gone.
        }
      };
      kill('SIGTERM');
      const timer = setTimeout(() => kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export function onPath(binary: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', `command -v ${binary}`], (err, stdout) => resolve(err ? undefined : stdout.trim()));
  });
}


/** Seconds per clock tick in /proc (USER_HZ is 100 on Linux). */
export const TICK_S = 0.01;

/** User + system CPU seconds a process has used so far (clock ticks of 10 ms on Linux). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S;
  } catch {
    return 0;
  }
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The PORT a process was started with (the local backend gives each worker its own). */
export function envPort(pid: number): number {
  const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  const entry = env.find((e) => e.startsWith('PORT='));
  if (!entry) throw new Error(`process ${pid} has no PORT`);
  return Number(entry.slice(5));
}

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  non2xx: number;
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(value.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    p99Ms: toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    requests: num(/(\d+) requests in/),
    errors: socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
  };
}

/** One wrk run: one thread (the cores are shared with the proxies under test), keep-alive. */
export function wrk(url: string, connections: number, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    execFile('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s', url], { timeout: (seconds + 30) * 1000 }, (err, stdout) => {
      if (err) return reject(err);
      resolve(parseWrk(stdout));
    });
  });
}

/** Stops a controller and fails the benchmark if it did not exit cleanly (a crash under load is a finding, not noise). */
export async function stopController(c: Controller): Promise<void> {
  const code = await c.stop();
  if (code !== 0) throw new Error(`the controller exited with code ${code}:\n${c.output.slice(-20).join('\n')}`);
}
