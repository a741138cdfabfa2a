import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { scaleSection } from './report-scale.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function load(dir: string, name: string): Json | undefined {
  const file = path.join(dir, `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Json) : undefined;
}

const fmt = (x: unknown, digits = 2) => (typeof x === 'number' && Number.isFinite(x) ? String(Math.round(x * 10 ** digits) / 10 ** digits) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');

function proxySection(p: Json, title: string): string[] {
  const s = p.summary as Json;
  const lines = [`### ${title}`, '', `Run ${p.started}, load average at start ${p.machine.loadAverageAtStart.join(' / ')}.`, ''];
  lines.push('| connections | target | req/s (median) | p50 ms | p99 ms | CPU µs/request of the hop |', '| ---: | --- | ---: | ---: | ---: | ---: |');
  for (const c of [1, 32, 256]) {
    const row = s[`c${c}`] as Json;
    for (const t of ['direct', 'warmpool', 'chp', 'nginx']) {
      const r = row[t] as Json;
      lines.push(`| ${c} | ${t} | ${fmt(r.rps, 0)} | ${fmt(r.p50Ms, 3)} | ${fmt(r.p99Ms, 3)} | ${fmt(r.cpuUsPerRequest, 1)} |`);
    }
  }
  lines.push('', '| connections | warmpool / CHP (target >= 1.5) | warmpool / nginx (target >= 0.3) | warmpool / direct | p50 added over direct, ms |', '| ---: | ---: | ---: | ---: | ---: |');
  for (const c of [1, 32, 256]) {
    const row = s[`c${c}`] as Json;
    lines.push(`| ${c} | ${fmt(row.warmpoolOverChp)} ${c > 1 ? verdict(row.warmpoolOverChp >= 1.5) : ''} | ${fmt(row.warmpoolOverNginx)} ${c > 1 ? verdict(row.warmpoolOverNginx >= 0.3) : ''} | ${fmt(row.warmpoolOverDirect)} | ${fmt(row.p50AddedMs, 3)} ${c === 1 ? `(target <= 1: ${verdict(row.p50AddedMs <= 1)})` : ''} |`);
  }
  lines.push('');
  return lines;
}

/** Token gaps of the same worker's streamed replies, direct and through warmpool. */
function interArrivalTable(ia: Json): string[] {
  return [
    '| path | gaps | p50 ms | p99 ms | max ms | share of gaps < TOKEN_DELAY_MS/4 |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    `| direct | ${ia.direct.samples} | ${fmt(ia.direct.p50Ms, 3)} | ${fmt(ia.direct.p99Ms, 3)} | ${fmt(ia.direct.maxMs, 3)} | ${fmt(ia.direct.under5msShare, 4)} |`,
    `| warmpool | ${ia.warmpool.samples} | ${fmt(ia.warmpool.p50Ms, 3)} | ${fmt(ia.warmpool.p99Ms, 3)} | ${fmt(ia.warmpool.maxMs, 3)} | ${fmt(ia.warmpool.under5msShare, 4)} |`,
    '',
  ];
}

/** The issue's targets against the figures of the latest run of each part. */
function targets(claims: Json | undefined, proxy: Json | undefined, streams: Json | undefined, openai: Json | undefined, ttft: Json | undefined): string[] {
  const rows: string[] = [];
  if (proxy) {
    const s = proxy.summary as Json;
    for (const c of [32, 256]) {
      rows.push(`| warmpool req/s >= 1.5 × CHP, ${c} connections | ${fmt(s[`c${c}`].warmpoolOverChp)} × | ${verdict(s[`c${c}`].warmpoolOverChp >= 1.5)} |`);
      rows.push(`| warmpool req/s >= 0.3 × nginx, ${c} connections | ${fmt(s[`c${c}`].warmpoolOverNginx)} × | ${verdict(s[`c${c}`].warmpoolOverNginx >= 0.3)} |`);
    }
    rows.push(`| p50 latency added over direct <= 1 ms (1 connection) | ${fmt(s.c1.p50AddedMs, 3)} ms | ${verdict(s.c1.p50AddedMs <= 1)} |`);
  }
  if (streams) {
    const ia = streams.interArrival as Json;
    rows.push(`| SSE token inter-arrival, p99 added over direct <= 2 ms | ${fmt(ia.p99AddedMs, 3)} ms (p50 ${fmt(ia.p50AddedMs, 3)} ms) | ${verdict(ia.p99AddedMs <= 2)} |`);
    rows.push(`| controller RSS with ${streams.openSse.streams} open SSE streams <= 300 MB | ${fmt(streams.openSse.peakRssMb, 1)} MB peak, CPU ${fmt(streams.openSse.cpuShareOfOneCore * 100, 0)} % of a core at ${fmt(streams.openSse.eventsPerSecond, 0)} events/s | ${verdict(streams.openSse.peakRssMb <= 300)} |`);
    rows.push(`| controller RSS with ${streams.openWebSockets.sockets} open WebSockets <= 300 MB | ${fmt(streams.openWebSockets.peakRssMb, 1)} MB peak, CPU ${fmt(streams.openWebSockets.chattingCpuShareOfOneCore * 100, 0)} % of a core at ${fmt(streams.openWebSockets.framesPerSecond, 0)} frames/s | ${verdict(streams.openWebSockets.peakRssMb <= 300)} |`);
  }
  if (openai) rows.push(`| OpenAI streamed completion, token inter-arrival p99 added over direct <= 2 ms | ${fmt(openai.p99AddedMs, 3)} ms (p50 ${fmt(openai.p50AddedMs, 3)} ms) | ${verdict(openai.p99AddedMs <= 2)} |`);
  if (ttft) rows.push(`| time to first token, warm pool vs cold (MODEL_LOAD_DELAY_MS=${ttft.modelLoadDelayMs}) | ${fmt(ttft.warmMedianMs, 0)} ms vs ${fmt(ttft.coldMedianMs, 0)} ms: ${fmt(ttft.coldOverWarm, 0)} × sooner | (no target) |`);
  if (claims) {
    rows.push(`| claim p50 <= 1.5 × raw label-flip PATCH p50 + 2 ms (1 replica, warm pool) | ${fmt(claims.claim.p50Ms)} ms vs ${fmt(claims.claimTargetMs)} ms (raw ${fmt(claims.rawPatch.p50Ms)} ms) | ${verdict(claims.claim.p50Ms <= claims.claimTargetMs)} |`);
    rows.push(`| claims/s >= 80 % of the raw label-flip PATCH rate, 1 replica | ${fmt(claims.burst1OverRaw * 100, 0)} % (${fmt(claims.burst1PerSecond, 0)} vs ${fmt(claims.rawPatch.burstPerSecond, 0)}/s) | ${verdict(claims.burst1OverRaw >= 0.8)} |`);
    rows.push(`| claims/s >= 80 % of the raw label-flip PATCH rate, 3 replicas | ${fmt(claims.burst3OverRaw * 100, 0)} % (${fmt(claims.burst3PerSecond, 0)}/s) | ${verdict(claims.burst3OverRaw >= 0.8)} |`);
    rows.push(`| zero double claims | ${claims.doubleClaims} | ${verdict(claims.doubleClaims === 0)} |`);
  }
  if (rows.length === 0) return [];
  return ['## Targets', '', '| target | figure (medians) | |', '| --- | --- | --- |', ...rows, ''];
}

/** docs/benchmarks.md from the raw results; the analysis text lives in bench/analysis.md. */
export function writeReport(resultsDir: string, out: string): void {
  const proxy = load(resultsDir, 'proxy');
  const before = load(resultsDir, 'proxy-http-proxy-3');
  const streams = load(resultsDir, 'streams');
  const openai = load(resultsDir, 'openai');
  const ttft = load(resultsDir, 'ttft');
  const claims = load(resultsDir, 'claims');
  const machine = (proxy ?? streams ?? ttft)?.machine as Json | undefined;
  const lines: string[] = [
    '# Benchmarks',
    '',
    'Generated by `npm run bench` (`bench/run.ts`) from the raw results in `bench/results/`. These are',
    'benchmarks, not assertions: the machine is shared with other builds and tests, so every',
    'comparison is a ratio of figures measured in the same run, and each figure is the median of',
    'repeated runs with the targets in rotating order.',
    '',
    '## Machine and commands',
    '',
  ];
  if (machine) {
    lines.push(`- ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGb} GB, Linux ${machine.kernel}, Node ${machine.node}; load, client and servers share these cores.`);
  }
  lines.push(
    '- `npm run bench` (all parts), `BENCH_ONLY=proxy,profile npm run bench` (a comma-separated subset of proxy, profile, streams, openai, ttft, claims; claims starts the loopback cluster of test/cluster/ if none is up), `BENCH_ONLY=scale npm run bench` (minutes long, so only when named; `BENCH_SCALE_SIZES`, `BENCH_SCALE_RATES`, `BENCH_SCALE_BURST=0` narrow it), `BENCH_QUICK=1 npm run bench` (smoke run, results in `*.quick.json`, report untouched).',
    '- Needs `wrk` and `nginx` on PATH for the proxy part: `apt-get install -y nginx-light wrk`. configurable-http-proxy is a devDependency.',
    '- HTTP load: `wrk -t1 -c{1,32,256} -d8s --latency` on `GET /healthz` of the reference worker (a small JSON body), keep-alive; 3 rounds. nginx runs one worker process, `proxy_http_version 1.1`, upstream `keepalive 256`, `proxy_buffering off`.',
    '',
  );
  lines.push(...targets(claims, proxy, streams, openai, ttft));
  const analysis = path.join(path.dirname(resultsDir), 'analysis.md');
  if (existsSync(analysis)) lines.push(readFileSync(analysis, 'utf8').trim(), '');

  lines.push('## 1. Proxy throughput and latency', '', 'The same worker process reached directly, through warmpool (`/sessions/{id}/healthz`, `POOL_SIZE=1`), through configurable-http-proxy 5.3 (CHP, the JupyterHub proxy, itself on http-proxy-3) and through nginx 1.22.', '');
  if (proxy) lines.push(...proxySection(proxy, 'Current hot path'));
  if (before) lines.push(...proxySection(before, 'Before: every request through http-proxy-3 (decision record)'));
  const profile = load(resultsDir, 'profile');
  if (profile) {
    lines.push(
      '### Where the controller\'s CPU goes (`node --cpu-prof`, current hot path)',
      '',
      `The controller under \`wrk -c32\` on a session's \`/healthz\` (${fmt(profile.load.rps, 0)} req/s in that run), ${fmt(profile.busySeconds)} s of busy samples; self time by part of the stack:`,
      '',
      '| part | share of busy samples |',
      '| --- | ---: |',
      ...(profile.categories as Json[]).map((c) => `| ${c.name} | ${fmt(c.share * 100, 1)} % |`),
      '',
      'Top functions (self time): ' + (profile.topFunctions as Json[]).slice(0, 8).map((f) => `\`${f.name.trim()}\` ${fmt(f.share * 100, 1)} %`).join(', ') + '.',
      '',
    );
  }

  if (streams) {
    const ia = streams.interArrival as Json;
    const sse = streams.openSse as Json;
    const ws = streams.openWebSockets as Json;
    lines.push(
      '## 2. Streams',
      '',
      `### SSE token inter-arrival (reference worker, TOKEN_DELAY_MS=${ia.tokenDelayMs}, ${ia.replies} replies each way, alternating)`,
      '',
      ...interArrivalTable(ia),
      `p99 added: ${fmt(ia.p99AddedMs, 3)} ms (target <= 2: ${verdict(ia.p99AddedMs <= 2)}); p50 added ${fmt(ia.p50AddedMs, 3)} ms. A buffering proxy would show bursts (many gaps near 0) followed by long gaps.`,
      '',
      '### Many open streams through one session (controller process only)',
      '',
      '| streams | kind | open in s | RSS idle MB | RSS open MB | RSS peak MB (target <= 300) | controller CPU, share of one core | traffic |',
      '| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |',
      `| ${sse.streams} | SSE, 1 event/s each (bench/stream-worker.mjs) | ${fmt(sse.openSeconds)} | ${fmt(sse.idleRssMb, 1)} | ${fmt(sse.openRssMb, 1)} | ${fmt(sse.peakRssMb, 1)} ${verdict(sse.peakRssMb <= 300)} | ${fmt(sse.cpuShareOfOneCore)} | ${fmt(sse.eventsPerSecond, 0)} events/s of ${fmt(sse.expectedEventsPerSecond, 0)} sent |`,
      `| ${ws.sockets} | WebSocket, reference worker | ${fmt(ws.openSeconds)} | ${fmt(ws.idleRssMb, 1)} | ${fmt(ws.openRssMb, 1)} | ${fmt(ws.peakRssMb, 1)} ${verdict(ws.peakRssMb <= 300)} | idle ${fmt(ws.idleCpuShareOfOneCore)}, chatting ${fmt(ws.chattingCpuShareOfOneCore)} | ${fmt(ws.framesPerSecond, 0)} frames/s while chatting (TOKEN_DELAY_MS=${ws.tokenDelayMs}) |`,
      '',
    );
  }

  if (openai) {
    lines.push(
      `### OpenAI streamed completions: token inter-arrival (reference worker, TOKEN_DELAY_MS=${openai.tokenDelayMs}, ${openai.replies} replies each way, alternating)`,
      '',
      `\`POST /v1/chat/completions\` with \`stream: true\`, directly to the worker and through the session's base URL \`/sessions/{id}/v1\`; gaps between \`chat.completion.chunk\` events carrying content. Run ${openai.started} on ${openai.machine.cpus} × ${openai.machine.cpuModel}, load average at start ${openai.machine.loadAverageAtStart.join(' / ')}.`,
      '',
      ...interArrivalTable(openai),
      `p99 added: ${fmt(openai.p99AddedMs, 3)} ms (target <= 2, as for /chat: ${verdict(openai.p99AddedMs <= 2)}); p50 added ${fmt(openai.p50AddedMs, 3)} ms.`,
      '',
    );
  }

  if (ttft) {
    const z = ttft.poolSizeZero as Json;
    lines.push(
      '## 3. Time to first token of a new session',
      '',
      `\`POST /sessions\` then a streamed \`POST /sessions/{id}/chat\`, to the first token; MODEL_LOAD_DELAY_MS=${ttft.modelLoadDelayMs}, ${ttft.samples} samples each.`,
      '',
      '| pool | median ms | samples ms |',
      '| --- | ---: | --- |',
      `| warm (a worker was waiting) | ${fmt(ttft.warmMedianMs, 1)} | ${(ttft.warmMs as number[]).join(', ')} |`,
      `| cold (pool just emptied; the session waits for a worker to start and load) | ${fmt(ttft.coldMedianMs, 1)} | ${(ttft.coldMs as number[]).join(', ')} |`,
      '',
      `**The pool in one number: a new session's first token comes ${fmt(ttft.coldOverWarm, 1)}× sooner with a warm worker waiting.**`,
      '',
      `With \`POOL_SIZE=0\` the local backend starts no worker at all, so a session request waits out CLAIM_TIMEOUT_MS (${z.claimTimeoutMs}) and gets ${z.status} \`${z.body?.error}\` after ${z.afterMs} ms; the cold row above is therefore measured on an emptied pool of one.`,
      '',
    );
  }
  if (claims) {
    const raw = claims.rawPatch as Json;
    lines.push(
      '## 4. Claims on the real control plane',
      '',
      `The loopback cluster of \`test/cluster/\` (real kube-apiserver v1.33, etcd 3.4 on tmpfs), a pool of ${claims.poolSize} warm reference workers, ${claims.rounds} rounds. The floor is measured in the same rounds on the same API server: the one write a claim makes, done by hand (a conditional merge PATCH that flips a warm pod's pool label and sets a session label, which sets the ReplicaSet, the scheduler and a new worker process to work on the same two cores), sequentially for latency and one per pod at once for the rate. A conditional PATCH of an annotation only, which starts nothing, is shown beside it. Claims: one \`POST /sessions\` at a time through one replica (latency), then bursts of ${claims.poolSize} at once through one replica and spread over three (rate). After every burst each session is checked to be on its own pod and claimed pods to equal claims.`,
      '',
      '| | p50 ms | p99 ms | per second (burst) |',
      '| --- | ---: | ---: | ---: |',
      `| conditional PATCH of an annotation (starts nothing) | ${fmt((claims.annotationPatch as Json).p50Ms)} | ${fmt((claims.annotationPatch as Json).p99Ms)} | |`,
      `| raw claim write: conditional label-flip PATCH (the floor) | ${fmt(raw.p50Ms)} | ${fmt(raw.p99Ms)} | ${fmt(raw.burstPerSecond, 1)} |`,
      `| \`POST /sessions\`, 1 replica | ${fmt(claims.claim.p50Ms)} | ${fmt(claims.claim.p99Ms)} | ${fmt(claims.burst1PerSecond, 1)} |`,
      `| \`POST /sessions\`, 3 replicas | | | ${fmt(claims.burst3PerSecond, 1)} |`,
      '',
      `Double claims: ${claims.doubleClaims}; claims refused: ${claims.refused}.`,
      '',
    );
  }
  const scale = load(resultsDir, 'scale');
  if (scale) lines.push(...scaleSection(scale, load(resultsDir, 'scale-before'), load(resultsDir, 'scale-queue'), load(resultsDir, 'scale-burst-profile')));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${lines.join('\n')}\n`);
}
