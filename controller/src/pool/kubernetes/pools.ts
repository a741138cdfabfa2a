/**
 * The pools, as the Deployment watch shows them. Any Deployment labelled `warmpool.dev/pool:
 * <name>` is meant to be a pool; it is one when it can work as one (its pod template and its
 * selector carry the pool label and the free label), and its annotations give its settings. A
 * Deployment that cannot be a pool, or whose settings are not valid, is reported once per
 * problem (log line, metric, Event on the Deployment); a pool keeps its last good settings.
 * Every replica sees the same Deployments and so the same pools.
 */
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { MISS_RATE_RANGE, SIZING_LIMITS, parseMissRate, type SizingSettings } from '../sizing.js';
import type { DeploymentInfo } from './api.js';
import type { PodEvents } from './events.js';
import { FREE, POOL_LABEL } from './labels.js';

export const MIN_SIZE = 'warmpool.dev/min-size';
export const MAX_SIZE = 'warmpool.dev/max-size';
export const TARGET_MISS_RATE = 'warmpool.dev/target-miss-rate';
export const RATE_WINDOW = 'warmpool.dev/rate-window-seconds';
export const SCALE_DOWN_WINDOW = 'warmpool.dev/scale-down-window-seconds';
/** The largest pool size an annotation may ask for (POOL_SIZE's bound). */
const MAX_POOL_SIZE = 10_000;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** A pool's size bounds and sizing settings (min == max: a fixed size). */
export type PoolSettings = SizingSettings;

export interface Pool {
  readonly name: string;
  readonly deployment: DeploymentInfo;
  /** The last good settings (the defaults until the Deployment had good ones). */
  readonly settings: PoolSettings;
  /** Why the Deployment's settings are not used, while they are not. */
  readonly problem?: string;
}

export interface PoolRegistryOptions {
  labelKey: string;
  defaults: PoolSettings;
  logger: Logger;
  metrics: Metrics;
  events: PodEvents;
  /** A pool appeared (`added`), or its Deployment or its settings changed. */
  changed: (pool: Pool, added: boolean) => void;
  /** A pool's Deployment went, or stopped being a pool. */
  removed: (pool: string, deployment: string) => void;
}

/** A whole-number annotation: absent (undefined), a number in [min, max], or why not (a string). */
function wholeOf(annotations: Readonly<Record<string, string>>, key: string, min: number, max: number): number | string | undefined {
  const value = annotations[key];
  if (value === undefined) return undefined;
  const n = /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  return n >= min && n <= max ? n : `${key} "${value}" is not a whole number from ${min} to ${max}`;
}

/** The target miss rate annotation: absent, a number (MISS_RATE_RANGE), or why not. */
function missRateOf(annotations: Readonly<Record<string, string>>): number | string | undefined {
  const value = annotations[TARGET_MISS_RATE];
  if (value === undefined) return undefined;
  return parseMissRate(value) ?? `${TARGET_MISS_RATE} "${value}" is not ${MISS_RATE_RANGE}`;
}

/**
 * The settings the annotations ask for, or why they cannot be used. An absent max-size is at
 * least the min-size, and an absent min-size at most the max-size, so one annotation alone
 * never conflicts with a default.
 */
export function settingsOf(annotations: Readonly<Record<string, string>>, defaults: PoolSettings): PoolSettings | string {
  const min = wholeOf(annotations, MIN_SIZE, 0, MAX_POOL_SIZE);
  const max = wholeOf(annotations, MAX_SIZE, 0, MAX_POOL_SIZE);
  const missRate = missRateOf(annotations);
  const rateWindow = wholeOf(annotations, RATE_WINDOW, SIZING_LIMITS.minWindowS, SIZING_LIMITS.maxWindowS);
  const downWindow = wholeOf(annotations, SCALE_DOWN_WINDOW, SIZING_LIMITS.minWindowS, SIZING_LIMITS.maxWindowS);
  const problem = [min, max, missRate, rateWindow, downWindow].find((v) => typeof v === 'string');
  if (problem !== undefined) return problem as string;
  const minSize = (min as number | undefined) ?? Math.min(defaults.minSize, (max as number | undefined) ?? defaults.minSize);
  const maxSize = (max as number | undefined) ?? Math.max(defaults.maxSize, minSize);
  if (minSize > maxSize) return `${MIN_SIZE} ${minSize} is over ${MAX_SIZE} ${maxSize}`;
  return {
    minSize,
    maxSize,
    targetMissRate: (missRate as number | undefined) ?? defaults.targetMissRate,
    rateWindowS: (rateWindow as number | undefined) ?? defaults.rateWindowS,
    scaleDownWindowS: (downWindow as number | undefined) ?? defaults.scaleDownWindowS,
  };
}

/** Why a Deployment labelled as a pool cannot work as one, if it cannot. */
function shapeProblem(d: DeploymentInfo, labelKey: string): string | undefined {
  const name = d.labels[POOL_LABEL] ?? '';
  if (!DNS_LABEL.test(name)) return `its ${POOL_LABEL} label "${name}" is not a DNS label`;
  for (const [where, labels] of [['pod template labels', d.templateLabels], ['selector matchLabels', d.selector]] as const) {
    const missing = [[POOL_LABEL, name], [labelKey, FREE]].filter(([k, v]) => labels[k as string] !== v).map(([k, v]) => `${k}: ${v}`);
    if (missing.length > 0) return `its ${where} lack ${missing.join(', ')}`;
  }
  return undefined;
}

export class PoolRegistry {
  /** Every Deployment the watch shows, by name. */
  private readonly seen = new Map<string, DeploymentInfo>();
  private readonly pools = new Map<string, Pool>();
  /** Last good settings by Deployment uid. */
  private readonly lastGood = new Map<string, PoolSettings>();
  /** The problem last reported for each Deployment, so each is reported once. */
  private readonly reported = new Map<string, string>();

  constructor(private readonly o: PoolRegistryOptions) {}

  get(name: string): Pool | undefined {
    return this.pools.get(name);
  }

  names(): string[] {
    return [...this.pools.keys()];
  }

  values(): Iterable<Pool> {
    return this.pools.values();
  }

  upsert(d: DeploymentInfo): void {
    const before = this.seen.get(d.name);
    this.seen.set(d.name, d);
    const was = before?.labels[POOL_LABEL];
    if (was !== undefined && was !== d.labels[POOL_LABEL]) this.settle(was);
    this.settle(d.labels[POOL_LABEL] ?? '');
  }

  remove(d: DeploymentInfo): void {
    const known = this.seen.get(d.name);
    if (!known) return;
    this.seen.delete(d.name);
    this.lastGood.delete(known.uid);
    this.reported.delete(d.name);
    this.settle(known.labels[POOL_LABEL] ?? '');
  }

  /**
   * Decides which Deployment, if any, is the pool `name` now: the first by name of those that
   * can be one (two Deployments in one pool would mix their pods), each other one reported.
   */
  private settle(name: string): void {
    const candidates = [...this.seen.values()].filter((d) => d.labels[POOL_LABEL] === name && !d.deleting).sort((a, b) => (a.name < b.name ? -1 : 1));
    let chosen: DeploymentInfo | undefined;
    for (const d of candidates) {
      const problem = shapeProblem(d, this.o.labelKey) ?? (chosen ? `pool ${name} is already the Deployment ${chosen.name}` : undefined);
      if (problem) this.report(d, 'InvalidPool', `Deployment ${d.name} is not used as a pool: ${problem}`);
      else chosen = d;
    }
    const old = this.pools.get(name);
    if (old && old.deployment.name !== chosen?.name) {
      this.pools.delete(name);
      this.o.removed(name, old.deployment.name);
    }
    if (!chosen) return;
    const pool = this.configure(name, chosen);
    this.pools.set(name, pool);
    this.o.changed(pool, old?.deployment.name !== chosen.name);
  }

  /** The pool with its Deployment's settings, or its last good ones when these are not valid. */
  private configure(name: string, d: DeploymentInfo): Pool {
    const settings = settingsOf(d.annotations, this.o.defaults);
    if (typeof settings !== 'string') {
      this.lastGood.set(d.uid, settings);
      this.reported.delete(d.name);
      return { name, deployment: d, settings };
    }
    const kept = this.lastGood.get(d.uid) ?? this.o.defaults;
    const problem = `invalid settings: ${settings}`;
    this.report(d, 'InvalidPoolSettings', `pool ${name}: ${settings}; keeping min-size ${kept.minSize}, max-size ${kept.maxSize}`);
    return { name, deployment: d, settings: kept, problem };
  }

  private report(d: DeploymentInfo, reason: string, message: string): void {
    if (this.reported.get(d.name) === message) return;
    this.reported.set(d.name, message);
    const pool = d.labels[POOL_LABEL] ?? '';
    this.o.logger.warn({ deployment: d.name, pool, reason }, message);
    this.o.metrics.poolConfigErrors.inc({ pool });
    this.o.events.deployment(d, reason, message);
  }
}
