/**
 * Kubernetes Events on the pods the controller claims and ends, so `kubectl describe pod` tells
 * an operator what happened to a pod and why, and on pool Deployments it cannot use as they are
 * or resizes, so `kubectl describe deployment` says what to fix and why the pool has its size. Pod Events name the pool and the session
 * hash prefix, never the session id. Best effort: a failed write is logged at debug (and counted
 * with every API request), never fails what it reports on.
 *
 * An Event is an API server write like the claim itself, so pod Events are paced (a bucket of
 * POD_EVENTS_PER_MINUTE per replica, refilled at as many a minute): a quiet pool gets an Event on
 * every pod it claims and ends, a busy one keeps its claims at one write each and gets a sample,
 * the rest counted in warmpool_events_skipped_total. The pod's own annotations (claimed-at,
 * claimed-by, ended) say the same for every pod.
 */
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { RateLimiter } from '../../sessions/rate-limit.js';
import type { KubeApi, KubeEvent } from './api.js';
import { POOL_LABEL } from './labels.js';

const POD_EVENTS_PER_MINUTE = 60;

type Pod = { name: string; uid: string; labels: Readonly<Record<string, string>> };

export class PodEvents {
  private readonly paced: RateLimiter;

  constructor(
    private readonly api: KubeApi,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly replica: string,
    now: () => number = Date.now,
  ) {
    this.paced = new RateLimiter(POD_EVENTS_PER_MINUTE, now);
  }

  claimed(pod: Pod, hash: string): void {
    this.write(pod, 'Claimed', 'Normal', `claimed for session ${hash.slice(0, 12)} by ${this.replica}`);
  }

  ended(pod: Pod, hash: string | undefined, reason: string): void {
    const session = hash ? `session ${hash.slice(0, 12)}` : 'a claim without a valid session';
    this.write(pod, 'Ended', 'Normal', `${session} ended (${reason}) by ${this.replica}`);
  }

  lost(pod: Pod, hash: string, why: string): void {
    this.write(pod, 'Lost', 'Warning', `session ${hash.slice(0, 12)} lost (${why})`);
  }

  /** A warning on a pool Deployment: `reason` is InvalidPool or InvalidPoolSettings. */
  deployment(deployment: { name: string; uid: string }, reason: string, message: string): void {
    this.send({ object: { kind: 'Deployment', ...deployment }, reason, type: 'Warning', message, replica: this.replica });
  }

  /** A pool Deployment this replica resized, with the figures that caused it. */
  resized(deployment: { name: string; uid: string }, message: string): void {
    this.send({ object: { kind: 'Deployment', ...deployment }, reason: 'PoolResized', type: 'Normal', message, replica: this.replica });
  }

  private write(pod: Pod, reason: string, type: KubeEvent['type'], message: string): void {
    const pool = pod.labels[POOL_LABEL] ?? '';
    if (this.paced.take('pods') > 0) {
      this.metrics.eventsSkipped.inc({ pool, reason });
      return;
    }
    this.send({ object: { kind: 'Pod', name: pod.name, uid: pod.uid }, reason, type, message: `pool ${pool}: ${message}`, replica: this.replica });
  }

  private send(event: KubeEvent): void {
    this.api.createEvent(event).catch((err: unknown) => {
      this.logger.debug({ object: event.object.name, reason: event.reason, err: (err as Error).message }, 'event not written');
    });
  }
}
