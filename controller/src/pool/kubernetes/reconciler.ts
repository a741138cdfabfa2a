/**
 * What this replica keeps true on its own clock, each on a named timer: the activity flush
 * (this replica's traffic, written to the pods so every replica sees it), the orphan sweep
 * (claims nobody can use), and, while the API server does not answer, a probe that tells when
 * it does again. Each works from what the watch shows and writes conditionally.
 */
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { EndReason, SessionWorker } from '../types.js';
import { isConflict, statusOf, type KubeApi, type PodInfo } from './api.js';
import type { PodEvents } from './events.js';
import { canServe, CLAIMED_AT, epoch, HASH_SHAPE, LAST_ACTIVITY, POOL_LABEL, SESSION_LABEL, sessionOf } from './labels.js';
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
  workerPort: number;
  activityFlushMs: number;
  orphanSweepMs: number;
  /** How long a claim may wait for its delivery to be confirmed before it is ended as an orphan. */
  undeliveredMs: number;
  /** Whether the last probe got an answer from the API server (any answer). */
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
  private probeTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private probing = false;

  constructor(private readonly o: ReconcilerOptions) {}

  start(): void {
    this.activityFlush = every(this.o.activityFlushMs, () => this.flushActivity());
    this.orphanSweep = every(this.o.orphanSweepMs, () => this.sweepOrphans());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.activityFlush);
    clearInterval(this.orphanSweep);
    clearTimeout(this.probeTimer);
    await this.flushActivity();
  }

  recordActivity(hash: string, at: number): void {
    this.pendingActivity.set(hash, Math.max(at, this.pendingActivity.get(hash) ?? 0));
  }

  forgetActivity(hash: string): void {
    this.pendingActivity.delete(hash);
  }

  /** The API server stopped answering: probe it now, then again, backing off, until it answers. */
  probeSoon(): void {
    if (this.stopped || this.probing) return;
    void this.probe(RETRY_MS);
  }

  recordUnanswered(hash: string): void {
    this.unanswered.set(hash, this.o.now());
  }

  /** Writes each session's newer activity to its pod, at most once per flush interval. */
  private async flushActivity(): Promise<void> {
    const due = [...this.pendingActivity];
    this.pendingActivity.clear();
    await Promise.all(due.map(([hash, at]) => this.writeActivity(hash, at)));
  }

  /** A write that got no answer or an error other than "the pod is not what you thought" is retried at the next flush. */
  private async writeActivity(hash: string, at: number): Promise<void> {
    const pod = this.o.sessions.get(hash);
    if (!pod || epoch(pod.annotations[LAST_ACTIVITY]) >= at) return;
    try {
      await this.o.api.patchPod(pod.name, undefined, {}, { [LAST_ACTIVITY]: new Date(at).toISOString() });
    } catch (err) {
      if (isConflict(err)) return;
      this.recordActivity(hash, at);
      this.o.logger.debug({ pod: pod.name, err: (err as Error).message }, 'activity not written; retrying at the next flush');
    }
  }

  /**
   * Ends the sessions of claims that failed here without an answer but landed after all (their
   * client got a 503 and never the id, so the pod would otherwise wait out the idle timeout) and
   * of claims whose delivery was never confirmed (the replica that made one died before its
   * client got the id), and deletes claimed pods that carry no valid session (a hand edit, a
   * foreign tool) or can no longer serve the one they carry (worker restarted or pod failed: the
   * session is lost).
   */
  private async sweepOrphans(): Promise<void> {
    for (const [hash, since] of this.unanswered) {
      const pod = this.o.sessions.get(hash);
      if (this.o.now() - since > UNANSWERED_TTL_MS) {
        this.unanswered.delete(hash);
      } else if (pod && await this.endOrphan(pod, 'ended the session of a claim whose answer was lost')) {
        this.unanswered.delete(hash);
      }
    }
    for (const name of this.o.cache.claimed()) {
      const pod = this.o.cache.view(name);
      if (!pod) continue;
      const hash = pod.labels[SESSION_LABEL] ?? '';
      const valid = HASH_SHAPE.test(hash) && epoch(pod.annotations[CLAIMED_AT]) > 0;
      if (valid && canServe(pod)) {
        if (this.undelivered(pod, hash)) await this.endOrphan(pod, 'ended a claim whose delivery was never confirmed');
        continue;
      }
      try {
        await this.o.api.deletePod(pod.name, pod.uid, pod.resourceVersion);
        this.o.metrics.sessionsEnded.inc({ pool: pod.labels[POOL_LABEL] ?? '', reason: 'orphan' });
        this.o.events.ended(pod, valid ? hash : undefined, 'orphan');
        this.o.logger.warn({ pod: pod.name }, 'deleted a claimed pod without a valid session');
      } catch (err) {
        if (!isConflict(err)) this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'cannot delete orphan pod');
      }
    }
  }

  /**
   * A claim writes last-activity equal to claimed-at, and its delivery (confirm) or any traffic
   * moves it past: a claim whose activity never moved within the bound was never delivered.
   */
  private undelivered(pod: PodInfo, hash: string): boolean {
    const claimedAt = epoch(pod.annotations[CLAIMED_AT]);
    if (epoch(pod.annotations[LAST_ACTIVITY]) > claimedAt || (this.pendingActivity.get(hash) ?? 0) > claimedAt) return false;
    return this.o.now() - claimedAt > this.o.undeliveredMs;
  }

  /** Ends a session as `orphan`, conditional on the pod's version as seen. Resolves whether it ended. */
  private async endOrphan(pod: PodInfo, message: string): Promise<boolean> {
    const ended = await this.o.end(sessionOf(pod, this.o.workerPort), 'orphan').catch(() => false);
    if (ended) {
      this.o.metrics.sessionsEnded.inc({ pool: pod.labels[POOL_LABEL] ?? '', reason: 'orphan' });
      this.o.logger.warn({ session: (pod.labels[SESSION_LABEL] ?? '').slice(0, 12), pod: pod.name }, message);
    }
    return ended;
  }

  private async probe(retryMs: number): Promise<void> {
    this.probing = true;
    let answered: boolean;
    try {
      await this.o.api.ping();
      answered = true;
    } catch (err) {
      answered = statusOf(err) !== undefined;
      if (!answered) this.o.logger.debug({ err: (err as Error).message }, 'the API server still does not answer');
    }
    this.o.reachable(answered);
    if (answered || this.stopped) {
      this.probing = false;
      return;
    }
    this.probeTimer = setTimeout(() => void this.probe(Math.min(retryMs * 2, MAX_RETRY_MS)), retryMs);
    this.probeTimer.unref();
  }
}
