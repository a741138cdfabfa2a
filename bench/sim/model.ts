/**
 * A discrete-event model of one pool, with time in millisecond slots (a calendar queue: pods
 * becoming Ready are kept in a ring indexed by their Ready slot, waiting claims in a ring indexed
 * by their arrival slot), so each event costs O(1) whatever the rate. It plays what the cluster
 * does: a claim takes a warm pod, or waits (first come, first served) for the next one to turn
 * Ready, or fails after the claim timeout; each claim makes the ReplicaSet start a replacement
 * that is Ready one refill time later; a resize adds pods, or removes pods as the ReplicaSet
 * does (not-ready before Ready, the newest first). Every second it asks the controller's own
 * `decide` for the size.
 */
import { decide, refillEstimate, refillTick, REFILL_SAMPLES, type SizingSettings } from '../../controller/src/pool/sizing.js';
import { Claims } from './claims.js';
import { gaussian, poissonDraw, rng } from './random.js';
import type { Trace } from './traces.js';

/**
 * Seconds from pod creation to Ready: log-normal, with this median and log-scale spread; or
 * drawn from measured samples; or, with `timed`, from the samples measured for pods created
 * within 2 s of the same second of the trace (the nearest one if none): on a loaded machine pods
 * start slowest exactly when most of them start, which a draw from all samples hides.
 */
export interface RefillModel {
  medianS: number;
  sigma: number;
  samples?: readonly number[];
  /** [second of the trace the pod was created at, its refill seconds]. */
  timed?: readonly (readonly [number, number])[];
}

export interface RunOptions {
  seed: number;
  /** Claims older than this fail (CLAIM_TIMEOUT_MS). */
  claimTimeoutMs: number;
  /**
   * Seconds of the trace's first rate played before it, unmeasured: every policy starts as it
   * would after running at that rate, not from an empty pool.
   */
  warmupS: number;
  /** The size is sampled this often for the timeline. */
  sampleEveryS: number;
  /** Length of a time slot, ms (a divisor of 1000): 1 by default; 10 for rates of thousands per second. */
  slotMs?: number;
}

export interface RunResult {
  sessions: number;
  waited: number;
  failed: number;
  /** Waits of the claims that waited, ms: [p50, p99]. */
  waitP50Ms: number;
  waitP99Ms: number;
  idlePodSeconds: number;
  /** Resizes, and how often the size turned from growing to shrinking or back. */
  resizes: number;
  directionChanges: number;
  /** [second, pool size, claims per second since the previous sample] every sampleEveryS. */
  timeline: [number, number, number][];
  cpuMs: number;
}

/** One run of `trace` against a pool sized by `settings` (min == max: a fixed size). */
export function simulate(trace: Trace, settings: SizingSettings, refill: RefillModel, o: RunOptions): RunResult {
  const started = process.cpuUsage();
  const random = rng(o.seed);
  const slotMs = o.slotMs ?? 1;
  const perSecond = 1000 / slotMs;
  const warmupSlot = o.warmupS * perSecond;
  const endSlot = trace.durationS * perSecond + warmupSlot;
  const longestS = Math.max(refill.medianS * Math.exp(5 * refill.sigma), ...(refill.samples ?? []), ...(refill.timed ?? []).map(([, s]) => s));
  const ringLength = Math.ceil(longestS * perSecond) + 2;
  const ready = new Float64Array(ringLength);
  const timeout = Math.ceil(o.claimTimeoutMs / slotMs);
  const waitRing = new Float64Array(timeout + 1);
  const waitHist = new Float64Array(timeout + 1);
  const claims = new Claims(trace.durationS + o.warmupS);
  const samples = new Float64Array(REFILL_SAMPLES);
  let sampled = 0;
  const refillAt = new Map<number, number>();
  const timeline: [number, number, number][] = [];

  const drawAt = (second: number): number => {
    const timed = refill.timed as readonly (readonly [number, number])[];
    const near = timed.filter(([at]) => Math.abs(at - second) <= 2);
    if (near.length > 0) return (near[Math.floor(random() * near.length)] as readonly [number, number])[1];
    let best = timed[0] as readonly [number, number];
    for (const t of timed) if (Math.abs(t[0] - second) < Math.abs(best[0] - second)) best = t;
    return best[1];
  };
  const drawRefill = (slot: number) => (refill.timed?.length
    ? drawAt(slot / perSecond - o.warmupS)
    : refill.samples?.length
      ? refill.samples[Math.floor(random() * refill.samples.length)] as number
      : Math.min(longestS, refill.medianS * Math.exp(refill.sigma * gaussian(random))));
  let replicas = settings.minSize;
  let warm = replicas;
  // The pods the pool starts with took a refill time too: they are the first samples.
  for (let i = 0; i < Math.min(replicas, REFILL_SAMPLES); i++) samples[sampled++] = drawRefill(0);
  let starting = 0;
  let waiting = 0;
  let head = 0;
  let sessions = 0, waited = 0, failed = 0, idleMs = 0, claimsSinceSample = 0;
  let resizes = 0, directionChanges = 0, direction = 0;

  /** n pods created at `slot`: one by one, or in 4 batches sharing a refill time when there are more. */
  const create = (slot: number, n: number) => {
    const batches = Math.min(n, 4);
    for (let i = 0; i < batches; i++) {
      const size = Math.floor(n / batches) + (i < n % batches ? 1 : 0);
      const refillS = drawRefill(slot);
      samples[sampled++ % REFILL_SAMPLES] = refillS;
      const at = (slot + Math.max(1, Math.round(refillS * perSecond))) % ringLength;
      ready[at] = (ready[at] as number) + size;
    }
    starting += n;
  };
  /** The ReplicaSet removes n pods: not-ready ones first, the newest (last to be Ready) first. */
  const remove = (slot: number, n: number) => {
    let left = n;
    for (let ahead = ringLength - 1; ahead > 0 && left > 0 && starting > 0; ahead--) {
      const at = (slot + ahead) % ringLength;
      const gone = Math.min(left, ready[at] as number);
      ready[at] = (ready[at] as number) - gone;
      starting -= gone;
      left -= gone;
    }
    warm -= left;
  };
  const claimed = (slot: number, n: number, waitSlots: number) => {
    claims.add(slot * slotMs, n, waitSlots > 0);
    claimsSinceSample += n;
    create(slot, n);
    if (slot < warmupSlot) return;
    sessions += n;
    if (waitSlots > 0) {
      waited += n;
      waitHist[waitSlots] = (waitHist[waitSlots] as number) + n;
    }
  };
  /** The refill estimate of each refill tick, from the samples when the tick is first asked for. */
  const refillOf = (tick: number) => {
    let t = refillAt.get(tick);
    if (t === undefined) refillAt.set(tick, t = refillEstimate(Array.from(samples.subarray(0, Math.min(sampled, REFILL_SAMPLES)))));
    return t;
  };

  let perSlot = 0;
  let emptyChance = 1;
  const fileCounts = trace.counts;
  for (let slot = 0; slot < endSlot; slot++) {
    const r = slot % ringLength;
    const up = ready[r] as number;
    if (up > 0) {
      ready[r] = 0;
      starting -= up;
      warm += up;
    }
    if (waiting > 0) {
      // Claims that waited out the timeout fail; the oldest waiting claims take the pods now Ready.
      const expired = slot - timeout;
      if (expired >= 0) {
        const w = expired % (timeout + 1);
        const n = waitRing[w] as number;
        if (n > 0) {
          waitRing[w] = 0;
          waiting -= n;
          if (slot >= warmupSlot) {
            failed += n;
            waited += n;
            sessions += n;
            waitHist[timeout] = (waitHist[timeout] as number) + n;
          }
        }
        if (head < expired + 1) head = expired + 1;
      }
      while (warm > 0 && waiting > 0) {
        const w = head % (timeout + 1);
        const n = Math.min(warm, waitRing[w] as number);
        if (n > 0) {
          waitRing[w] = (waitRing[w] as number) - n;
          waiting -= n;
          warm -= n;
          claimed(slot, n, slot - head);
        }
        if ((waitRing[w] as number) === 0) head++;
      }
    }
    if (slot % perSecond === 0) {
      const now = slot * slotMs;
      const second = slot / perSecond - o.warmupS;
      if (trace.rate) {
        perSlot = trace.rate(Math.max(0, second)) / perSecond;
        emptyChance = Math.exp(-perSlot);
      }
      if (now % 5000 === 0) refillOf(refillTick(now));
      const d = decide({ arrivals: claims, refill: refillOf, settings, current: replicas, now, completeSince: Number.NEGATIVE_INFINITY });
      if (d.target !== replicas) {
        const turn = Math.sign(d.target - replicas);
        if (d.target > replicas) create(slot, d.target - replicas);
        else remove(slot, replicas - d.target);
        resizes++;
        if (direction !== 0 && turn !== direction) directionChanges++;
        direction = turn;
        replicas = d.target;
      }
      if (second >= 0 && second % o.sampleEveryS === 0) {
        timeline.push([second, replicas, claimsSinceSample / o.sampleEveryS]);
        claimsSinceSample = 0;
      }
    }
    let k = 0;
    if (fileCounts) k = fileCounts.get(slot - warmupSlot) ?? 0; // trace files play in 1 ms slots
    else if (perSlot > 0) k = poissonDraw(perSlot, emptyChance, random);
    if (k > 0) {
      if (waiting === 0) {
        const hits = Math.min(k, warm);
        warm -= hits;
        if (hits > 0) claimed(slot, hits, 0);
        k -= hits;
      }
      if (k > 0) {
        if (waiting === 0) head = slot;
        const w = slot % (timeout + 1);
        waitRing[w] = (waitRing[w] as number) + k;
        waiting += k;
      }
    }
    if (slot >= warmupSlot) idleMs += warm * slotMs;
  }
  const [waitP50Ms, waitP99Ms] = percentiles(waitHist, waited, [0.5, 0.99]).map((slots) => slots * slotMs) as [number, number];
  const cpu = process.cpuUsage(started);
  return { sessions, waited, failed, waitP50Ms, waitP99Ms, idlePodSeconds: idleMs / 1000, resizes, directionChanges, timeline, cpuMs: (cpu.user + cpu.system) / 1000 };
}

function percentiles(hist: Float64Array, total: number, qs: number[]): number[] {
  return qs.map((q) => {
    if (total === 0) return 0;
    let seen = 0;
    for (let i = 0; i < hist.length; i++) {
      seen += hist[i] as number;
      if (seen >= q * total) return i;
    }
    return hist.length - 1;
  });
}
