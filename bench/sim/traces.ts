/**
 * Arrival traces for the pool simulator. A trace gives the claim rate of each second (the
 * simulator draws Poisson arrivals from it, millisecond by millisecond) or, read from a file, the
 * arrival times themselves.
 *
 * Trace file format (one arrival per line, `#` starts a comment, blank lines ignored):
 *   <seconds since the start>            one claim at that time
 *   <seconds since the start> <count>    `count` claims at that time
 * Times need not be sorted.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export interface Trace {
  readonly name: string;
  readonly durationS: number;
  /** Claims per second during second `s` (rate traces). */
  readonly rate?: (s: number) => number;
  /** Claims per millisecond slot (file traces). */
  readonly counts?: Map<number, number>;
}

export const poisson = (rate: number, durationS: number): Trace => ({ name: `poisson ${rate}/s`, durationS, rate: () => rate });

/** `base` claims/s, with `peak` claims/s for `lengthS` out of every `everyS`, starting at `firstS`. */
export const bursts = (base: number, peak: number, everyS: number, lengthS: number, durationS: number, firstS = everyS / 2): Trace => ({
  name: `bursts ${base}/s, ${peak}/s for ${lengthS} s every ${everyS} s`,
  durationS,
  rate: (s) => (s >= firstS && (s - firstS) % everyS < lengthS ? peak : base),
});

/** A day's curve: the rate swings between `low` and `high` claims/s over `periodS`, lowest at the start. */
export const diurnal = (low: number, high: number, periodS: number, durationS: number): Trace => ({
  name: `diurnal ${low}-${high}/s`,
  durationS,
  rate: (s) => low + (high - low) * (1 - Math.cos((2 * Math.PI * s) / periodS)) / 2,
});

export function parseTrace(name: string, text: string): Trace {
  const counts = new Map<number, number>();
  let last = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const [time, count = '1', ...rest] = line.split(/[\s,]+/);
    const t = Number(time);
    const n = Number(count);
    if (rest.length > 0 || !Number.isFinite(t) || t < 0 || !Number.isInteger(n) || n < 1) {
      throw new Error(`${name}:${i + 1}: expected "<seconds> [count]", got ${JSON.stringify(raw)}`);
    }
    const slot = Math.round(t * 1000);
    counts.set(slot, (counts.get(slot) ?? 0) + n);
    last = Math.max(last, t);
  });
  return { name, durationS: Math.ceil(last) + 1, counts };
}

export const readTrace = (path: string): Trace => parseTrace(basename(path), readFileSync(path, 'utf8'));

/** The same trace written in the file format (what `parseTrace` reads back). */
export function formatTrace(arrivalsMs: readonly number[]): string {
  return `# seconds since the start, one claim per line\n${arrivalsMs.map((ms) => (ms / 1000).toFixed(3)).join('\n')}\n`;
}

/** Arrival times (ms from the start) drawn from a rate trace: Poisson in each second, spread uniformly in it. */
export function arrivalTimes(trace: Trace, random: () => number): number[] {
  const out: number[] = [];
  for (let s = 0; s < trace.durationS; s++) {
    const rate = trace.rate?.(s) ?? 0;
    let k = 0;
    for (let p = Math.exp(-rate), cdf = p, u = random(); u > cdf; cdf += p) p *= rate / ++k;
    const within = Array.from({ length: k }, () => Math.floor(random() * 1000)).sort((a, b) => a - b);
    out.push(...within.map((ms) => s * 1000 + ms));
  }
  return out;
}
