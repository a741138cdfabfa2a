/**
 * What this replica keeps true on its own clock, each on a named timer: the activity flush
 * (this replica's traffic, written to the pods so every replica sees it), the orphan sweep
 * (claims nobody can use), and the pool size (the Deployment's replicas, re-asserted whenever
 * someone else changes them). Each works from what the watch shows and writes conditionally.
 */
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { EndReason, SessionWorker } from '../types.js';
import { isConflict, statusOf, type KubeApi } from './api.js';
import type { PodEvents } from './events.js';
import { canServe, CLAIMED_AT, epoch, HASH_SHAPE, LAST_ACTIVITY, SESSION_LABEL, sessionOf } from './labels.js';
import type { PodCache } from './pod-cache.js';
import type { SessionIndex } from './session-index.js';

/**
 * How long a claim write that failed without an answer may still land. The API server gives up
 * on a request after its own timeout (60 s by default); past this, the write never will.
 */
const UNANSWERED_TTL_MS = 5 * 60_000;
const RETRY_MS = 500;
const MAX_RETRY_MS = 5_000;

export interface ReconcilerOptions {
  api: KubeApi;
  cache: PodCache;
  sessions: SessionIndex;
  events: PodEvents;
  logger: Logger;
  metrics: Metrics;
  deployment: string;
  poolSize: number;
  workerPort: number;
  activityFlushMs: number;
  orphanSweepMs: number;
  poolSizeCheckMs: number;
  /** Whether the last pool size check got an answer from the API server (any answer). */
  reachable: (answered: boolean) => void;
  /** Ends a session the way the backend's release does. */
  end: (session: SessionWorker, reason: EndReason) => Promise<boolean>;
  now: () => number;
}

/** A timer that skips a tick while the previous run is still going (a slow API server must not stack them). */
function every(ms: number, run: () => Promise<void>): NodeJS.Timeout {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void run().finally(() => { running = false; });
  }, ms);
  timer.unref();
  return timer;
}

export class Reconciler {
  private readonly pendingActivity = new Map<string, number>();
  /** Sessions whose claim write failed without an answer, with the time: the write may land after all. */
  private readonly unanswered = new Map<string, number>();
  private activityFlush: NodeJS.Timeout | undefined;
  private orphanSweep: NodeJS.Timeout | undefined;
  private poolSize: NodeJS.Timeout | undefined;
  private stopped = false;
  private checking = false;
  /** The pool Deployment exists (as last seen); readiness waits for it. */
  deploymentReady = false;

  constructor(private readonly o: ReconcilerOptions) {}

  start(): void {
    this.activityFlush = every(this.o.activityFlushMs, () => this.flushActivity());
    this.orphanSweep = every(this.o.orphanSweepMs, () => this.sweepOrphans());
    void this.keepPoolSize(RETRY_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.activityFlush);
    clearInterval(this.orphanSweep);
    clearTimeout(this.poolSize);
    await this.flushActivity();
  }

  recordActivity(hash: string, at: number): void {
    this.pendingActivity.set(hash, Math.max(at, this.pendingActivity.get(hash) ?? 0));
  }

  forgetActivity(hash: string): void {
    this.pendingActivity.delete(hash);
  }

  /** The API server stopped answering: check it (and the pool size) soon, until it answers. */
  probeSoon(): void {
    if (this.stopped || this.checking) return;
    clearTimeout(this.poolSize);
    void this.keepPoolSize(RETRY_MS);
  }

  recordUnanswered(hash: string): void {
    this.unanswered.set(hash, this.o.now());
  }

  /** Writes each session's newer activity to its pod, at most once per flush interval. */
  private async flushActivity(): Promise<void> {
    const due = [...this.pendingActivity];
    this.pendingActivity.clear();
    await Promise.all(due.map(async ([hash, at]) => {
      const pod = this.o.sessions.get(hash);
      if (!pod || epoch(pod.annotations[LAST_ACTIVITY]) >= at) return;
      try {
        await this.o.api.patchPod(pod.name, undefined, {}, { [LAST_ACTIVITY]: new Date(at).toISOString() });
      } catch (err) {
        if (!isConflict(err)) this.o.logger.debug({ pod: pod.name, err: (err as Error).message }, 'activity not written');
      }
    }));
  }

  /**
   * Ends the sessions of claims that failed here without an answer but landed after all (their
   * client got a 503 and never the id, so the pod would otherwise wait out the idle timeout), and
   * deletes claimed pods that carry no valid session (a hand edit, a foreign tool) or can no
   * longer serve the one they carry (worker restarted or pod failed: the session is lost).
   */
  private async sweepOrphans(): Promise<void> {
    for (const [hash, since] of this.unanswered) {
      const pod = this.o.sessions.get(hash);
      if (this.o.now() - since > UNANSWERED_TTL_MS) {
        this.unanswered.delete(hash);
      } else if (pod && await this.o.end(sessionOf(pod, this.o.workerPort), 'orphan').catch(() => false)) {
        this.unanswered.delete(hash);
        this.o.metrics.sessionsEnded.inc({ reason: 'orphan' });
        this.o.logger.warn({ session: hash.slice(0, 12) }, 'ended the session of a claim whose answer was lost');
      }
    }
    for (const name of this.o.cache.claimed()) {
      const pod = this.o.cache.view(name);
      if (!pod) continue;
      const hash = pod.labels[SESSION_LABEL] ?? '';
      const valid = HASH_SHAPE.test(hash) && epoch(pod.annotations[CLAIMED_AT]) > 0;
      if (valid && canServe(pod)) continue;
      try {
        await this.o.api.deletePod(pod.name, pod.uid, pod.resourceVersion);
        this.o.metrics.sessionsEnded.inc({ reason: 'orphan' });
        this.o.events.ended(pod, valid ? hash : undefined, 'orphan');
        this.o.logger.warn({ pod: pod.name }, 'deleted a claimed pod without a valid session');
      } catch (err) {
        if (!isConflict(err)) this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'cannot delete orphan pod');
      }
    }
  }

  /** Checks the pool size now, then every `poolSizeCheckMs`; after a failure sooner, backing off. */
  private async keepPoolSize(retryMs: number): Promise<void> {
    this.checking = true;
    const ok = await this.assertPoolSize();
    this.checking = false;
    if (this.stopped) return;
    const [delayMs, nextRetryMs] = ok ? [this.o.poolSizeCheckMs, RETRY_MS] : [retryMs, Math.min(retryMs * 2, MAX_RETRY_MS)];
    this.poolSize = setTimeout(() => void this.keepPoolSize(nextRetryMs), delayMs);
    this.poolSize.unref();
  }

  /** Sets the Deployment's replicas to the pool size when they differ. Resolves whether the check got through. */
  private async assertPoolSize(): Promise<boolean> {
    const { deployment, poolSize } = this.o;
    try {
      const replicas = await this.o.api.readReplicas(deployment);
      this.o.reachable(true);
      this.deploymentReady = replicas !== undefined;
      if (replicas === undefined) {
        this.o.logger.warn({ deployment }, 'pool deployment not found; retrying');
        return false;
      }
      if (replicas === poolSize) return true;
      await this.o.api.scaleDeployment(deployment, poolSize);
      this.o.logger.info({ deployment, replicas: poolSize, was: replicas }, 'pool size set');
      return true;
    } catch (err) {
      this.o.reachable(statusOf(err) !== undefined);
      this.o.logger.warn({ err: (err as Error).message }, 'cannot set the pool size; retrying');
      return false;
    }
  }
}
