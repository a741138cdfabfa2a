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

export interface PodWatchHandlers {
  upsert(pod: PodInfo): void;
  remove(pod: PodInfo): void;
  /** The informer is (again) in step with the API server: its first list or a resumed watch. */
  synced(): void;
  /** The informer lost the API server; it retries by itself after `retryInMs`. */
  broken(err: unknown, retryInMs: number): void;
}

export interface KubeApi {
  watchPods(labelSelector: string, handlers: PodWatchHandlers): { stop(): Promise<void> };
  /**
   * Merge patch carrying `resourceVersion`, so a stale version fails with 409. Returns the pod
   * as the API server stored it.
   */
  patchPod(name: string, resourceVersion: string | undefined, labels: Record<string, string | null>, annotations: Record<string, string | null>): Promise<PodInfo>;
  /** Deletes with preconditions (uid always, resourceVersion when given). */
  deletePod(name: string, uid: string, resourceVersion?: string): Promise<void>;
  /** The Deployment's desired replicas, or undefined when there is no such Deployment. */
  readReplicas(name: string): Promise<number | undefined>;
  scaleDeployment(name: string, replicas: number): Promise<void>;
  /** Writes a core/v1 Event about a pod (what `kubectl describe pod` shows). */
  createEvent(event: PodEvent): Promise<void>;
}

export interface PodEvent {
  pod: { name: string; uid: string };
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

/** The HTTP status of an API error, or undefined for transport errors. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code ?? (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}
