/**
 * What the pool logic needs of the API server, in its own small shapes: the adapter in
 * client.ts implements it over @kubernetes/client-node, and unit tests fake it.
 */
/** What the pool logic knows of a pod. */
export interface PodInfo {
  name: string;
  uid: string;
  resourceVersion: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  phase: string;
  ready: boolean;
  /** Epoch ms the Ready condition last turned true, if it is true. */
  readySince: number | undefined;
  createdAt: number;
  podIP: string | undefined;
  deleting: boolean;
  /** Epoch ms a container of the pod last exited, if one ever did (it was restarted in place). */
  restartedAt: number | undefined;
}

/** What the pool logic knows of a Deployment that may be a pool. */
export interface DeploymentInfo {
  name: string;
  uid: string;
  resourceVersion: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  /** spec.replicas. */
  replicas: number;
  /** spec.selector.matchLabels (matchExpressions are not read: a pool's selector is plain labels). */
  selector: Readonly<Record<string, string>>;
  templateLabels: Readonly<Record<string, string>>;
  deleting: boolean;
}

export interface WatchHandlers<T> {
  upsert(object: T): void;
  remove(object: T): void;
  /** The informer is (again) in step with the API server: its first list or a resumed watch. */
  synced(): void;
  /** The informer lost the API server; it retries by itself after `retryInMs`. */
  broken(err: unknown, retryInMs: number): void;
}

export type PodWatchHandlers = WatchHandlers<PodInfo>;

export interface Watch {
  stop(): Promise<void>;
}

export interface KubeApi {
  watchPods(labelSelector: string, handlers: PodWatchHandlers): Watch;
  watchDeployments(labelSelector: string, handlers: WatchHandlers<DeploymentInfo>): Watch;
  /**
   * Merge patch carrying `resourceVersion`, so a stale version fails with 409. Returns the pod
   * as the API server stored it.
   */
  patchPod(name: string, resourceVersion: string | undefined, labels: Record<string, string | null>, annotations: Record<string, string | null>): Promise<PodInfo>;
  /** Deletes with preconditions (uid always, resourceVersion when given). */
  deletePod(name: string, uid: string, resourceVersion?: string): Promise<void>;
  /**
   * Sets a Deployment's replicas through its scale subresource, conditional on `resourceVersion`
   * (the Deployment's as seen) when given: 409 when it changed since.
   */
  scaleDeployment(name: string, replicas: number, resourceVersion?: string): Promise<void>;
  /** The cheapest request that tells whether the API server answers (a list of at most one pool Deployment). */
  ping(): Promise<void>;
  /** Writes a core/v1 Event about a pod or a Deployment (what `kubectl describe` shows). */
  createEvent(event: KubeEvent): Promise<void>;
}

export interface KubeEvent {
  object: { kind: 'Pod' | 'Deployment'; name: string; uid: string };
  reason: string;
  message: string;
  type: 'Normal' | 'Warning';
  /** The controller replica that reports it. */
  replica: string;
}

/** An API answer that means "this object is not what you thought": stale version, gone, failed test. */
export function isConflict(err: unknown): boolean {
  const code = statusOf(err);
  return code === 409 || code === 404 || code === 422;
}

/** The error code of a request that waited too long for a connection and was never sent. */
export const QUEUED = 'EQUEUED';

/** Whether the request was never sent (no connection to the API server came free in time). */
export function isQueued(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === QUEUED;
}

/** The HTTP status of an API error, or undefined for transport errors. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code ?? (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}
