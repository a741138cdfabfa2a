import type { Histogram } from 'prom-client';
import type { Metrics } from '../metrics.js';
import type { PoolCounts, PoolSnapshot } from '../pool/types.js';

/** The latest `capacity` items, oldest first: memory stays bounded however long the replica runs. */
export class Ring<T> {
  private readonly items: T[] = [];

  constructor(private readonly capacity: number) {}

  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.capacity) this.items.shift();
  }

  values(): readonly T[] {
    return this.items;
  }
}

/**
 * What adaptive sizing reports for a pool once it is on: the size it aims for and the figures it
 * computed that from. A pool without it has a fixed size.
 */
export interface PoolSizing {
  target?: number;
  [input: string]: unknown;
}

export type PoolFigures = PoolCounts & { sizing?: PoolSizing };

/** The claims of one sampling interval: how many, their mean, and the bucket bound under which 95% fell. */
export interface LatencyWindow {
  count: number;
  meanS: number | null;
  /** null when there were none, or when the 95th percentile lies past the last finite bucket. */
  p95S: number | null;
}

export interface PoolPoint {
  warm: number;
  warming: number;
  assigned: number;
  size: number;
  target?: number;
}

export interface Sample {
  /** Epoch ms. */
  at: number;
  pools: Record<string, PoolPoint>;
  queue: number;
  claimWait: LatencyWindow;
  claimLatency: LatencyWindow;
}

interface HistogramTotals {
  count: number;
  sum: number;
  /** Cumulative count by upper bound. */
  buckets: Map<number, number>;
}

const NO_TOTALS: HistogramTotals = { count: 0, sum: 0, buckets: new Map() };

/** A histogram's series added together (the status page reads the same figures /metrics shows). */
export async function histogramTotals(histogram: Histogram): Promise<HistogramTotals> {
  const totals: HistogramTotals = { count: 0, sum: 0, buckets: new Map() };
  for (const v of (await histogram.get()).values) {
    const name = v.metricName ?? '';
    if (name.endsWith('_count')) totals.count += v.value;
    else if (name.endsWith('_sum')) totals.sum += v.value;
    else if (name.endsWith('_bucket')) {
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
      totals.buckets.set(le, (totals.buckets.get(le) ?? 0) + v.value);
    }
  }
  return totals;
}

/** The observations between two readings of a cumulative histogram. */
export function windowBetween(before: HistogramTotals, after: HistogramTotals): LatencyWindow {
  const count = after.count - before.count;
  if (count <= 0) return { count: 0, meanS: null, p95S: null };
  let p95S: number | null = null;
  for (const [le, cumulative] of [...after.buckets].sort((a, b) => a[0] - b[0])) {
    if (cumulative - (before.buckets.get(le) ?? 0) >= 0.95 * count) {
      p95S = Number.isFinite(le) ? le : null;
      break;
    }
  }
  return { count, meanS: (after.sum - before.sum) / count, p95S };
}

function pointOf(counts: PoolFigures): PoolPoint {
  const { warm, warming, assigned, size } = counts;
  const target = counts.sizing?.target;
  return { warm, warming, assigned, size, ...(typeof target === 'number' ? { target } : {}) };
}

export interface HistoryDeps {
  snapshot: () => PoolSnapshot;
  metrics: Metrics;
  now?: () => number;
}

/**
 * The last minutes of the pools and of claiming, one sample every few seconds, kept in this
 * process: the status page needs no Prometheus to draw its charts.
 */
export class StatusHistory {
  private readonly ring: Ring<Sample>;
  private last = { wait: NO_TOTALS, latency: NO_TOTALS };
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: HistoryDeps, capacity: number) {
    this.ring = new Ring(capacity);
  }

  samples(): readonly Sample[] {
    return this.ring.values();
  }

  async sample(): Promise<void> {
    const { metrics, snapshot, now = Date.now } = this.deps;
    const [wait, latency] = await Promise.all([histogramTotals(metrics.claimWait), histogramTotals(metrics.claimDuration)]);
    const snap = snapshot();
    const pools: Record<string, PoolPoint> = {};
    for (const [name, counts] of Object.entries(snap.pools)) pools[name] = pointOf(counts);
    this.ring.push({
      at: now(),
      pools,
      queue: snap.pendingClaims,
      claimWait: windowBetween(this.last.wait, wait),
      claimLatency: windowBetween(this.last.latency, latency),
    });
    this.last = { wait, latency };
  }

  /** A first sample now, then one every `everyMs`. */
  start(everyMs: number): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
