/**
 * Sessions created, used and ended one after another through one controller replica, with the
 * controller's own footprint sampled as it goes: the leak check of the cluster tier and of
 * `npm run bench` (soak). A leak shows as a trend over hundreds of sessions, not in any one.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chat, createSession, metric, type Controller } from '../integration/harness.js';
import { collectGarbage } from '../integration/inspector.js';

export interface FootprintSample {
  /** Sessions completed when the sample was taken. */
  sessions: number;
  rssBytes: number;
  /** Heap in use right after a full garbage collection: what the controller retains. */
  heapUsedBytes: number;
  /** Open sockets of the controller process (listening, client, upstream, API server). */
  sockets: number;
  fds: number;
}

export interface ChurnResult {
  samples: FootprintSample[];
  /** Every session that did not go claim -> chat turn 1 -> 204 on DELETE, with what went wrong. */
  failures: string[];
  seconds: number;
}

/** Environment that opens the inspector of a controller on a free loopback port, for `footprint`. */
export const INSPECTABLE = { NODE_OPTIONS: '--inspect=127.0.0.1:0' };

/** What the kernel and the controller's own metrics say about its process now, after a full GC. */
export async function footprint(c: Controller, sessions: number): Promise<FootprintSample> {
  await collectGarbage(c);
  const pid = c.proc.pid as number;
  const fds = readdirSync(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // Closed while we looked.
    }
  }
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  const heapUsedBytes = await metric(c, 'nodejs_heap_size_used_bytes');
  return { sessions, rssBytes: Number(rss) * 1024, heapUsedBytes, sockets, fds: fds.length };
}

/** `n` sessions in sequence, each claimed, chatted with once and deleted; a sample every `every`. */
export async function churn(c: Controller, n: number, every: number, progress?: (s: FootprintSample) => void): Promise<ChurnResult> {
  const started = Date.now();
  const samples: FootprintSample[] = [await footprint(c, 0)];
  const failures: string[] = [];
  for (let i = 1; i <= n; i++) {
    try {
      const id = await createSession(c);
      const { turn } = await chat(c, id, `hello ${i}`);
      if (turn !== 1) failures.push(`session ${i}: a fresh worker answered turn ${turn}`);
      const del = await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' });
      if (del.status !== 204) failures.push(`session ${i}: DELETE answered ${del.status}`);
    } catch (err) {
      failures.push(`session ${i}: ${(err as Error).message}`);
    }
    if (i % every === 0 || i === n) {
      const s = await footprint(c, i);
      samples.push(s);
      progress?.(s);
    }
  }
  return { samples, failures, seconds: (Date.now() - started) / 1000 };
}
