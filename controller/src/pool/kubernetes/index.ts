import { errors } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { claimInOrder, type ClaimQueue } from './claim-queue.js';
import { isConflict, type KubeApi, type PodInfo } from './kube-client.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, PoolSnapshot, SessionWorker } from './types.js';

export const SESSION_LABEL = 'warmpool.dev/session';
export const CLIENT_LABEL = 'warmpool.dev/client';
export const CLAIMED_AT = 'warmpool.dev/claimed-at';
export const CLAIMED_BY = 'warmpool.dev/claimed-by';
export const LAST_ACTIVITY = 'warmpool.dev/last-activity';
/** Set just before warmpool deletes a claimed pod, so every replica can tell an end from a loss. */
export const ENDED = 'warmpool.dev/ended';
const FREE = 'not_assigned';
const TAKEN = 'assigned';
const HASH_SHAPE = /^[0-9a-f]{40}$/;
/**
 * How long a claim write that failed without an answer may still land. The API server gives up
 * on a request after its own timeout (60 s by default); past this, the write never will.
 */
const ABANDONED_TTL_MS = 5 * 60_000;

export interface KubePoolOptions {
  api: KubeApi;
  queue: ClaimQueue;
  logger: Logger;
  metrics: Metrics;
  /** This replica's name, written to claimed-by. */
  replica: string;
  selector: Readonly<Record<string, string>>;
  labelKey: string;
  deployment: string;
  poolSize: number;
  workerPort: number;
  activityFlushMs: number;
  retryAfterS: number;
  /** Conflicting candidates one claim tries before it waits for the watch. */
  maxAttempts?: number;
  /** Longest wait for the watch to show a session this replica has not seen yet (see waitForSession). */
  catchUpMs?: number;
  random?: () => number;
  now?: () => number;
}

function epoch(value: string | undefined): number {
  const ms = value ? Date.parse(value) : NaN;
  return Number.isFinite(ms) ? ms : 0;
}

/**
 * The kubernetes backend. The pool is a Deployment whose selector includes
 * `<labelKey>=not_assigned`; a claim flips that label with one conditional write, so the
 * ReplicaSet releases the pod and starts a replacement. Sessions live in the pod labels, so
 * every replica can route every session from its informer cache and a restarted replica has
 * nothing to recover. The cache is only ever read: local state is a reservation at most.
 */
export class KubePool implements PoolBackend {
  readonly name = 'kubernetes';
  private readonly pods = new Map<string, PodInfo>();
  private readonly bySession = new Map<string, PodInfo>();
  /** Pods this replica is patching right now, so two local claims never race for one. */
  private readonly inFlight = new Set<string>();
  /** Candidates that lost a conflict, by name@resourceVersion: skipped until the watch shows a newer version. */
  private readonly dropped = new Set<string>();
  /** Sessions already reported gone, so a pod's later events do not report them twice. */
  private readonly reported = new Set<string>();
  /** Pods whose startup was already observed in the metric. */
  private readonly startupSeen = new Set<string>();
  private readonly pendingActivity = new Map<string, number>();
  private readonly goneListeners: GoneListener[] = [];
  /**
   * Sessions whose claim write failed without an answer (a timeout, a reset connection), by
   * hash, with the time: the write may have landed after all, on a pod no client can reach.
   */
  private readonly abandoned = new Map<string, number>();
  /** Lookups waiting for the watch to show a session, by session hash. */
  private readonly awaited = new Map<string, Set<() => void>>();
  private watch: { stop(): Promise<void> } | undefined;
  private flusher: NodeJS.Timeout | undefined;
  private synced = false;
  private stopped = false;
  private connected = false;
  private deploymentReady = false;
  /** This replica's own random order of pods (see preference()). */
  private readonly seed: number;
  private readonly now: () => number;

  constructor(private readonly o: KubePoolOptions) {
    this.seed = Math.floor((o.random ?? Math.random)() * 0x100000000);
    this.now = o.now ?? Date.now;
  }

  /** Resolves after the first list; setting the pool size is retried in the background until it works. */
  async start(): Promise<void> {
    const selector = Object.entries(this.o.selector).map(([k, v]) => `${k}=${v}`).join(',');
    let firstSync!: () => void;
    const listed = new Promise<void>((resolve) => { firstSync = resolve; });
    this.watch = this.o.api.watchPods(selector, {
      upsert: (pod) => this.upsert(pod),
      remove: (pod) => this.remove(pod),
      synced: () => {
        this.synced = true;
        this.connected = true;
        this.o.logger.info({ pods: this.pods.size }, 'pod informer in sync');
        this.o.queue.wake(this.claimable().length);
        firstSync();
      },
      broken: (err, retryInMs) => {
        this.connected = false;
        this.o.logger.warn({ err: (err as Error)?.message ?? String(err), retryInMs }, 'pod informer lost the API server');
      },
    });
    void this.ensurePoolSize();
    this.flusher = setInterval(() => {
      void this.flushActivity();
      void this.reapOrphans();
    }, this.o.activityFlushMs);
    this.flusher.unref();
    await listed;
  }

  isReady(): boolean {
    return this.synced && this.deploymentReady;
  }

  claim(request: ClaimRequest): Promise<SessionWorker> {
    if (!this.connected) return Promise.reject(errors.backendUnavailable(this.o.retryAfterS));
    return claimInOrder(this.o.queue, () => this.tryClaim(request), request.signal);
  }

  lookup(hash: string): SessionWorker | undefined {
    const pod = this.bySession.get(hash);
    return pod ? this.toSession(pod) : undefined;
  }

  /**
   * This replica learns of another replica's claim through its watch, some milliseconds after
   * that claim's client got its session id (tens under load). A client's next request may well
   * come here at once (a Service spreads connections over replicas) and must not be told that
   * its session does not exist: so an unknown session is waited for, up to `catchUpMs`, until
   * the watch shows it or its end.
   */
  async waitForSession(hash: string): Promise<SessionWorker | undefined> {
    if (!this.bySession.has(hash) && !this.reported.has(hash) && !this.stopped) {
      await new Promise<void>((resolve) => {
        const waiters = this.awaited.get(hash) ?? new Set<() => void>();
        const wake = () => {
          clearTimeout(timer);
          waiters.delete(wake);
          if (waiters.size === 0) this.awaited.delete(hash);
          resolve();
        };
        const timer = setTimeout(wake, this.o.catchUpMs ?? 2000);
        timer.unref();
        waiters.add(wake);
        this.awaited.set(hash, waiters);
      });
    }
    return this.lookup(hash);
  }

  *sessions(): Iterable<SessionWorker> {
    for (const pod of this.bySession.values()) yield this.toSession(pod);
  }

  recordActivity(hash: string, at: number): void {
    this.pendingActivity.set(hash, Math.max(at, this.pendingActivity.get(hash) ?? 0));
  }

  /**
   * Marks the pod ended (so other replicas answer 410 session_ended, not session_lost), then
   * deletes it. Both writes are conditional: an idle or lifetime end carries the version the
   * decision was made on, so activity written meanwhile by another replica wins.
   */
  async release(session: SessionWorker, reason: EndReason): Promise<boolean> {
    const hash = session.hash;
    const pod = this.bySession.get(hash);
    if (!pod) return false;
    this.bySession.delete(hash);
    this.reported.add(hash);
    this.pendingActivity.delete(hash);
    const guarded = reason === 'idle' || reason === 'lifetime' || reason === 'orphan';
    try {
      const marked = await this.o.api.patchPod(pod.name, guarded ? session.version : undefined, {}, { [ENDED]: reason });
      await this.o.api.deletePod(pod.name, pod.uid, guarded ? marked.resourceVersion : undefined);
      return true;
    } catch (err) {
      if (!isConflict(err)) {
        this.reported.delete(hash);
        this.reindex(pod);
        this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'cannot end session');
        throw errors.backendUnavailable(this.o.retryAfterS);
      }
      if (guarded) {
        // The pod changed since the decision (activity written by another replica, or another
        // replica ended it first): put the session back and let the watch speak.
        this.reported.delete(hash);
        this.reindex(pod);
      }
      return false;
    }
  }

  /** Restores a session to the index from the cache's latest view of its pod, if that pod is still there. */
  private reindex(pod: PodInfo): void {
    const current = this.pods.get(pod.name);
    if (current?.uid === pod.uid) this.index(current);
  }

  snapshot(): PoolSnapshot {
    let warming = 0;
    let assigned = 0;
    for (const pod of this.pods.values()) {
      if (pod.deleting) continue;
      const v = pod.labels[this.o.labelKey];
      if (v === TAKEN) assigned++;
      else if (v === FREE && !this.isClaimable(pod)) warming++;
    }
    return { backend: this.name, warm: this.claimable().length, warming, assigned, pendingClaims: this.o.queue.length };
  }

  onGone(listener: GoneListener): void {
    this.goneListeners.push(listener);
  }

  /** Stops watching. Pods and sessions stay: they belong to the cluster, not to this replica. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.flusher);
    await this.flushActivity();
    await this.watch?.stop();
  }

  /**
   * Deletes claimed pods that carry no valid session (a hand edit, a foreign tool) or can no
   * longer serve the one they carry (worker restarted or pod failed: the session is lost), and
   * ends the sessions of claims that failed here without an answer but landed after all: their
   * client got a 503 and never the id, so the pod would otherwise wait out the idle timeout.
   */
  private async reapOrphans(): Promise<void> {
    for (const [hash, since] of this.abandoned) {
      if (this.now() - since > ABANDONED_TTL_MS) {
        this.abandoned.delete(hash);
      } else if (this.bySession.has(hash) && await this.release(this.lookup(hash) as SessionWorker, 'orphan').catch(() => false)) {
        this.abandoned.delete(hash);
        this.o.metrics.sessionsEnded.inc({ reason: 'orphan' });
        this.o.logger.warn({ session: hash.slice(0, 12) }, 'ended the session of a claim whose answer was lost');
      }
    }
    for (const pod of this.pods.values()) {
      if (pod.deleting || pod.labels[this.o.labelKey] !== TAKEN) continue;
      const valid = HASH_SHAPE.test(pod.labels[SESSION_LABEL] ?? '') && epoch(pod.annotations[CLAIMED_AT]) > 0;
      if (valid && this.canServe(pod)) continue;
      try {
        await this.o.api.deletePod(pod.name, pod.uid, pod.resourceVersion);
        this.o.metrics.sessionsEnded.inc({ reason: 'orphan' });
        this.o.logger.warn({ pod: pod.name }, 'deleted a claimed pod without a valid session');
      } catch (err) {
        if (!isConflict(err)) this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'cannot delete orphan pod');
      }
    }
  }

  private isClaimable(pod: PodInfo): boolean {
    return pod.labels[this.o.labelKey] === FREE && pod.phase === 'Running' && pod.ready && pod.podIP !== undefined && !pod.deleting;
  }

  private claimable(): PodInfo[] {
    return [...this.pods.values()].filter((p) => this.isClaimable(p) && !this.inFlight.has(p.name) && !this.dropped.has(`${p.name}@${p.resourceVersion}`));
  }

  /**
   * One claim round: candidates from the cache, in this replica's own random order so replicas rarely
   * pick the same pod; each try is one conditional PATCH that sets every label and annotation of
   * the claim at once. A conflict drops that candidate (the watch brings it back if it is still
   * free); after `maxAttempts` conflicts, or no candidate at all, the caller waits for the watch.
   */
  private async tryClaim(request: ClaimRequest): Promise<SessionWorker | undefined> {
    const maxAttempts = this.o.maxAttempts ?? 5;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      if (!this.connected) throw errors.backendUnavailable(this.o.retryAfterS);
      const candidates = this.claimable();
      let pod: PodInfo | undefined;
      let best = -1;
      for (const candidate of candidates) {
        const score = this.preference(candidate.name);
        if (score > best) [pod, best] = [candidate, score];
      }
      if (!pod) return undefined;
      this.inFlight.add(pod.name);
      const at = new Date(this.now()).toISOString();
      try {
        const claimed = await this.o.api.patchPod(
          pod.name,
          pod.resourceVersion,
          { [this.o.labelKey]: TAKEN, [SESSION_LABEL]: request.hash, [CLIENT_LABEL]: request.client },
          { [CLAIMED_AT]: at, [CLAIMED_BY]: this.o.replica, [LAST_ACTIVITY]: at },
        );
        this.upsert(claimed);
        return this.toSession(claimed);
      } catch (err) {
        if (!isConflict(err)) {
          this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'claim failed');
          this.abandoned.set(request.hash, this.now());
          throw errors.backendUnavailable(this.o.retryAfterS);
        }
        this.dropped.add(`${pod.name}@${pod.resourceVersion}`);
        this.o.metrics.claimsTotal.inc({ result: 'conflict' });
      } finally {
        this.inFlight.delete(pod.name);
      }
    }
    return undefined;
  }

  /**
   * Rendezvous hashing: every replica ranks the pods by a hash of its own random seed and the pod
   * name. Two replicas claiming at once then mostly prefer different pods, where a fresh random
   * pick per claim collides as soon as few pods are left (`npm run bench`: 3 replicas reached
   * 0.62x the raw write rate with random picks).
   */
  private preference(name: string): number {
    let h = this.seed ^ 0x811c9dc5;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995);
    return (h ^ (h >>> 15)) >>> 0;
  }

  private toSession(pod: PodInfo): SessionWorker {
    return {
      hash: pod.labels[SESSION_LABEL] as string,
      worker: pod.name,
      endpoint: { host: pod.podIP as string, port: this.o.workerPort },
      createdAt: epoch(pod.annotations[CLAIMED_AT]),
      lastActivity: epoch(pod.annotations[LAST_ACTIVITY]),
      client: pod.labels[CLIENT_LABEL] ?? '',
      version: pod.resourceVersion,
    };
  }

  private upsert(pod: PodInfo): void {
    const previous = this.pods.get(pod.name);
    // A watch event older than what a claim's response already showed must not undo it.
    if (previous && previous.uid === pod.uid && Number(previous.resourceVersion) > Number(pod.resourceVersion)) return;
    this.pods.set(pod.name, pod);
    if (previous) this.dropped.delete(`${previous.name}@${previous.resourceVersion}`);
    if (pod.ready && pod.readySince && !this.startupSeen.has(pod.uid)) {
      this.startupSeen.add(pod.uid);
      if (pod.createdAt > 0) this.o.metrics.podStartup.observe(Math.max(0, pod.readySince - pod.createdAt) / 1000);
    }
    this.index(pod);
    this.publish();
    if (this.isClaimable(pod)) this.o.queue.wake();
  }

  private remove(pod: PodInfo): void {
    const known = this.pods.get(pod.name);
    if (known && known.uid !== pod.uid) return;
    this.pods.delete(pod.name);
    this.startupSeen.delete(pod.uid);
    this.dropped.delete(`${pod.name}@${known?.resourceVersion ?? pod.resourceVersion}`);
    this.index({ ...pod, deleting: true });
    // The pod will send no more events: its session needs no guard against double reports.
    const hash = pod.labels[SESSION_LABEL];
    if (hash) this.reported.delete(hash);
    this.publish();
  }

  /** Keeps the session index in step with a pod's latest state, and reports sessions that end. */
  private index(pod: PodInfo): void {
    const hash = pod.labels[SESSION_LABEL];
    if (!hash || pod.labels[this.o.labelKey] !== TAKEN) return;
    const restarted = this.restartedSinceClaim(pod);
    const alive = !pod.deleting && this.canServe(pod);
    if (alive) {
      this.bySession.set(hash, pod);
      this.wakeLookups(hash);
      return;
    }
    if (this.bySession.get(hash)?.uid === pod.uid) this.bySession.delete(hash);
    if (this.reported.has(hash)) return;
    this.reported.add(hash);
    this.pendingActivity.delete(hash);
    const ended = pod.annotations[ENDED];
    const kind = ended ? 'ended' : 'lost';
    const why = ended ? `ended (${ended}) by another replica` : pod.deleting ? 'pod deleted' : restarted ? 'worker restarted' : `pod ${pod.phase}`;
    for (const listener of this.goneListeners) listener(hash, pod.name, kind, why);
    this.wakeLookups(hash);
  }

  private wakeLookups(hash: string): void {
    for (const wake of [...(this.awaited.get(hash) ?? [])]) wake();
  }

  /** A container restarted in place after the claim has forgotten the conversation. */
  private restartedSinceClaim(pod: PodInfo): boolean {
    return pod.restartedAt !== undefined && pod.restartedAt >= epoch(pod.annotations[CLAIMED_AT]);
  }

  /** Whether a claimed pod can still serve its session (deletion aside). */
  private canServe(pod: PodInfo): boolean {
    return !this.restartedSinceClaim(pod) && pod.phase !== 'Failed' && pod.phase !== 'Succeeded' && pod.podIP !== undefined;
  }

  private async ensurePoolSize(): Promise<void> {
    for (let delay = 500; ; delay = Math.min(delay * 2, 30_000)) {
      try {
        if (await this.o.api.deploymentExists(this.o.deployment)) {
          await this.o.api.scaleDeployment(this.o.deployment, this.o.poolSize);
          this.deploymentReady = true;
          this.o.logger.info({ deployment: this.o.deployment, replicas: this.o.poolSize }, 'pool size set');
          return;
        }
        this.o.logger.warn({ deployment: this.o.deployment }, 'pool deployment not found; retrying');
      } catch (err) {
        this.o.logger.warn({ err: (err as Error).message }, 'cannot set the pool size; retrying');
      }
      if (this.stopped) return;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** Writes each session's newer activity to its pod, at most once per flush interval. */
  private async flushActivity(): Promise<void> {
    const due = [...this.pendingActivity];
    this.pendingActivity.clear();
    await Promise.all(due.map(async ([hash, at]) => {
      const pod = this.bySession.get(hash);
      if (!pod || epoch(pod.annotations[LAST_ACTIVITY]) >= at) return;
      try {
        const updated = await this.o.api.patchPod(pod.name, undefined, {}, { [LAST_ACTIVITY]: new Date(at).toISOString() });
        this.upsert(updated);
      } catch (err) {
        if (!isConflict(err)) this.o.logger.debug({ pod: pod.name, err: (err as Error).message }, 'activity not written');
      }
    }));
  }

  private publish(): void {
    const s = this.snapshot();
    this.o.metrics.poolPods.set({ state: 'warm' }, s.warm);
    this.o.metrics.poolPods.set({ state: 'warming' }, s.warming);
    this.o.metrics.poolPods.set({ state: 'assigned' }, s.assigned);
  }
}
