/**
 * An in-memory API server for the kubernetes backend's unit tests (see FakeApi).
 */
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import { ClaimQueue } from '../../controller/src/pool/claim-queue.js';
import { KubePool, type KubeApi, type KubePoolOptions, type PodEvent, type PodInfo, type PodWatchHandlers } from '../../controller/src/pool/kubernetes/index.js';

export class ApiError extends Error {
  constructor(readonly code: number) {
    super(`HTTP ${code}`);
  }
}

/**
 * An in-memory API server for pods: resourceVersions, conditional merge patches (409 when
 * stale), preconditioned deletes, and watch events delivered on demand so a test decides when
 * the informer "sees" a change.
 */
export class FakeApi implements KubeApi {
  pods = new Map<string, PodInfo>();
  handlers!: PodWatchHandlers;
  version = 100;
  patches = 0;
  scaled: number | undefined;
  /** The pool Deployment exists. */
  deployment = true;
  events: PodEvent[] = [];
  failEvents = false;
  /** Reads of the Deployment get no answer (a hung API server). */
  down = false;
  /** Writes that happen "elsewhere" just before our next patch lands, to provoke conflicts. */
  beforePatch: ((name: string) => void) | undefined;
  /** Runs once a patch is stored; throwing from it loses the answer of a write that landed. */
  afterPatch: ((name: string) => void) | undefined;

  addWarm(name: string, ip: string): PodInfo {
    const pod: PodInfo = {
      name, uid: `uid-${name}`, resourceVersion: String(++this.version), labels: { 'app.kubernetes.io/name': 'chatbot-worker', assigned: 'not_assigned' },
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

  async readReplicas(): Promise<number | undefined> {
    if (this.down) throw Object.assign(new Error('kubernetes get cancelled'), { code: 'ETIMEDOUT' });
    return this.deployment ? this.scaled ?? 0 : undefined;
  }

  async scaleDeployment(_name: string, replicas: number): Promise<void> {
    this.scaled = replicas;
  }

  async createEvent(event: PodEvent): Promise<void> {
    if (this.failEvents) throw new ApiError(403);
    this.events.push(event);
  }
}

/** A started pool on `api`: 3 pods wanted, claim timeout `timeoutMs`, a fixed seed. */
export async function poolWith(api: FakeApi, timeoutMs = 200, options: Partial<KubePoolOptions> = {}) {
  const metrics = createMetrics();
  const pool = new KubePool({
    api,
    queue: new ClaimQueue({ timeoutMs, maxPending: 10, retryAfterS: () => 1 }),
    logger: createLogger('silent'),
    metrics,
    replica: 'test-replica',
    selector: { 'app.kubernetes.io/name': 'chatbot-worker' },
    labelKey: 'assigned',
    deployment: 'chatbot-worker',
    poolSize: 3,
    workerPort: 8080,
    activityFlushMs: 60_000,
    retryAfterS: 1,
    random: () => 0,
    ...options,
  });
  await pool.start();
  return { pool, metrics };
}
