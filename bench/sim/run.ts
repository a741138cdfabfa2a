/**
 * `npm run simulate`: replays the standard arrival traces against fixed pool sizes and against
 * adaptive sizing (the controller's own sizing function), writes the raw figures to
 * bench/results/sizing.json, the pictures to docs/sizing-*.svg and the table into docs/sizing.md.
 *
 *   npm run simulate                                  the standard traces
 *   npm run simulate -- --trace arrivals.txt [--refill 30]   a trace file of your own (format: traces.ts); prints the table
 *   npm run simulate -- --scale                       10,000 claims/s over a day, adaptive, with its CPU time
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sizeFor, type SizingSettings } from '../../controller/src/pool/sizing.js';
import { simulate, type RefillModel, type RunOptions, type RunResult } from './model.js';
import { timeline, tradeoff, type CurvePoint, type TimelinePoint } from './plot.js';
import { bursts, diurnal, poisson, readTrace, type Trace } from './traces.js';

const EPSILONS = [0.1, 0.01, 0.001];
const WINDOWS = { rateWindowS: 60, scaleDownWindowS: 300 };
const OPTIONS: Omit<RunOptions, 'sampleEveryS'> = { seed: 1, claimTimeoutMs: 10_000, warmupS: 900 };
const HOUR = 3600;
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

const STANDARD: Trace[] = [
  poisson(0.1, 2 * HOUR),
  poisson(1, 2 * HOUR),
  poisson(10, 2 * HOUR),
  bursts(0.5, 3, HOUR, 600, 4 * HOUR),
  bursts(0.5, 5, 1200, 120, 2 * HOUR),
  diurnal(0.2, 2, 24 * HOUR, 24 * HOUR),
];

interface Row {
  policy: string;
  size: number | null;
  epsilon: number | null;
  sessions: number;
  waitedShare: number;
  failed: number;
  waitP50S: number;
  waitP99S: number;
  idlePerSession: number;
  cpuMs: number;
}

interface Study {
  trace: string;
  refill: RefillModel;
  adaptive: Row[];
  /** For each adaptive row, the smallest fixed size that makes no more sessions wait. */
  matched: Row[];
  curve: Row[];
  timeline: TimelinePoint[];
}

const share = (r: RunResult) => (r.sessions === 0 ? 0 : r.waited / r.sessions);

function row(policy: string, size: number | null, epsilon: number | null, r: RunResult): Row {
  return {
    policy, size, epsilon, sessions: r.sessions, waitedShare: share(r), failed: r.failed,
    waitP50S: r.waitP50Ms / 1000, waitP99S: r.waitP99Ms / 1000,
    idlePerSession: r.sessions === 0 ? 0 : r.idlePodSeconds / r.sessions, cpuMs: r.cpuMs,
  };
}

/** Claims per second of each second of the trace (rate traces: the rate; files: the counts). */
function ratesOf(trace: Trace): number[] {
  const rates = new Array<number>(trace.durationS).fill(0);
  if (trace.rate) return rates.map((_, s) => (trace.rate as (s: number) => number)(s));
  for (const [slot, n] of trace.counts ?? []) rates[Math.floor(slot / 1000)] = (rates[Math.floor(slot / 1000)] ?? 0) + n;
  return rates;
}

function study(trace: Trace, refill: RefillModel): Study {
  const sampleEveryS = Math.max(1, Math.round(trace.durationS / 600));
  const options = { ...OPTIONS, sampleEveryS };
  const fixedRuns = new Map<number, RunResult>();
  const fixed = (n: number): RunResult => {
    let r = fixedRuns.get(n);
    if (!r) fixedRuns.set(n, r = simulate(trace, { minSize: n, maxSize: n, targetMissRate: 0.01, ...WINDOWS }, refill, options));
    return r;
  };
  const settings = (epsilon: number): SizingSettings => ({ minSize: 1, maxSize: 1_000_000, targetMissRate: epsilon, ...WINDOWS });
  const adaptiveRuns = EPSILONS.map((epsilon) => ({ epsilon, run: simulate(trace, settings(epsilon), refill, options) }));

  const rates = ratesOf(trace);
  const peak = Math.max(...rates);
  const p90 = refill.medianS * Math.exp(1.2816 * refill.sigma);
  const high = Math.max(2, sizeFor(peak * p90, 1e-4) + 2);
  /** The smallest fixed size whose waited share is at most `target` (waited shares fall with the size, run for run). */
  const smallestFixed = (target: number): number => {
    let lo = 0, hi = high;
    while (share(fixed(hi)) > target) hi *= 2;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (share(fixed(mid)) <= target) hi = mid;
      else lo = mid;
    }
    return hi;
  };
  const matched = adaptiveRuns.map(({ run }) => smallestFixed(share(run)));
  const low = Math.max(1, Math.floor(0.7 * (rates.reduce((a, b) => a + b, 0) / rates.length) * refill.medianS));
  const sizes = new Set<number>(matched);
  for (let i = 0; i <= 10; i++) sizes.add(Math.round(low * (high / low) ** (i / 10)));
  const curve = [...sizes].sort((a, b) => a - b).map((n) => row('fixed', n, null, fixed(n)));

  const reference = adaptiveRuns.find((a) => a.epsilon === 0.01) ?? adaptiveRuns[0];
  const sameShare = matched[adaptiveRuns.indexOf(reference as (typeof adaptiveRuns)[number])] as number;
  const points: TimelinePoint[] = [];
  for (const [second, size] of reference?.run.timeline ?? []) {
    const mean = rates.slice(second, second + sampleEveryS).reduce((a, b) => a + b, 0) / Math.min(sampleEveryS, rates.length - second);
    points.push(
      { trace: trace.name, second, series: `adaptive size (ε=${reference?.epsilon})`, value: size },
      { trace: trace.name, second, series: `fixed size as few sessions wait (${sameShare})`, value: sameShare },
      { trace: trace.name, second, series: 'claims/s × median refill time', value: mean * refill.medianS },
    );
  }
  return {
    trace: trace.name, refill,
    adaptive: adaptiveRuns.map(({ epsilon, run }) => row('adaptive', null, epsilon, run)),
    matched: matched.map((n) => row('fixed', n, null, fixed(n))),
    curve,
    timeline: points,
  };
}

const pct = (x: number) => (x === 0 ? '0' : x < 0.0001 ? '<0.01 %' : `${(100 * x).toFixed(x < 0.01 ? 2 : 1)} %`);
const secs = (x: number) => (x === 0 ? '-' : x.toFixed(1));

function table(studies: Study[]): string {
  const lines = [
    '| trace | adaptive ε | sessions waited | wait p50 / p99 (s, of those that waited) | idle pod-s per session | fixed size as few waited | its sessions waited | its idle pod-s per session | idle saved |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const s of studies) {
    s.adaptive.forEach((a, i) => {
      const f = s.matched[i] as Row;
      const saved = f.idlePerSession === 0 ? 0 : 1 - a.idlePerSession / f.idlePerSession;
      lines.push(`| ${i === 0 ? s.trace : ''} | ${a.epsilon} | ${pct(a.waitedShare)} | ${secs(a.waitP50S)} / ${secs(a.waitP99S)} | ${a.idlePerSession.toFixed(1)} | ${f.size} | ${pct(f.waitedShare)} | ${f.idlePerSession.toFixed(1)} | ${(100 * saved).toFixed(0)} % |`);
    });
  }
  return lines.join('\n');
}

async function standard(): Promise<void> {
  const refill: RefillModel = { medianS: 30, sigma: 0.15 };
  const studies: Study[] = [];
  for (const trace of STANDARD) {
    const started = Date.now();
    studies.push(study(trace, refill));
    console.log(`${trace.name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const scale = internetScale();
  writeFileSync(join(repoRoot, 'bench/results/sizing.json'), `${JSON.stringify({ refill, windows: WINDOWS, options: OPTIONS, studies: studies.map(({ timeline: _t, ...s }) => s), scale }, null, 1)}\n`);
  const points: CurvePoint[] = studies.flatMap((s) => [
    ...s.curve.map((r) => ({ trace: s.trace, policy: 'fixed' as const, label: String(r.size), waitedShare: r.waitedShare, idlePerSession: r.idlePerSession })),
    ...s.adaptive.map((r) => ({ trace: s.trace, policy: 'adaptive' as const, label: String(r.epsilon), waitedShare: r.waitedShare, idlePerSession: r.idlePerSession })),
  ]);
  writeFileSync(join(repoRoot, 'docs/sizing-tradeoff.svg'), await tradeoff(points));
  const shown = studies.filter((s) => s.trace.startsWith('diurnal') || s.trace.startsWith('bursts 0.5/s, 3/s'));
  writeFileSync(join(repoRoot, 'docs/sizing-timeline.svg'), await timeline(shown.flatMap((s) => s.timeline)));
  const doc = join(repoRoot, 'docs/sizing.md');
  const scaleLine = `10,000 claims/s over a day (${scale.sessions.toLocaleString('en-US')} sessions), adaptive ε=0.01: ${(scale.cpuMs / 1000).toFixed(1)} s of CPU; ${pct(scale.waitedShare)} of sessions waited, ${scale.idlePerSession.toFixed(2)} idle pod-s per session.`;
  const generated = `<!-- simulate:begin -->\n${table(studies)}\n\n${scaleLine}\n<!-- simulate:end -->`;
  writeFileSync(doc, readFileSync(doc, 'utf8').replace(/<!-- simulate:begin -->[\s\S]*<!-- simulate:end -->/, generated));
  console.log(table(studies));
  console.log(scaleLine);
}

function internetScale(): Row {
  const trace = poisson(10_000, 24 * HOUR);
  const r = simulate(trace, { minSize: 1, maxSize: 10_000_000, targetMissRate: 0.01, ...WINDOWS }, { medianS: 30, sigma: 0.15 }, { ...OPTIONS, sampleEveryS: 3600, slotMs: 10 });
  return row('adaptive', null, 0.01, r);
}

const { values } = parseArgs({ options: { trace: { type: 'string' }, refill: { type: 'string', default: '30' }, scale: { type: 'boolean', default: false } } });
if (values.trace) {
  const s = study(readTrace(values.trace), { medianS: Number(values.refill), sigma: 0.15 });
  console.log(table([s]));
} else if (values.scale) {
  const r = internetScale();
  console.log(`10,000 claims/s over a day: ${r.sessions} sessions, ${(r.cpuMs / 1000).toFixed(1)} s CPU, waited ${pct(r.waitedShare)}, idle ${r.idlePerSession.toFixed(2)} pod-s per session`);
} else {
  await standard();
}
