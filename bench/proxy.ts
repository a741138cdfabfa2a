import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { childPids, createSession, ROOT, startController, waitWarm } from '../test/integration/harness.js';
import { cpuSeconds, envPort, freePort, median, QUICK, round, startProcess, stopController, waitHttp, wrk, type Proc, type WrkResult } from './lib.js';

interface Target {
  name: 'direct' | 'warmpool' | 'chp' | 'nginx';
  url: string;
  /** Processes whose CPU is the cost of this hop (not the worker's, except for `direct`). */
  pids: () => number[];
}

export interface ProxyRun extends WrkResult {
  target: Target['name'];
  connections: number;
  round: number;
  /** CPU microseconds the hop spent per request. */
  cpuUsPerRequest: number;
}

const ROUTE = '/healthz';

function nginxConfig(dir: string, listen: number, upstream: number): string {
  // One worker process, like the single-threaded Node proxies it is compared with.
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream worker { server 127.0.0.1:${upstream}; keepalive 256; }
  server {
    listen 127.0.0.1:${listen};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://worker;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
    }
  }
}
`;
}

/**
 * The same worker process reached four ways: directly, through warmpool (a session's path),
 * through configurable-http-proxy and through nginx. Targets are run in a rotating order each
 * round so that noise from other work on the machine spreads over all of them.
 */
export async function benchProxy(): Promise<{ runs: ProxyRun[]; summary: Record<string, unknown> }> {
  const seconds = QUICK ? 2 : 8;
  const rounds = QUICK ? 1 : 3;
  const controller = await startController({ POOL_SIZE: '1', LOG_LEVEL: 'info', MAX_SESSIONS_PER_CLIENT: '100' });
  const helpers: Proc[] = [];
  try {
    await waitWarm(controller, 1);
    const id = await createSession(controller);
    const { pid: workerPid } = (await (await fetch(`${controller.base}/sessions/${id}${ROUTE}`)).json()) as { pid: number };
    const workerPort = envPort(workerPid);
    const controllerPid = controller.proc.pid as number;

    const chpPort = await freePort();
    const chp = startProcess(path.join(ROOT, 'node_modules/.bin/configurable-http-proxy'), [
      '--ip', '127.0.0.1', '--port', String(chpPort), '--api-ip', '127.0.0.1', '--api-port', String(await freePort()),
      '--default-target', `http://127.0.0.1:${workerPort}`, '--log-level', 'warn',
    ]);
    helpers.push(chp);

    const nginxPort = await freePort();
    const dir = path.join(ROOT, 'bench/tmp', `nginx-${nginxPort}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'nginx.conf'), nginxConfig(dir, nginxPort, workerPort));
    const nginx = startProcess('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;']);
    helpers.push(nginx);

    const targets: Target[] = [
      { name: 'direct', url: `http://127.0.0.1:${workerPort}${ROUTE}`, pids: () => [workerPid] },
      { name: 'warmpool', url: `${controller.base}/sessions/${id}${ROUTE}`, pids: () => [controllerPid] },
      { name: 'chp', url: `http://127.0.0.1:${chpPort}${ROUTE}`, pids: () => [chp.proc.pid as number] },
      { name: 'nginx', url: `http://127.0.0.1:${nginxPort}${ROUTE}`, pids: () => childPids(nginx.proc.pid as number) },
    ];
    for (const t of targets) await waitHttp(t.url);
    // Warm-up: JIT, keep-alive pools, nginx upstream connections.
    for (const t of targets) await wrk(t.url, 32, QUICK ? 1 : 2);

    const runs: ProxyRun[] = [];
    for (const connections of [1, 32, 256]) {
      for (let r = 0; r < rounds; r++) {
        const order = [...targets.slice(r % targets.length), ...targets.slice(0, r % targets.length)];
        for (const t of order) {
          const pids = t.pids();
          const before = pids.reduce((a, p) => a + cpuSeconds(p), 0);
          const result = await wrk(t.url, connections, connections === 1 ? Math.max(2, seconds / 2) : seconds);
          const cpu = pids.reduce((a, p) => a + cpuSeconds(p), 0) - before;
          runs.push({ target: t.name, connections, round: r, ...result, cpuUsPerRequest: round((cpu / Math.max(1, result.requests)) * 1e6, 1) });
          console.log(`  ${t.name.padEnd(8)} c=${String(connections).padStart(3)} round ${r}: ${round(result.rps, 0)} req/s p50 ${result.p50Ms} ms p99 ${result.p99Ms} ms${result.errors || result.non2xx ? ` errors ${result.errors} non2xx ${result.non2xx}` : ''}`);
        }
      }
    }
    return { runs, summary: summarize(runs) };
  } finally {
    for (const h of helpers) await h.stop();
    await stopController(controller);
  }
}

/** Medians per target and connection count, and the ratios the targets are stated in. */
export function summarize(runs: ProxyRun[]): Record<string, unknown> {
  const med = (target: string, c: number, key: 'rps' | 'p50Ms' | 'p99Ms' | 'cpuUsPerRequest') =>
    median(runs.filter((r) => r.target === target && r.connections === c).map((r) => r[key]));
  const out: Record<string, unknown> = {};
  for (const c of [1, 32, 256]) {
    const row: Record<string, unknown> = {};
    for (const t of ['direct', 'warmpool', 'chp', 'nginx']) {
      row[t] = { rps: round(med(t, c, 'rps'), 0), p50Ms: med(t, c, 'p50Ms'), p99Ms: med(t, c, 'p99Ms'), cpuUsPerRequest: med(t, c, 'cpuUsPerRequest') };
    }
    // Ratios per round (same moment, same noise), then the median of those.
    const ratio = (a: string, b: string) => round(median(
      [...new Set(runs.map((r) => r.round))].map((rd) => {
        const pick = (t: string) => runs.find((r) => r.target === t && r.connections === c && r.round === rd)?.rps ?? NaN;
        return pick(a) / pick(b);
      }),
    ), 2);
    row.warmpoolOverChp = ratio('warmpool', 'chp');
    row.warmpoolOverNginx = ratio('warmpool', 'nginx');
    row.warmpoolOverDirect = ratio('warmpool', 'direct');
    row.p50AddedMs = round(med('warmpool', c, 'p50Ms') - med('direct', c, 'p50Ms'), 3);
    out[`c${c}`] = row;
  }
  return out;
}
