import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { createSession, ROOT, startController, waitWarm, type Controller } from '../test/integration/harness.js';
import { cpuSeconds, envPort, percentile, QUICK, round, rssMb, stopController } from './lib.js';

/** Arrival times (ms, monotonic) of the SSE events of one streamed reply that `isToken` picks. */
function sseArrivals(url: string, request: unknown, isToken: (event: string) => boolean): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(request);
    const req = http.request(url, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`${url} answered ${res.statusCode}`));
      const times: number[] = [];
      let partial = '';
      res.setEncoding('utf8').on('data', (chunk: string) => {
        const now = performance.now();
        const events = (partial + chunk).split('\n\n');
        partial = events.pop() ?? '';
        for (const e of events) if (isToken(e)) times.push(now);
      });
      res.on('end', () => resolve(times));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - (times[i] as number));
}

/** Gap statistics, with the share of gaps under a quarter of the worker's spacing (bursts). */
function gapStats(xs: number[], tokenDelayMs: number) {
  return { samples: xs.length, p50Ms: round(percentile(xs, 50), 3), p99Ms: round(percentile(xs, 99), 3), maxMs: round(Math.max(...xs), 3), under5msShare: round(xs.filter((x) => x < tokenDelayMs / 4).length / xs.length, 4) };
}

/**
 * Token inter-arrival of the same worker's streamed replies on `path`, direct and through
 * warmpool, alternating: `request(i)` is the i-th body, `isToken` picks the events that carry a
 * token. A proxy that buffers shows as gaps near 0 followed by long ones; one that flushes shows
 * the worker's TOKEN_DELAY_MS plus noise on both paths.
 */
export async function interArrival(path: string, request: (i: number) => unknown, isToken: (event: string) => boolean): Promise<Record<string, unknown>> {
  const tokenDelayMs = 20;
  const replies = QUICK ? 6 : 40;
  const c = await startController({ POOL_SIZE: '1', LOG_LEVEL: 'info', TOKEN_DELAY_MS: String(tokenDelayMs) });
  try {
    await waitWarm(c, 1);
    const id = await createSession(c);
    const { pid } = (await (await fetch(`${c.base}/sessions/${id}/healthz`)).json()) as { pid: number };
    const direct = `http://127.0.0.1:${envPort(pid)}${path}`;
    const via = `${c.base}/sessions/${id}${path}`;
    const out = { direct: [] as number[], warmpool: [] as number[] };
    for (let i = 0; i < replies; i++) {
      out.direct.push(...gaps(await sseArrivals(direct, request(i), isToken)));
      out.warmpool.push(...gaps(await sseArrivals(via, request(i), isToken)));
    }
    const d = gapStats(out.direct, tokenDelayMs);
    const w = gapStats(out.warmpool, tokenDelayMs);
    return { tokenDelayMs, replies, direct: d, warmpool: w, p50AddedMs: round(w.p50Ms - d.p50Ms, 3), p99AddedMs: round(w.p99Ms - d.p99Ms, 3) };
  } finally {
    await stopController(c);
  }
}

interface Sampler {
  stop(): { peakRssMb: number };
}

function sampleRss(pid: number): Sampler {
  let peak = rssMb(pid);
  const timer = setInterval(() => { peak = Math.max(peak, rssMb(pid)); }, 250);
  return { stop: () => { clearInterval(timer); return { peakRssMb: round(peak, 1) }; } };
}

/** Share of one core the process used over `ms`. */
async function cpuShare(pid: number, ms: number): Promise<number> {
  const before = cpuSeconds(pid);
  await sleep(ms);
  return round((cpuSeconds(pid) - before) / (ms / 1000), 3);
}

/** Opens `n` things `open(i)` with at most `parallel` opening at once. */
async function openAll<T>(n: number, parallel: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await open(i);
    }
  }));
  return out;
}

interface OpenSse {
  req: http.ClientRequest;
  events: number;
}

/**
 * `count` server-sent event streams through one session to its one worker, open at the same
 * time, each receiving an event a second: the controller's memory and CPU while it holds them.
 */
async function manySse(count: number): Promise<Record<string, unknown>> {
  const tickMs = 1000;
  const c = await startController({
    POOL_SIZE: '1',
    LOG_LEVEL: 'info',
    TICK_MS: String(tickMs),
    LOCAL_WORKER_CMD: `'${process.execPath}' '${path.join(ROOT, 'bench/stream-worker.mjs')}'`,
  });
  const streams: OpenSse[] = [];
  try {
    await waitWarm(c, 1);
    const id = await createSession(c);
    const pid = c.proc.pid as number;
    await sleep(1000);
    const idleRssMb = round(rssMb(pid), 1);
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const url = `${c.base}/sessions/${id}/stream`;
    const sampler = sampleRss(pid);
    const t0 = performance.now();
    await openAll(count, 200, () => new Promise<void>((resolve, reject) => {
      const s: OpenSse = { req: http.get(url, { agent, headers: { accept: 'text/event-stream' } }), events: 0 };
      s.req.on('response', (res) => {
        if (res.statusCode !== 200) return reject(new Error(`stream answered ${res.statusCode}`));
        streams.push(s);
        res.on('data', (chunk: Buffer) => { s.events += chunk.toString().split('\n\n').length - 1; });
        res.on('error', () => undefined);
        resolve();
      });
      s.req.on('error', reject);
    }));
    const openSeconds = round((performance.now() - t0) / 1000, 2);
    const eventsBefore = streams.reduce((a, s) => a + s.events, 0);
    const windowMs = QUICK ? 3000 : 10_000;
    const cpu = await cpuShare(pid, windowMs);
    const eventsPerSecond = round((streams.reduce((a, s) => a + s.events, 0) - eventsBefore) / (windowMs / 1000), 0);
    const { peakRssMb } = sampler.stop();
    const openRssMb = round(rssMb(pid), 1);
    return { streams: count, tickMs, openSeconds, idleRssMb, openRssMb, peakRssMb, cpuShareOfOneCore: cpu, eventsPerSecond, expectedEventsPerSecond: round(count * 1000 / tickMs, 0) };
  } finally {
    for (const s of streams) s.req.destroy();
    await stopController(c);
  }
}

/**
 * `count` WebSockets through one session to the reference worker: opened, then idle, then each
 * asks for one reply whose tokens come TOKEN_DELAY_MS apart.
 */
async function manyWebSockets(count: number): Promise<Record<string, unknown>> {
  const tokenDelayMs = 1000;
  const c: Controller = await startController({ POOL_SIZE: '1', LOG_LEVEL: 'info', TOKEN_DELAY_MS: String(tokenDelayMs) });
  const sockets: WebSocket[] = [];
  try {
    await waitWarm(c, 1);
    const id = await createSession(c);
    const pid = c.proc.pid as number;
    await sleep(1000);
    const idleRssMb = round(rssMb(pid), 1);
    const url = `${c.base.replace('http', 'ws')}/sessions/${id}/ws`;
    const sampler = sampleRss(pid);
    const t0 = performance.now();
    let frames = 0;
    await openAll(count, 200, () => new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => { sockets.push(ws); resolve(); });
      ws.once('error', reject);
      ws.on('message', () => { frames++; });
    }));
    const openSeconds = round((performance.now() - t0) / 1000, 2);
    const windowMs = QUICK ? 3000 : 10_000;
    const idleCpu = await cpuShare(pid, windowMs / 2);
    const openRssMb = round(rssMb(pid), 1);
    for (const [i, ws] of sockets.entries()) ws.send(JSON.stringify({ message: `hello over websocket ${i}` }));
    const framesBefore = frames;
    const chatCpu = await cpuShare(pid, windowMs);
    const framesPerSecond = round((frames - framesBefore) / (windowMs / 1000), 0);
    const { peakRssMb } = sampler.stop();
    return { sockets: count, tokenDelayMs, openSeconds, idleRssMb, openRssMb, peakRssMb, idleCpuShareOfOneCore: idleCpu, chattingCpuShareOfOneCore: chatCpu, framesPerSecond };
  } finally {
    for (const ws of sockets) ws.terminate();
    await stopController(c);
  }
}

export async function benchStreams(): Promise<Record<string, unknown>> {
  const count = QUICK ? 500 : 5000;
  console.log('  SSE token inter-arrival, direct vs warmpool');
  const sse = await interArrival('/chat', (i) => ({ message: `tell me about the warm pool and the labels ${i}` }), (e) => e.includes('"token"'));
  console.log(`   ${JSON.stringify(sse)}`);
  console.log(`  ${count} open SSE streams through one session`);
  const openSse = await manySse(count);
  console.log(`   ${JSON.stringify(openSse)}`);
  console.log(`  ${count} open WebSockets through one session`);
  const openWs = await manyWebSockets(count);
  console.log(`   ${JSON.stringify(openWs)}`);
  return { interArrival: sse, openSse, openWebSockets: openWs };
}
