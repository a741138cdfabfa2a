/**
 * The pool's pods as the watch reports them, with the indexes the claim path and the status
 * page read, each kept up to date per watch event (one pod at a time, never a scan): the
 * claimable set (ranked, so a claim takes its candidate without a scan), the count of pods per
 * state, and the session index.
 *
 * The cache holds only what the watch reports; it is never written from a write's answer. A
 * claim this replica made is a reservation laid over it: the claimed view of the pod, until the
 * watch shows that claim (an event at the claim's resourceVersion, or carrying its session) or
 * the pod's end. Meanwhile the pod is not claimable here and its session is found at once,
 * whatever older events of the pod the watch still delivers. ResourceVersions are compared for
 * equality only: they are opaque.
 */
import type { Metrics } from '../../metrics.js';
import type { PodInfo } from './api.js';
import { FREE, SESSION_LABEL, TAKEN } from './labels.js';
import { RankedSet } from './ranked-set.js';
import type { SessionIndex } from './session-index.js';

export type PodState = 'warm' | 'warming' | 'assigned';

export interface PodCacheOptions {
  labelKey: string;
  /** Rank of a pod name among claim candidates (highest first). */
  rank: (name: string) => number;
  sessions: SessionIndex;
  metrics: Metrics;
  /** Called when a pod turns claimable. */
  onClaimable: () => void;
}

export class PodCache {
  private readonly pods = new Map<string, PodInfo>();
  private readonly reservations = new Map<string, PodInfo>();
  /** Pods a local claim is writing to now, so two local claims never race for one. */
  private readonly taken = new Set<string>();
  /** Candidates that lost a conflict, with the resourceVersion they lost at: skipped until the watch shows another. */
  private readonly dropped = new Map<string, string>();
  private readonly states = new Map<string, PodState>();
  private readonly warm: RankedSet;
  private readonly warming = new Set<string>();
  private readonly assigned = new Set<string>();
  /** Pods whose startup was already observed in the metric. */
  private readonly startupSeen = new Set<string>();

  constructor(private readonly o: PodCacheOptions) {
    this.warm = new RankedSet(o.rank);
  }

  get size(): number {
    return this.pods.size;
  }

  /** The pod as this replica sees it: its own reservation, else the watch's view. */
  view(name: string): PodInfo | undefined {
    return this.reservations.get(name) ?? this.pods.get(name);
  }

  counts(): Record<PodState, number> {
    return { warm: this.warm.size, warming: this.warming.size, assigned: this.assigned.size };
  }

  /** Names of claimable pods (for tests and the recount; the claim path uses best()). */
  claimable(): Iterable<string> {
    return this.warm;
  }

  /** Names of claimed pods, for the orphan sweep. */
  claimed(): string[] {
    return [...this.assigned];
  }

  /** The claimable pod this replica prefers. */
  best(): PodInfo | undefined {
    const name = this.warm.best();
    return name === undefined ? undefined : this.pods.get(name);
  }

  private isClaimable(pod: PodInfo): boolean {
    return pod.labels[this.o.labelKey] === FREE && pod.phase === 'Running' && pod.ready && pod.podIP !== undefined && !pod.deleting;
  }

  upsert(pod: PodInfo): void {
    const known = this.pods.get(pod.name);
    // Another pod under a known name: the one the cache had is gone (its deletion was missed).
    if (known && known.uid !== pod.uid) this.remove(known);
    const before = this.view(pod.name);
    this.pods.set(pod.name, pod);
    this.dropped.delete(pod.name);
    const reserved = this.reservations.get(pod.name);
    if (reserved && this.shows(pod, reserved)) this.reservations.delete(pod.name);
    if (pod.ready && pod.readySince && !this.startupSeen.has(pod.uid)) {
      this.startupSeen.add(pod.uid);
      if (pod.createdAt > 0) this.o.metrics.podStartup.observe(Math.max(0, pod.readySince - pod.createdAt) / 1000);
    }
    this.refresh(pod.name, before);
  }

  remove(pod: PodInfo): void {
    const known = this.pods.get(pod.name);
    if (known && known.uid !== pod.uid) return;
    const before = this.view(pod.name);
    this.pods.delete(pod.name);
    this.reservations.delete(pod.name);
    this.dropped.delete(pod.name);
    this.taken.delete(pod.name);
    this.startupSeen.delete(pod.uid);
    this.refresh(pod.name, before, { ...pod, deleting: true });
    this.o.sessions.left(pod);
  }

  /** A local claim starts writing to the pod. */
  take(name: string): void {
    this.taken.add(name);
    this.refresh(name, this.view(name));
  }

  /** The write failed without an answer: the pod is a candidate again (the watch will say if it is not). */
  untake(name: string): void {
    this.taken.delete(name);
    this.refresh(name, this.view(name));
  }

  /** The write met a conflict at `resourceVersion`: skip the pod until the watch shows it changed. */
  drop(name: string, resourceVersion: string): void {
    this.taken.delete(name);
    if (this.pods.get(name)?.resourceVersion === resourceVersion) this.dropped.set(name, resourceVersion);
    this.refresh(name, this.view(name));
  }

  /** The claim landed (`pod` is the write's answer): reserve the pod until the watch shows it. */
  reserve(pod: PodInfo): void {
    this.taken.delete(pod.name);
    const before = this.view(pod.name);
    const cached = this.pods.get(pod.name);
    if (cached && !this.shows(cached, pod)) this.reservations.set(pod.name, pod);
    this.refresh(pod.name, before);
  }

  /** Whether the watch's `pod` shows the claim `reserved` (or its pod is another one by now). */
  private shows(pod: PodInfo, reserved: PodInfo): boolean {
    return pod.uid !== reserved.uid || pod.resourceVersion === reserved.resourceVersion || pod.labels[SESSION_LABEL] === reserved.labels[SESSION_LABEL];
  }

  private stateOf(name: string): PodState | undefined {
    const pod = this.view(name);
    if (!pod || pod.deleting) return undefined;
    const label = pod.labels[this.o.labelKey];
    if (label === TAKEN) return 'assigned';
    if (label !== FREE) return undefined;
    if (!this.isClaimable(pod)) return 'warming';
    const skipped = this.taken.has(name) || this.dropped.get(name) === pod.resourceVersion;
    return skipped ? undefined : 'warm';
  }

  /** Moves one pod between the per-state sets and tells the session index of its new view. */
  private refresh(name: string, before?: PodInfo, gone?: PodInfo): void {
    const was = this.states.get(name);
    const now = gone ? undefined : this.stateOf(name);
    if (was !== now) {
      if (was) this.setOf(was).delete(name);
      if (now) this.setOf(now).add(name);
      if (now) this.states.set(name, now);
      else this.states.delete(name);
      this.publish();
    }
    const current = gone ?? this.view(name);
    if (current && current !== before) this.o.sessions.seen(current, before);
    if (now === 'warm' && was !== 'warm') this.o.onClaimable();
  }

  private setOf(state: PodState): { add(name: string): void; delete(name: string): void } {
    return state === 'warm' ? this.warm : state === 'warming' ? this.warming : this.assigned;
  }

  private publish(): void {
    for (const [state, n] of Object.entries(this.counts())) this.o.metrics.poolPods.set({ state }, n);
  }
}
