/**
 * `npm run bench`: the proxy, stream and time-to-first-token benchmarks of docs/benchmarks.md.
 * BENCH_ONLY=proxy,profile,streams,openai,ttft,claims,scale runs a subset (scale, minutes long, only when named); BENCH_QUICK=1 a short smoke version. Raw
 * results go to bench/results/<part>.json, and the report is regenerated from all of them.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../test/integration/harness.js';
import { CONTROLLER, onPath, QUICK, WORKER } from './lib.js';
import { benchClaims } from './claims.js';
import { benchOpenAi } from './openai.js';
import { benchProfile } from './profile.js';
import { benchProxy } from './proxy.js';
import { benchScale } from './scale.js';
import { writeReport } from './report.js';
import { benchStreams } from './streams.js';
import { benchTtft } from './ttft.js';

const parts = { proxy: benchProxy, profile: benchProfile, streams: benchStreams, openai: benchOpenAi, ttft: benchTtft, claims: benchClaims, scale: benchScale } as const;
type Part = keyof typeof parts;

const only = (process.env.BENCH_ONLY ?? 'proxy,profile,streams,openai,ttft,claims').split(',').map((s) => s.trim()).filter(Boolean);
for (const p of only) {
  if (!(p in parts)) {
    console.error(`BENCH_ONLY: unknown part ${p} (known: ${Object.keys(parts).join(', ')})`);
    process.exit(2);
  }
}

if (!existsSync(CONTROLLER) || !existsSync(WORKER)) {
  console.error('run `npm run build` first (npm run bench does it)');
  process.exit(2);
}
if (only.includes('proxy') || only.includes('profile')) {
  const missing = [];
  for (const tool of ['wrk', 'nginx']) if (!(await onPath(tool))) missing.push(tool);
  if (missing.length > 0) {
    console.error(`the proxy benchmark needs ${missing.join(' and ')} on PATH. On Debian/Ubuntu: apt-get install -y nginx-light wrk`);
    process.exit(2);
  }
}

const resultsDir = path.join(ROOT, 'bench/results');
mkdirSync(resultsDir, { recursive: true });
const machine = {
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown',
  memoryGb: Math.round(os.totalmem() / 2 ** 30),
  kernel: os.release(),
  node: process.version,
  loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
};

for (const p of only as Part[]) {
  console.log(`== ${p}${QUICK ? ' (quick)' : ''}`);
  const started = new Date().toISOString();
  const result = await parts[p]();
  const file = path.join(resultsDir, `${p}${QUICK ? '.quick' : ''}.json`);
  writeFileSync(file, `${JSON.stringify({ part: p, quick: QUICK, started, finished: new Date().toISOString(), machine, ...result }, null, 2)}\n`);
  console.log(`   wrote ${path.relative(ROOT, file)}`);
}
if (!QUICK) {
  writeReport(resultsDir, path.join(ROOT, 'docs/benchmarks.md'));
  console.log('   wrote docs/benchmarks.md');
}
