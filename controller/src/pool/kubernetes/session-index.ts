/**
 * Sessions by hash, as the pods show them, kept up to date by the pod cache one pod at a time.
 * It reports each session that ends or is lost once, and lets a lookup wait, bounded, for a
 * session another replica has just claimed.
 */
import type { GoneListener } from '../types.js';
import type { PodInfo } from './api.js';
import { canServe, CLIENT_LABEL, ENDED, restartedSinceClaim, SESSION_LABEL, TAKEN, POOL_LABEL } from './labels.js';

export class SessionIndex {
  private readonly bySession = new Map<string, PodInfo>();
  /** Sessions per client label, kept with bySession, so admission counts without a scan. */
  private readonly byClient = new Map<string, number>();
  /** Sessions already reported gone, so a pod's later events do not report them twice. */
  private readonly reported = new Set<string>();
  /** Lookups waiting for the watch to show a session, by session hash. */
  private readonly awaited = new Map<string, Set<() => void>>();
  private readonly listeners: GoneListener[] = [];

  constructor(
    private readonly labelKey: string,
    /** Called with the pod of each session seen lost (not ended), for its Event. */
    private readonly onLost?: (pod: PodInfo, hash: string, why: string) => void,
  ) {}

  get(hash: string): PodInfo | undefined {
    return this.bySession.get(hash);
  }

  values(): Iterable<PodInfo> {
    return this.bySession.values();
  }

  /** Sessions indexed now, or those of one client. */
  count(client?: string): number {
    return client === undefined ? this.bySession.size : this.byClient.get(client) ?? 0;
  }

  private put(hash: string, pod: PodInfo): void {
    this.drop(hash);
    this.bySession.set(hash, pod);
    const client = pod.labels[CLIENT_LABEL] ?? '';
    this.byClient.set(client, (this.byClient.get(client) ?? 0) + 1);
  }

  private drop(hash: string): void {
    const pod = this.bySession.get(hash);
    if (!pod) return;
    this.bySession.delete(hash);
    const client = pod.labels[CLIENT_LABEL] ?? '';
    const left = (this.byClient.get(client) ?? 1) - 1;
    if (left > 0) this.byClient.set(client, left);
    else this.byClient.delete(client);
  }

  /** For tests: the hashes indexed now. */
  hashes(): Iterable<string> {
    return this.bySession.keys();
  }

  onGone(listener: GoneListener): void {
    this.listeners.push(listener);
  }

  /**
   * A pod's latest view (`deleting` once it is gone). `before` is its previous view: a session
   * label that changed under a pod leaves the index with it.
   */
  seen(pod: PodInfo, before: PodInfo | undefined): void {
    const hash = pod.labels[SESSION_LABEL];
    const old = before?.labels[SESSION_LABEL];
    if (old && old !== hash && this.bySession.get(old)?.uid === pod.uid) this.drop(old);
    if (!hash || pod.labels[this.labelKey] !== TAKEN) return;
    if (!pod.deleting && canServe(pod)) {
      this.put(hash, pod);
      this.wake(hash);
      return;
    }
    if (this.bySession.get(hash)?.uid === pod.uid) this.drop(hash);
    if (this.reported.has(hash)) return;
    this.reported.add(hash);
    const ended = pod.annotations[ENDED];
    const why = ended ? `ended (${ended}) by another replica` : pod.deleting ? 'pod deleted' : restartedSinceClaim(pod) ? 'worker restarted' : `pod ${pod.phase}`;
    if (!ended) this.onLost?.(pod, hash, why);
    for (const listener of this.listeners) listener({ hash, worker: pod.name, pool: pod.labels[POOL_LABEL] ?? '' }, ended ? 'ended' : 'lost', why);
    this.wake(hash);
  }

  /** The pod will send no more events: its session needs no guard against double reports. */
  left(pod: PodInfo): void {
    const hash = pod.labels[SESSION_LABEL];
    if (hash) this.reported.delete(hash);
  }

  /** This replica is ending the session: out of the index, and no report of its end. */
  ending(hash: string): PodInfo | undefined {
    const pod = this.bySession.get(hash);
    if (!pod) return undefined;
    this.drop(hash);
    this.reported.add(hash);
    return pod;
  }

  /** The end did not happen: the session is back as `current` (the cache's view of its pod) shows it. */
  restore(hash: string, current: PodInfo | undefined): void {
    this.reported.delete(hash);
    if (current) this.seen(current, undefined);
  }

  /** Waits until the session shows up or is reported gone, or `ms` pass. */
  async wait(hash: string, ms: number): Promise<void> {
    if (this.bySession.has(hash) || this.reported.has(hash)) return;
    await new Promise<void>((resolve) => {
      const waiters = this.awaited.get(hash) ?? new Set<() => void>();
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0) this.awaited.delete(hash);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      waiters.add(wake);
      this.awaited.set(hash, waiters);
    });
  }

  private wake(hash: string): void {
    for (const wake of [...(this.awaited.get(hash) ?? [])]) wake();
  }
}
