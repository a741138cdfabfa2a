/**
 * Adaptive pool sizing: one pure, deterministic function from what every replica can see (the
 * claim times of a pool and how long its pods take from creation to Ready) to the pool's size.
 * The controller and the simulator (`npm run simulate`) both call it, so what the simulator
 * predicts is what the controller does.
 *
 * The model: a claim takes a warm pod and the ReplicaSet starts a replacement, which is Ready one
 * refill time T later. With N pods in the pool and claims arriving as a Poisson stream of rate λ,
 * each pod is a server busy for T per claim: an arriving claim waits when all N are refilling,
 * with Erlang's C probability for the load λT (missProbability). The target is the smallest N
 * whose miss probability is at most the target miss rate ε.
 *
 * Leaderless by construction: the result depends only on the claim times, the refill times and
 * the clock, read at whole-second ticks a little in the past (SETTLE_MS), so replicas that see the
 * same pods compute the same size. Nothing here remembers earlier decisions: the scale-down
 * stabilization and its bounded step are recomputed from the claims and refill times each time,
 * which is why the refill time is asked for at each tick and not only now (a refill time that
 * falls would otherwise shrink the pool at once, past the stabilization window).
 */

export interface SizingSettings {
  minSize: number;
  maxSize: number;
  /** ε: the share of claims allowed to wait for a pod to start. */
  targetMissRate: number;
  /** How many seconds of claims the arrival rate is measured over. */
  rateWindowS: number;
  /** How long a lower size must be recommended before the pool shrinks (like the HPA's stabilization window). */
  scaleDownWindowS: number;
}

/** The sizing settings a pool has when neither its Deployment nor the environment sets them. */
export const SIZING_DEFAULTS: Readonly<Omit<SizingSettings, 'minSize' | 'maxSize'>> = Object.freeze({ targetMissRate: 0.01, rateWindowS: 60, scaleDownWindowS: 300 });
/**
 * Bounds of the settings: below the smallest miss rate the Erlang tail is lost in rounding; a
 * window must hold a whole tick in its last quarter, and at most a day.
 */
export const SIZING_LIMITS = Object.freeze({ minMissRate: 1e-6, minWindowS: 4, maxWindowS: 86_400 });

/** What a target miss rate may be, in the words of an error about one. */
export const MISS_RATE_RANGE = `a number from ${SIZING_LIMITS.minMissRate} to below 1`;

/** A target miss rate as written (an environment value or an annotation), or undefined when it is not MISS_RATE_RANGE. */
export function parseMissRate(raw: string): number | undefined {
  const n = raw.trim() === '' ? NaN : Number(raw);
  return n >= SIZING_LIMITS.minMissRate && n < 1 ? n : undefined;
}

/** Claims of one pool, by the time they landed: how many in [fromMs, toMs), and how many of those had waited. */
export interface Arrivals {
  count(fromMs: number, toMs: number): number;
  waited(fromMs: number, toMs: number): number;
}

/** Decisions are made at whole seconds, so replicas evaluating at slightly different moments agree. */
export const TICK_MS = 1000;
/**
 * Claims younger than this are not read yet: by then every replica's watch has shown them (a
 * watch lags by milliseconds; a replica further behind does not shrink a pool on its late view,
 * as a shrink needs two decisions in a row).
 */
export const SETTLE_MS = 500;
/** Each step period (a quarter of the scale-down window) the size falls by at most this share... */
const STEP_FRACTION = 0.25;
/** ...over this many periods; recommendations older than that no longer count. */
const STEPS = 8;
/** Up to this offered load the waiting probability is computed exactly (O(size)); above it by the Halfin-Whitt approximation. */
const EXACT_LOAD = 5000;

/**
 * The share of claims that wait, for a pool of n pods offered `load` = λT (claims per refill
 * time): Erlang's C formula. A claim that finds no warm pod waits for the next one to turn Ready,
 * and only then does its replacement start, so the pool is an n-server queue with service time T,
 * not n independent slots: the Poisson tail P(X >= n) under-counts waits when the pool is busy
 * (docs/sizing.md). Exact for exponential refill times, and close for the near-constant ones of
 * real pods.
 */
export function missProbability(load: number, n: number): number {
  if (load <= 0) return n <= 0 ? 1 : 0;
  if (n <= load) return 1;
  if (load > EXACT_LOAD) {
    // Halfin-Whitt: with β = (n - load)/√load, P(wait) ≈ 1 / (1 + β Φ(β) / φ(β)).
    const beta = (n - load) / Math.sqrt(load);
    const density = Math.exp(-beta * beta / 2) / Math.sqrt(2 * Math.PI);
    return 1 / (1 + (beta * (1 - upperNormalTail(beta))) / density);
  }
  let blocked = 1;
  for (let k = 1; k <= n; k++) blocked = (load * blocked) / (k + load * blocked);
  return (n * blocked) / (n - load * (1 - blocked));
}

/** The smallest pool size whose miss probability is at most epsilon (0 when no claims arrive). */
export function sizeFor(load: number, epsilon: number): number {
  if (load <= 0) return 0;
  if (load > EXACT_LOAD) {
    let lo = Math.floor(load);
    let hi = Math.ceil(load + 10 * Math.sqrt(load) + 10);
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (missProbability(load, mid) <= epsilon) hi = mid;
      else lo = mid;
    }
    return hi;
  }
  // Erlang B by its recursion up to n, then C from it, one pod at a time.
  let blocked = 1;
  for (let n = 1; ; n++) {
    blocked = (load * blocked) / (n + load * blocked);
    if (n > load && (n * blocked) / (n - load * (1 - blocked)) <= epsilon) return n;
  }
}

/**
 * Demand per second at `atMs`: the claim rate over the whole window, or, when a burst shows in
 * the window's last quarter, that quarter's rate less two standard deviations of its count (a
 * burst is answered within seconds, while the noise of a short window at a steady rate, which the
 * stabilization window would keep as its peak, does not inflate the pool). Claims are seen only
 * once they land, and a drained pool lands no more than its size per refill time however many
 * wait or give up: so the rate is scaled by 1 + the square of the share of the window's claims
 * that waited, which doubles a saturated pool each refill time instead of growing it by a few
 * pods, and is next to nothing while few claims wait (so the odd claim that waited among a few
 * does not make a spike).
 */
export function arrivalRate(arrivals: Arrivals, atMs: number, windowS: number): number {
  const longMs = windowS * 1000;
  const long = arrivals.count(atMs - longMs, atMs) / windowS;
  const recent = arrivals.count(atMs - longMs / 4, atMs);
  const rate = Math.max(long, (recent - 2 * Math.sqrt(recent)) / (windowS / 4));
  const all = arrivals.count(atMs - longMs, atMs);
  const waited = all === 0 ? 0 : arrivals.waited(atMs - longMs, atMs) / all;
  return rate * (1 + waited * waited);
}

/**
 * The refill samples a pool keeps: the most recent pods to turn Ready. Enough that one slow start
 * moves the 90th percentile by one rank, not to the slow start's time.
 */
export const REFILL_SAMPLES = 200;
/** The refill time assumed while a pool has no pod that turned Ready. */
export const DEFAULT_REFILL_S = 30;

/** A robust high refill time: the 90th percentile (nearest rank) of the samples, in seconds. */
export function refillEstimate(samplesS: readonly number[]): number {
  if (samplesS.length === 0) return DEFAULT_REFILL_S;
  const sorted = [...samplesS].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.9 * sorted.length) - 1)] as number;
}

/**
 * A pod still starting has taken at least its age so far: under load, when pods start slower than
 * the samples say, the estimate rises while they start, not only once they are Ready (which is
 * when the pool needed them). An age counts up to STARTING_CAP times the samples' estimate, so
 * pods that never start (no room on the nodes) cannot grow the pool without bound.
 */
export const STARTING_CAP = 2;

/** The refill estimate of `samplesS` with the ages of the pods still starting counted as samples (never below the samples' own). */
export function startingRefill(samplesS: readonly number[], agesS: readonly number[]): number {
  const measured = refillEstimate(samplesS);
  if (agesS.length === 0) return measured;
  return Math.max(measured, refillEstimate([...samplesS, ...agesS.map((a) => Math.min(a, STARTING_CAP * measured))]));
}

/** How far back a decision reads claims: the rate window, the stabilization window and the step periods. */
export function historyMs(s: SizingSettings): number {
  return (s.rateWindowS + s.scaleDownWindowS * (1 + STEPS * STEP_FRACTION)) * 1000 + SETTLE_MS + TICK_MS;
}

/** The refill time to size for at a refill tick, seconds: a function of the pods that turned Ready before it. */
export type RefillAt = (tickMs: number) => number;

/**
 * The tick of the refill estimate that holds at `atMs`: refill estimates change every REFILL_TICK_MS,
 * so callers can compute each once (the 90th percentile of the REFILL_SAMPLES pods that turned
 * Ready last before that tick).
 */
export const REFILL_TICK_MS = 5000;
export const refillTick = (atMs: number): number => Math.floor(atMs / REFILL_TICK_MS) * REFILL_TICK_MS;

export interface SizingInput {
  arrivals: Arrivals;
  /** The pool's refill time (refillEstimate of the samples before the tick), by refillTick. */
  refill: RefillAt;
  /**
   * The refill time at a decision tick with the pods still starting then counted too, at their
   * age so far (startingRefill): at least `refill` of that tick. Without it, `refill`.
   */
  refillNow?: RefillAt;
  settings: SizingSettings;
  /** The Deployment's replicas now. */
  current: number;
  now: number;
  /**
   * Since when this replica's view of the claims is whole (it sees claimed pods that were
   * deleted only from its start on). Until it has watched historyMs, it only grows the pool: a
   * shorter history can only under-count, and the replicas that watched longer shrink it.
   */
  completeSince: number;
}

export interface Decision {
  /** The size the pool should have now. */
  target: number;
  /** λ at the latest tick, claims per second. */
  rate: number;
  /** T at the latest tick, seconds. */
  refillS: number;
  /** The size the latest tick alone asks for (before stabilization and the step bound). */
  recommended: number;
  /** The miss rate the model predicts for `target` at the latest rate. */
  predictedMissRate: number;
  /** The tick the decision reads up to (epoch ms). */
  tick: number;
}

const clamp = (n: number, s: SizingSettings) => Math.min(s.maxSize, Math.max(s.minSize, n));

/**
 * The pool's size now. Up at once: the latest tick's recommendation is always honoured. Down
 * slowly: a tick's recommendation holds for the stabilization window S, and then decays by at
 * most STEP_FRACTION per step period (S/4), so the size follows the largest of those decayed
 * recommendations. All of it is recomputed from the claims, so it needs no memory of its own.
 */
export function decide(input: SizingInput): Decision {
  const { arrivals, settings: s, current, now } = input;
  const refill = (u: number) => input.refill(refillTick(u));
  const tick = Math.floor((now - SETTLE_MS) / TICK_MS) * TICK_MS;
  const rate = arrivalRate(arrivals, tick, s.rateWindowS);
  const refillS = Math.max(refill(tick), input.refillNow?.(tick) ?? 0);
  const recommended = clamp(sizeFor(rate * refillS, s.targetMissRate), s);
  let target = recommended;
  if (s.minSize < s.maxSize && now - input.completeSince < historyMs(s)) {
    // A replica that has not watched the whole history holds only part of the past: the claims
    // and refill samples of pods deleted before it started are gone, so the peaks of its window
    // are not those of a replica that watched all along, and the two would overwrite each
    // other's size (the cluster test saw 30 -> 26 -> 30 -> 24 -> 19 -> 24 after a restart). It
    // grows the pool for the demand of now only, and never shrinks it.
    target = clamp(Math.max(recommended, Math.min(current, s.maxSize)), s);
  } else if (s.minSize < s.maxSize) {
    const windowMs = s.scaleDownWindowS * 1000;
    const periodMs = windowMs * STEP_FRACTION;
    // The largest demand (claims per refill time) in each group: group 0 is the stabilization
    // window, group j the j-th step period before it.
    const peaks = new Array<number>(STEPS + 1).fill(0);
    for (let u = tick; u > tick - windowMs - STEPS * periodMs; u -= TICK_MS) {
      const j = u > tick - windowMs ? 0 : Math.ceil((tick - windowMs - u + 1) / periodMs);
      peaks[j] = Math.max(peaks[j] as number, arrivalRate(arrivals, u, s.rateWindowS) * refill(u));
    }
    peaks.forEach((peak, j) => {
      target = Math.max(target, Math.floor(sizeFor(peak, s.targetMissRate) * (1 - STEP_FRACTION) ** j));
    });
    target = clamp(target, s);
  }
  return { target, rate, refillS, recommended, predictedMissRate: missProbability(rate * refillS, target), tick };
}

/** 1 - Φ(z), by the complementary error function (Abramowitz and Stegun 7.1.26). */
function upperNormalTail(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erfc = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * Math.exp(-x * x);
  return z >= 0 ? erfc / 2 : 1 - erfc / 2;
}
