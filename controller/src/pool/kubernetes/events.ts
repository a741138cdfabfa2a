/**
 * Kubernetes Events on the pods the controller claims and ends, so `kubectl describe pod` tells
 * an operator what happened to a pod and why. They name the pool and the session hash prefix,
 * never the session id. Best effort: a failed write is logged at debug (and counted with every
 * API request), never fails what it reports on.
 */
import type { Logger } from '../../log.js';
import type { KubeApi, PodEvent } from './api.js';

type Pod = { name: string; uid: string };

export class PodEvents {
  constructor(
    private readonly api: KubeApi,
    private readonly logger: Logger,
    private readonly replica: string,
    private readonly pool: string,
  ) {}

  claimed(pod: Pod, hash: string): void {
    this.write(pod, 'Claimed', 'Normal', `pool ${this.pool}: claimed for session ${hash.slice(0, 12)} by ${this.replica}`);
  }

  ended(pod: Pod, hash: string | undefined, reason: string): void {
    const session = hash ? `session ${hash.slice(0, 12)}` : 'a claim without a valid session';
    this.write(pod, 'Ended', 'Normal', `pool ${this.pool}: ${session} ended (${reason}) by ${this.replica}`);
  }

  lost(pod: Pod, hash: string, why: string): void {
    this.write(pod, 'Lost', 'Warning', `pool ${this.pool}: session ${hash.slice(0, 12)} lost (${why})`);
  }

  private write(pod: Pod, reason: string, type: PodEvent['type'], message: string): void {
    this.api.createEvent({ pod: { name: pod.name, uid: pod.uid }, reason, type, message, replica: this.replica }).catch((err: unknown) => {
      this.logger.debug({ pod: pod.name, reason, err: (err as Error).message }, 'event not written');
    });
  }
}
