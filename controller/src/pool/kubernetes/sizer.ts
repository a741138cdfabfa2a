/**
 * The inputs of adaptive sizing, as the pod watch shows them, and the decisions made from them.
 * Per pool: the claims (each claimed pod's `warmpool.dev/claimed-at`, and whether that claim had
 * waited, `warmpool.dev/claim-wait-ms`), and the refill samples (each pod's creation to its Ready
 * condition's lastTransitionTime). Claimed pods are deleted when their sessions end, so both are
 * kept once seen, by pod uid, for as long as decisions read them (historyMs): every replica that
 * watched that long holds the same ones. A sample must outlive its pod: were it dropped, the
 * refill time of the ticks already past would change with the pods that happen to be alive, and
 * the stabilization window, which holds the largest demand of the ticks past, would no longer
 * hold (a pool turned back and forth each time its slowest pods were claimed and deleted). A
 * replica that started later holds fewer claims and samples: the sizing function then lets it
 * only grow pools. Nothing here is written anywhere: a restarted replica starts from the pods
 * that exist.
 */
import type { PodInfo } from './api.js';
import { CLAIM_WAIT, CLAIMED_AT, epoch, POOL_LABEL, TAKEN } from './labels.js';
import { decide, historyMs, refillEstimate, REFILL_SAMPLES, REFILL_TICK_MS, startingRefill, type Arrivals, type Decision, type SizingSettings } from '../sizing.js';

/** Entries in ascending epoch ms (mostly appended to), each with a value; counted by binary search. */
class Timeline {
  readonly at: number[] = [];
  readonly values: number[] = [];

  add(t: number, value = 0): void {
    let i = this.at.length;
    while (i > 0 && (this.at[i - 1] as number) > t) i--;
    this.at.splice(i, 0, t);
    this.values.splice(i, 0, value);
  }

  /** How many are before `t`. */
  before(t: number): number {
    let lo = 0, hi = this.at.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.at[mid] as number) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Drops the entries before `t`. */
  prune(t: number): void {
    const n = this.before(t);
    this.at.splice(0, n);
    this.values.splice(0, n);
  }
}

/** One pool's claims and refill samples. */
class PoolInputs implements Arrivals {
  /** Pod uids already counted, with the time they were counted at (to forget them with it). */
  private readonly claimed = new Map<string, number>();
  /** Pod uids already sampled, with their Ready time (to forget them with it). */
  private readonly sampled = new Map<string, number>();
  private readonly all = new Timeline();
  private readonly late = new Timeline();
  /** Ready times of the pods sampled, each with its pod's refill seconds. */
  private readonly refills = new Timeline();
  private readonly refillCache = new Map<number, number>();
  /** Pods not Ready yet (nor deleted), by uid, with their creation time. */
  private readonly starting = new Map<string, number>();
  /** Older claims were forgotten: ones seen again (a pod the watch sends anew) stay forgotten. */
  private floor = 0;
  /** Likewise for the refill samples, which are kept further back (a tick reads the REFILL_SAMPLES before it). */
  private sampleFloor = 0;

  claim(uid: string, at: number, waited: boolean): void {
    if (this.claimed.has(uid) || at <= this.floor) return;
    this.claimed.set(uid, at);
    this.all.add(at);
    if (waited) this.late.add(at);
  }

  sample(uid: string, readyAt: number, createdAt: number): void {
    if (this.sampled.has(uid) || readyAt < this.sampleFloor || createdAt <= 0 || readyAt < createdAt) return;
    this.sampled.set(uid, readyAt);
    this.refills.add(readyAt, (readyAt - createdAt) / 1000);
    // The estimates of the ticks after it change (and all of them while there are few samples).
    const early = this.refills.at.length <= REFILL_SAMPLES;
    for (const tick of this.refillCache.keys()) if (early || tick > readyAt) this.refillCache.delete(tick);
  }

  count(fromMs: number, toMs: number): number {
    return this.all.before(toMs) - this.all.before(fromMs);
  }

  waited(fromMs: number, toMs: number): number {
    return this.late.before(toMs) - this.late.before(fromMs);
  }

  /** Whether the pod is starting now (created, never seen Ready, not being deleted). */
  starts(uid: string, createdAt: number, yes: boolean): void {
    if (yes && createdAt > 0 && !this.sampled.has(uid)) this.starting.set(uid, createdAt);
    else this.starting.delete(uid);
  }

  /** Whether any pod of the pool was ever seen Ready (without, the refill time is unknown). */
  get sampledAny(): boolean {
    return this.refills.at.length > 0;
  }

  /**
   * The refill estimate of the REFILL_SAMPLES pods that turned Ready last before `tick`; for a tick
   * before any of them turned Ready, that of the first ones to (not a default that would size the
   * pool's past for a refill time it never had).
   */
  refill = (tick: number): number => {
    let t = this.refillCache.get(tick);
    if (t === undefined) {
      this.refillCache.set(tick, t = refillEstimate(this.samplesBefore(tick)));
    }
    return t;
  };

  /** The refill estimate at a decision tick, with the pods starting now counted at their age then. */
  refillNow = (tick: number): number => {
    const ages: number[] = [];
    for (const createdAt of this.starting.values()) if (createdAt < tick) ages.push((tick - createdAt) / 1000);
    return startingRefill(this.samplesBefore(tick), ages);
  };

  /** The REFILL_SAMPLES samples last Ready before `tick` (the first ones, for a tick before any). */
  private samplesBefore(tick: number): number[] {
    const end = Math.max(this.refills.before(tick), Math.min(REFILL_SAMPLES, this.refills.at.length));
    return this.refills.values.slice(Math.max(0, end - REFILL_SAMPLES), end);
  }

  /** Forgets the claims no decision reads any more, and the samples no tick it reads needs. */
  prune(before: number): void {
    this.floor = before;
    for (const [uid, at] of this.claimed) if (at < before) this.claimed.delete(uid);
    this.all.prune(before);
    this.late.prune(before);
    for (const tick of this.refillCache.keys()) if (tick < before) this.refillCache.delete(tick);
    const extra = this.refills.before(before) - REFILL_SAMPLES;
    if (extra <= 0) return;
    this.sampleFloor = this.refills.at[extra] as number;
    this.refills.prune(this.sampleFloor);
    for (const [uid, at] of this.sampled) if (at < this.sampleFloor) this.sampled.delete(uid);
  }
}

export class Sizer {
  private readonly pools = new Map<string, PoolInputs>();

  /** `startedAt`: since when this replica has watched the pods. */
  constructor(private readonly startedAt: number) {}

  /** A pod as the watch shows it (any event): its claim and its refill time are recorded once. */
  seen(pod: PodInfo, labelKey: string): void {
    const pool = pod.labels[POOL_LABEL];
    if (pool === undefined) return;
    let inputs = this.pools.get(pool);
    if (!inputs) this.pools.set(pool, inputs = new PoolInputs());
    if (pod.readySince !== undefined) inputs.sample(pod.uid, pod.readySince, pod.createdAt);
    inputs.starts(pod.uid, pod.createdAt, !pod.deleting && !pod.ready && pod.readySince === undefined && pod.labels[labelKey] !== TAKEN && pod.phase !== 'Failed' && pod.phase !== 'Succeeded');
    if (pod.labels[labelKey] === TAKEN) inputs.claim(pod.uid, epoch(pod.annotations[CLAIMED_AT]), Number(pod.annotations[CLAIM_WAIT] ?? 0) > 0);
  }

  /** The pool's size now, and the figures it was decided from. */
  decide(pool: string, settings: SizingSettings, current: number, now: number): Decision {
    let inputs = this.pools.get(pool);
    if (!inputs) this.pools.set(pool, inputs = new PoolInputs());
    inputs.prune(now - historyMs(settings) - REFILL_TICK_MS);
    const decision = decide({ arrivals: inputs, refill: inputs.refill, refillNow: inputs.refillNow, settings, current, now, completeSince: this.startedAt });
    // No pod of the pool was ever seen Ready here: the refill time is unknown, so keep the size.
    if (!inputs.sampledAny) return { ...decision, target: Math.min(settings.maxSize, Math.max(settings.minSize, current)) };
    return decision;
  }

  /** Share of the claims landed in the rate window before `now` that had waited (the observed miss rate). */
  observedMissRate(pool: string, settings: SizingSettings, now: number): number {
    const inputs = this.pools.get(pool);
    const from = now - settings.rateWindowS * 1000;
    const n = inputs?.count(from, now) ?? 0;
    return n === 0 ? 0 : (inputs as PoolInputs).waited(from, now) / n;
  }

  /** A pod the watch shows deleted: it starts no more. */
  gone(pod: PodInfo): void {
    this.pools.get(pod.labels[POOL_LABEL] ?? '')?.starts(pod.uid, pod.createdAt, false);
  }

  forget(pool: string): void {
    this.pools.delete(pool);
  }
}
