/**
 * An in-memory API server for the kubernetes backend's unit tests (see FakeApi).
 */
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import { ClaimQueue } from '../../controller/src/pool/claim-queue.js';
import {
  KubePool, POOL_LABEL, type DeploymentInfo, type KubeApi, type KubeEvent, type KubePoolOptions, type PodInfo, type PodWatchHandlers, type WatchHandlers,
} from '../../controller/src/pool/kubernetes/index.js';

export class ApiError extends Error {
  constructor(readonly code: number) {
    super(`HTTP ${code}`);
  }
}

/** A pool Deployment as a test wants it: the pool label on it, its template and its selector. */
export function poolDeployment(pool: string, name = `${pool}-worker`, annotations: Record<string, string> = {}): DeploymentInfo {
  const labels = { [POOL_LABEL]: pool, assigned: 'not_assigned' };
  return {
    name, uid: `uid-${name}`, resourceVersion: '1', labels: { [POOL_LABEL]: pool }, annotations, replicas: 0,
    selector: labels, templateLabels: labels, deleting: false,
  };
}

/**
 * An in-memory API server for pods and pool Deployments: resourceVersions, conditional merge
 * patches (409 when stale), preconditioned deletes, and pod watch events delivered on demand so
 * a test decides when the informer "sees" a change. Deployment changes (a test's or a scale
 * write) reach the Deployment watch on their own, a microtask later.
 */
export class FakeApi implements KubeApi {
  pods = new Map<string, PodInfo>();
  handlers!: PodWatchHandlers;
  deployments = new Map<string, DeploymentInfo>([['chatbot-worker', poolDeployment('chatbot')]]);
  deploymentHandlers: WatchHandlers<DeploymentInfo> | undefined;
  version = 100;
  patches = 0;
  /** Scale writes, as `deployment=replicas`. */
  scales: string[] = [];
  events: KubeEvent[] = [];
  failEvents = false;
  /** Reads of the Deployment get no answer (a hung API server). */
  down = false;
  /** Writes that happen "elsewhere" just before our next patch lands, to provoke conflicts. */
  beforePatch: ((name: string) => void) | undefined;
  /** Runs once a patch is stored; throwing from it loses the answer of a write that landed. */
  afterPatch: ((name: string) => void) | undefined;

  /** The replicas of the shipped pool's Deployment. */
  get scaled(): number | undefined {
    return this.deployments.get('chatbot-worker')?.replicas;
  }

  /** Creates or changes a Deployment, as an operator would; the watch shows it. */
  putDeployment(d: DeploymentInfo): void {
    const next = { ...d, resourceVersion: String(++this.version) };
    this.deployments.set(d.name, next);
    queueMicrotask(() => this.deploymentHandlers?.upsert(next));
  }

  deleteDeployment(name: string): void {
    const d = this.deployments.get(name);
    if (!d) return;
    this.deployments.delete(name);
    queueMicrotask(() => this.deploymentHandlers?.remove(d));
  }

  addWarm(name: string, ip: string, pool = 'chatbot'): PodInfo {
    const pod: PodInfo = {
      name, uid: `uid-${name}`, resourceVersion: String(++this.version), labels: { [POOL_LABEL]: pool, assigned: 'not_assigned' },
      annotations: {}, phase: 'Running', ready: true, readySince: 2000, createdAt: 1000, podIP: ip, deleting: false, restartedAt: undefined,
    };
    this.pods.set(name, pod);
    return pod;
  }

  sync(): void {
    for (const pod of this.pods.values()) this.handlers.upsert(pod);
    this.handlers.synced();
  }

  watchPods(_selector: string, handlers: PodWatchHandlers) {
    this.handlers = handlers;
    queueMicrotask(() => this.sync());
    return { stop: async () => undefined };
  }

  watchDeployments(_selector: string, handlers: WatchHandlers<DeploymentInfo>) {
    this.deploymentHandlers = handlers;
    queueMicrotask(() => {
      for (const d of this.deployments.values()) handlers.upsert(d);
      handlers.synced();
    });
    return { stop: async () => { this.deploymentHandlers = undefined; } };
  }

  async patchPod(name: string, rv: string | undefined, labels: Record<string, string | null>, annotations: Record<string, string | null>): Promise<PodInfo> {
    this.patches++;
    this.beforePatch?.(name);
    const pod = this.pods.get(name);
    if (!pod) throw new ApiError(404);
    if (rv !== undefined && rv !== pod.resourceVersion) throw new ApiError(409);
    const next: PodInfo = {
      ...pod,
      resourceVersion: String(++this.version),
      labels: { ...pod.labels, ...labels } as Record<string, string>,
      annotations: { ...pod.annotations, ...annotations } as Record<string, string>,
    };
    this.pods.set(name, next);
    this.afterPatch?.(name);
    return next;
  }

  async deletePod(name: string, uid: string, rv?: string): Promise<void> {
    const pod = this.pods.get(name);
    if (!pod) throw new ApiError(404);
    if (pod.uid !== uid || (rv !== undefined && rv !== pod.resourceVersion)) throw new ApiError(409);
    this.pods.delete(name);
  }

  async ping(): Promise<void> {
    if (this.down) throw Object.assign(new Error('kubernetes list cancelled'), { code: 'ETIMEDOUT' });
  }

  async scaleDeployment(name: string, replicas: number, resourceVersion?: string): Promise<void> {
    if (this.down) throw Object.assign(new Error('kubernetes patch cancelled'), { code: 'ETIMEDOUT' });
    const d = this.deployments.get(name);
    if (!d) throw new ApiError(404);
    if (resourceVersion !== undefined && resourceVersion !== d.resourceVersion) throw new ApiError(409);
    this.scales.push(`${name}=${replicas}`);
    this.putDeployment({ ...d, replicas });
  }

  async createEvent(event: KubeEvent): Promise<void> {
    if (this.failEvents) throw new ApiError(403);
    this.events.push(event);
  }
}

/** A started backend on `api`: pools of 3 pods by default, claim timeout `timeoutMs`, a fixed seed. */
export async function poolWith(api: FakeApi, timeoutMs = 200, options: Partial<KubePoolOptions> = {}) {
  const metrics = createMetrics();
  const pool = new KubePool({
    api,
    queue: new ClaimQueue({ timeoutMs, maxPending: 10, retryAfterS: () => 1 }),
    logger: createLogger('silent'),
    metrics,
    replica: 'test-replica',
    labelKey: 'assigned',
    minSize: 3,
    maxSize: 3,
    workerPort: 8080,
    activityFlushMs: 60_000,
    retryAfterS: 1,
    random: () => 0,
    ...options,
  });
  await pool.start();
  return { pool, metrics };
}
