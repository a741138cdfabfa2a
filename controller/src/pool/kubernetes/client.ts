/**
 * The only module that imports @kubernetes/client-node. It turns the library's objects into the
 * small shapes the pool logic needs and back, so a unit test can fake this interface instead of
 * an API server. It also gives the informer what the library lacks: after an error the library
 * stops watching for good, so here it restarts with capped exponential backoff.
 */
import https from 'node:https';
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  ServerConfiguration,
  createConfiguration,
  makeInformer,
  setHeaderOptions,
  type RequestContext,
  type SecurityAuthentication,
  type V1Pod,
} from '@kubernetes/client-node';

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
  deploymentExists(name: string): Promise<boolean>;
  scaleDeployment(name: string, replicas: number): Promise<void>;
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

function toPodInfo(pod: V1Pod): PodInfo {
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  const isReady = ready?.status === 'True';
  const readyAt = ready?.lastTransitionTime ? new Date(ready.lastTransitionTime).getTime() : undefined;
  return {
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    resourceVersion: pod.metadata?.resourceVersion ?? '',
    labels: pod.metadata?.labels ?? {},
    annotations: pod.metadata?.annotations ?? {},
    phase: pod.status?.phase ?? 'Unknown',
    ready: isReady,
    readySince: isReady ? readyAt : undefined,
    createdAt: pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).getTime() : 0,
    podIP: pod.status?.podIP || undefined,
    deleting: Boolean(pod.metadata?.deletionTimestamp),
    restartedAt: Math.max(0, ...(pod.status?.containerStatuses ?? []).map((c) => {
      const at = c.lastState?.terminated?.finishedAt;
      return at ? new Date(at).getTime() : 0;
    })) || undefined,
  };
}

export interface KubeClientOptions {
  namespace: string;
  /** Counts every request by verb and status code (the metric warmpool_kube_requests_total). */
  count: (verb: string, code: string) => void;
  /** Longest wait for one API request, so a hung API server fails claims instead of hanging them. */
  requestTimeoutMs?: number;
  maxBackoffMs?: number;
}

/**
 * The library builds a new https.Agent for every request (`KubeConfig.createAgent`), so each
 * API call pays a TLS handshake: `npm run bench` measured a claim at ~7x a bare PATCH because of
 * it. This keeps the library's authentication (token files are still re-read) but sends every
 * request through one keep-alive agent made from the first agent's TLS options.
 */
function keepAliveAuth(kc: KubeConfig): SecurityAuthentication {
  let agent: https.Agent | undefined;
  return {
    getName: () => 'warmpool-keepalive',
    async applySecurityAuthentication(context: RequestContext) {
      await kc.applySecurityAuthentication(context);
      const fresh = context.getAgent();
      if (!(fresh instanceof https.Agent)) return;
      agent ??= new https.Agent({ ...fresh.options, keepAlive: true, maxSockets: 64 });
      context.setAgent(agent);
    },
  };
}


export function createKubeApi(kc: KubeConfig, options: KubeClientOptions): KubeApi {
  const { namespace, count } = options;
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: keepAliveAuth(kc) },
  });
  const core = new CoreV1Api(configuration);
  const apps = new AppsV1Api(configuration);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;

  async function call<T>(verb: string, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`kubernetes ${verb} timed out`), { code: 'ETIMEDOUT' })), timeoutMs);
    });
    try {
      const result = await Promise.race([run(), timeout]);
      count(verb, '2xx');
      return result;
    } catch (err) {
      count(verb, String(statusOf(err) ?? 'error'));
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    watchPods(labelSelector, handlers) {
      const informer = makeInformer<V1Pod>(
        kc,
        `/api/v1/namespaces/${namespace}/pods`,
        () => call('list', () => core.listNamespacedPod({ namespace, labelSelector })),
        labelSelector,
      );
      informer.on('add', (pod) => handlers.upsert(toPodInfo(pod)));
      informer.on('update', (pod) => handlers.upsert(toPodInfo(pod)));
      informer.on('delete', (pod) => handlers.remove(toPodInfo(pod)));

      // The library stops for good after an error; this loop brings it back. Each failed start
      // doubles the wait (capped); a start that reaches the API server resets it.
      let stopped = false;
      let backoffMs = 250;
      let retry: NodeJS.Timeout | undefined;
      let failedThisRound = false;
      const restartLater = (err: unknown) => {
        if (stopped || retry) return;
        handlers.broken(err, backoffMs);
        retry = setTimeout(() => {
          retry = undefined;
          void run();
        }, backoffMs);
        backoffMs = Math.min(maxBackoffMs, backoffMs * 2);
      };
      informer.on('error', (err: unknown) => {
        failedThisRound = true;
        restartLater(err);
      });
      const run = async () => {
        failedThisRound = false;
        try {
          await informer.start();
        } catch (err) {
          failedThisRound = true;
          restartLater(err);
          return;
        }
        if (!failedThisRound && !stopped) {
          backoffMs = 250;
          handlers.synced();
        }
      };
      void run();
      return {
        async stop() {
          stopped = true;
          clearTimeout(retry);
          await informer.stop();
        },
      };
    },

    async patchPod(name, resourceVersion, labels, annotations) {
      const body = { metadata: { ...(resourceVersion ? { resourceVersion } : {}), labels, annotations } };
      const pod = await call('patch', () => core.patchNamespacedPod({ name, namespace, body }, mergePatch));
      return toPodInfo(pod);
    },

    async deletePod(name, uid, resourceVersion) {
      await call('delete', () => core.deleteNamespacedPod({
        name,
        namespace,
        body: { preconditions: { uid, ...(resourceVersion ? { resourceVersion } : {}) } },
      }));
    },

    async deploymentExists(name) {
      try {
        await call('get', () => apps.readNamespacedDeployment({ name, namespace }));
        return true;
      } catch (err) {
        if (statusOf(err) === 404) return false;
        throw err;
      }
    },

    async scaleDeployment(name, replicas) {
      await call('patch', () => apps.patchNamespacedDeploymentScale({ name, namespace, body: { spec: { replicas } } }, mergePatch));
    },
  };
}

/** Loads credentials the standard way: in-cluster service account, else KUBECONFIG or ~/.kube/config. */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}
