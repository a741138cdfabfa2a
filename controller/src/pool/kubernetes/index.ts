/**
 * The kubernetes backend. The pool is a Deployment whose selector includes
 * `<labelKey>=not_assigned`; a claim flips that label with one conditional write, so the
 * ReplicaSet releases the pod and starts a replacement. Sessions live in the pod labels, so
 * every replica can route every session from its watch and a restarted replica has nothing to
 * recover. This facade wires the parts: the pod cache and its session index (the watch), the
 * claimer (the claim path), the reconciler (timers) and the pod Events.
 */
import { errors } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { claimInOrder, type ClaimQueue } from '../claim-queue.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, PoolSnapshot, SessionWorker } from '../types.js';
import { isConflict, type KubeApi } from './api.js';
import { Claimer, rendezvous } from './claimer.js';
import { PodEvents } from './events.js';
import { CLAIMED_BY, ENDED, sessionOf } from './labels.js';
import { PodCache } from './pod-cache.js';
import { Reconciler } from './reconciler.js';
import { SessionIndex } from './session-index.js';

export { CLAIMED_AT, CLAIMED_BY, CLIENT_LABEL, ENDED, LAST_ACTIVITY, SESSION_LABEL } from './labels.js';
export type { KubeApi, PodEvent, PodInfo, PodWatchHandlers } from './api.js';

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
  /** Period of the orphan sweep (default: the activity flush period). */
  orphanSweepMs?: number;
  /** Period of the check that the Deployment's replicas are the pool size. */
  poolSizeCheckMs?: number;
  random?: () => number;
  now?: () => number;
}

export class KubePool implements PoolBackend {
  readonly name = 'kubernetes';
  private readonly index: SessionIndex;
  private readonly cache: PodCache;
  private readonly claimer: Claimer;
  private readonly reconciler: Reconciler;
  private readonly events: PodEvents;
  private watch: { stop(): Promise<void> } | undefined;
  private synced = false;
  private connected = false;
  /** False from a claim write that got no answer until the API server answers again: claims then fail fast. */
  private answering = true;
  private stopped = false;

  constructor(private readonly o: KubePoolOptions) {
    const now = o.now ?? Date.now;
    const seed = Math.floor((o.random ?? Math.random)() * 0x100000000);
    this.events = new PodEvents(o.api, o.logger, o.replica, o.deployment);
    this.index = new SessionIndex(o.labelKey, (pod, hash, why) => {
      if (pod.annotations[CLAIMED_BY] === o.replica) this.events.lost(pod, hash, why);
    });
    this.cache = new PodCache({ labelKey: o.labelKey, rank: rendezvous(seed), sessions: this.index, metrics: o.metrics, onClaimable: () => o.queue.wake() });
    const { api, logger, metrics, replica, labelKey, workerPort, retryAfterS } = o;
    this.reconciler = new Reconciler({
      api, cache: this.cache, sessions: this.index, events: this.events, logger, metrics, workerPort, now,
      deployment: o.deployment,
      poolSize: o.poolSize,
      activityFlushMs: o.activityFlushMs,
      orphanSweepMs: o.orphanSweepMs ?? o.activityFlushMs,
      poolSizeCheckMs: o.poolSizeCheckMs ?? 10_000,
      reachable: (answered) => this.answered(answered),
      end: (session, reason) => this.release(session, reason),
    });
    this.claimer = new Claimer({
      api, cache: this.cache, events: this.events, logger, metrics, replica, labelKey, workerPort, retryAfterS, now,
      maxAttempts: o.maxAttempts ?? 5,
      connected: () => this.connected && this.answering,
      unanswered: (hash) => {
        this.reconciler.recordUnanswered(hash);
        this.answered(false);
      },
    });
  }

  /** Resolves after the first list; the pool size is set (and kept) in the background. */
  async start(): Promise<void> {
    const selector = Object.entries(this.o.selector).map(([k, v]) => `${k}=${v}`).join(',');
    const listed = new Promise<void>((firstSync) => {
      this.watch = this.o.api.watchPods(selector, {
        upsert: (pod) => this.cache.upsert(pod),
        remove: (pod) => this.cache.remove(pod),
        synced: () => {
          this.synced = true;
          this.connected = true;
          this.o.logger.info({ pods: this.cache.size }, 'pod informer in sync');
          this.o.queue.wake(this.cache.counts().warm);
          firstSync();
        },
        broken: (err, retryInMs) => {
          this.connected = false;
          this.o.logger.warn({ err: (err as Error)?.message ?? String(err), retryInMs }, 'pod informer lost the API server');
        },
      });
    });
    this.reconciler.start();
    await listed;
  }

  isReady(): boolean {
    return this.synced && this.reconciler.deploymentReady;
  }

  claim(request: ClaimRequest): Promise<SessionWorker> {
    if (!this.connected || !this.answering) return Promise.reject(errors.backendUnavailable(this.o.retryAfterS));
    return claimInOrder(this.o.queue, async () => {
      const got = await this.claimer.tryClaim(request);
      if (got === undefined && !this.answering) throw errors.backendUnavailable(this.o.retryAfterS);
      return got;
    }, request.signal);
  }

  lookup(hash: string): SessionWorker | undefined {
    const pod = this.index.get(hash);
    return pod ? sessionOf(pod, this.o.workerPort) : undefined;
  }

  /**
   * This replica learns of another replica's claim through its watch, some milliseconds after
   * that claim's client got its session id (tens under load). A client's next request may well
   * come here at once (a Service spreads connections over replicas) and must not be told that
   * its session does not exist: so an unknown session is waited for, up to `catchUpMs`, until
   * the watch shows it or its end.
   */
  async waitForSession(hash: string): Promise<SessionWorker | undefined> {
    if (!this.stopped) await this.index.wait(hash, this.o.catchUpMs ?? 2000);
    return this.lookup(hash);
  }

  *sessions(): Iterable<SessionWorker> {
    for (const pod of this.index.values()) yield sessionOf(pod, this.o.workerPort);
  }

  recordActivity(hash: string, at: number): void {
    this.reconciler.recordActivity(hash, at);
  }

  /**
   * Marks the pod ended (so other replicas answer 410 session_ended, not session_lost), then
   * deletes it. Both writes are conditional: an idle, lifetime or orphan end carries the version
   * the decision was made on, so activity written meanwhile by another replica wins.
   */
  async release(session: SessionWorker, reason: EndReason): Promise<boolean> {
    const { hash } = session;
    const pod = this.index.ending(hash);
    if (!pod) return false;
    this.reconciler.forgetActivity(hash);
    const guarded = reason === 'idle' || reason === 'lifetime' || reason === 'orphan';
    try {
      const marked = await this.o.api.patchPod(pod.name, guarded ? session.version : undefined, {}, { [ENDED]: reason });
      await this.o.api.deletePod(pod.name, pod.uid, guarded ? marked.resourceVersion : undefined);
      this.events.ended(pod, hash, reason);
      return true;
    } catch (err) {
      const current = this.cache.view(pod.name);
      const restore = () => this.index.restore(hash, current?.uid === pod.uid ? current : undefined);
      if (!isConflict(err)) {
        restore();
        this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'cannot end session');
        throw errors.backendUnavailable(this.o.retryAfterS, err);
      }
      // The pod changed since the decision (activity written by another replica, or another
      // replica ended it first): put the session back and let the watch speak.
      if (guarded) restore();
      return false;
    }
  }

  /**
   * A hung API server keeps the watch open and silent, so only a request that gets no answer
   * tells. From then on claims fail fast (the queued ones too, at once) instead of each waiting
   * out its own deadline, and the reconciler probes until the API server answers again.
   */
  private answered(yes: boolean): void {
    const was = this.answering;
    this.answering = yes;
    if (yes) {
      if (was) return;
      this.o.logger.info('the API server answers again');
      this.o.queue.wake(this.cache.counts().warm);
      return;
    }
    // Every failed probe wakes the claims queued meanwhile, so they fail now too.
    this.o.queue.wake(this.o.queue.length);
    if (!was) return;
    this.o.logger.warn('the API server does not answer; claims fail until it does');
    this.reconciler.probeSoon();
  }

  snapshot(): PoolSnapshot {
    return { backend: this.name, ...this.cache.counts(), pendingClaims: this.o.queue.length };
  }

  onGone(listener: GoneListener): void {
    this.index.onGone(listener);
  }

  /** Stops watching. Pods and sessions stay: they belong to the cluster, not to this replica. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.reconciler.stop();
    await this.watch?.stop();
  }
}
