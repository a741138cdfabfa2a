/**
 * The only module that imports @kubernetes/client-node. It turns the library's objects into the
 * small shapes the pool logic needs and back, so a unit test can fake this interface instead of
 * an API server. It also gives the library what it lacks: after an error the informer stops
 * watching for good, so here it restarts with capped exponential backoff; and a request past its
 * deadline is cancelled (its socket destroyed), not merely abandoned, so a hung API server
 * cannot pile up sockets.
 */
import https from 'node:https';
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  ListWatch,
  Observable,
  PatchStrategy,
  ServerConfiguration,
  Watch as LibraryWatch,
  createConfiguration,
  makeInformer,
  setHeaderOptions,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type SecurityAuthentication,
  type Informer,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { QUEUED, statusOf, type DeploymentInfo, type KubeApi, type KubeEvent, type PodInfo, type PodWatchHandlers, type Watch, type WatchHandlers } from './api.js';
import { toDeploymentInfo, toPodInfo, type PodObject } from './convert.js';
import { POOL_LABEL } from './labels.js';
import { Slots } from './slots.js';

export interface KubeClientOptions {
  namespace: string;
  /** Counts every request by verb and status code (the metric warmpool_kube_requests_total). */
  count: (verb: string, code: string) => void;
  /** Longest wait for one API request, so a hung API server fails claims instead of hanging them. */
  requestTimeoutMs?: number;
  maxBackoffMs?: number;
  /** Open connections to the API server for requests (the watch has its own). */
  maxSockets?: number;
}

/**
 * The library builds a new https.Agent for every request (`KubeConfig.createAgent`), so each
 * API call pays a TLS handshake: `npm run bench` measured a claim at ~7x a bare PATCH because of
 * it. This keeps the library's authentication (token files are still re-read) but sends every
 * request through one keep-alive agent made from the first agent's TLS options.
 */
function keepAliveAuth(kc: KubeConfig, maxSockets: number): SecurityAuthentication {
  let agent: https.Agent | undefined;
  return {
    getName: () => 'warmpool-keepalive',
    async applySecurityAuthentication(context: RequestContext) {
      await kc.applySecurityAuthentication(context);
      const fresh = context.getAgent();
      if (!(fresh instanceof https.Agent)) return;
      agent ??= new https.Agent({ ...fresh.options, keepAlive: true, maxSockets, maxTotalSockets: maxSockets });
      context.setAgent(agent);
    },
  };
}

/**
 * Per-request options that hand the request an AbortSignal: node-fetch then destroys the
 * request and its socket when the signal fires, instead of leaving it open on the agent.
 */
function cancelledBy(signal: AbortSignal): CallOptions {
  return {
    middleware: [{
      pre: (context: RequestContext) => {
        context.setSignal(signal);
        return new Observable(Promise.resolve(context));
      },
      post: (response) => new Observable(Promise.resolve(response)),
    }],
    middlewareMergeStrategy: 'append',
  };
}

type CallOptions = ConfigurationOptions<ObservableMiddleware>;

/**
 * A pod as the informer keeps it: what toPodInfo reads and what the informer's own cache needs
 * (namespace, name, resourceVersion). A whole pod is several KiB of specs and statuses nobody
 * here reads; a slim one keeps a cached pod within about 2 KiB of heap (`npm run bench`, part
 * scale), and its labels and annotations are shared with the pod cache's view.
 */
type SlimPod = KubernetesObject & PodObject;

export function slimPod(pod: V1Pod): SlimPod {
  const m = pod.metadata ?? {};
  const s = pod.status;
  return {
    metadata: {
      name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion, labels: m.labels, annotations: m.annotations,
      creationTimestamp: m.creationTimestamp, ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    ...(s ? {
      status: {
        phase: s.phase,
        podIP: s.podIP,
        conditions: s.conditions?.filter((c) => c.type === 'Ready').map((c) => ({ type: c.type, status: c.status, lastTransitionTime: c.lastTransitionTime })),
        containerStatuses: s.containerStatuses?.filter((c) => c.lastState?.terminated).map((c) => ({ lastState: { terminated: { finishedAt: c.lastState?.terminated?.finishedAt } } })),
      },
    } : {}),
  };
}

/** The library's watch, handing on slim pods (the informer keeps what it is handed). */
class SlimPodWatch extends LibraryWatch {
  override watch(...[path, query, callback, done]: Parameters<LibraryWatch['watch']>): ReturnType<LibraryWatch['watch']> {
    return super.watch(path, query, (phase, object, raw) => callback(phase, phase === 'ERROR' || phase === 'BOOKMARK' ? object : slimPod(object as V1Pod), raw), done);
  }
}

/**
 * Runs the library's informer and brings it back after every error (the library stops for
 * good after one). Each failed start doubles the wait (capped); a start that reaches the API
 * server resets it.
 */
function keepWatching<K extends KubernetesObject, T>(informer: Informer<K>, convert: (object: K) => T, handlers: WatchHandlers<T>, maxBackoffMs: number): Watch {
  informer.on('add', (object) => handlers.upsert(convert(object)));
  informer.on('update', (object) => handlers.upsert(convert(object)));
  informer.on('delete', (object) => handlers.remove(convert(object)));
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
}

class KubeClient implements KubeApi {
  private readonly core: CoreV1Api;
  private readonly apps: AppsV1Api;
  private readonly namespace: string;
  private readonly timeoutMs: number;
  /** As many as the agent's sockets, so no request waits for one inside the agent, on its deadline. */
  private readonly slots: Slots;
  private readonly maxSockets: number;

  constructor(private readonly kc: KubeConfig, private readonly options: KubeClientOptions) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.maxSockets = options.maxSockets ?? 16;
    this.slots = new Slots(this.maxSockets);
    const configuration = createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: keepAliveAuth(kc, this.maxSockets) },
    });
    this.core = new CoreV1Api(configuration);
    this.apps = new AppsV1Api(configuration);
    this.namespace = options.namespace;
    this.timeoutMs = options.requestTimeoutMs ?? 5000;
  }

  watchPods(labelSelector: string, handlers: PodWatchHandlers): Watch {
    const { namespace } = this;
    const informer = new ListWatch<SlimPod>(
      `/api/v1/namespaces/${namespace}/pods`,
      new SlimPodWatch(this.kc),
      async (): Promise<KubernetesListObject<SlimPod>> => {
        const list = await this.call('list', (o) => this.core.listNamespacedPod({ namespace, labelSelector }, o));
        return { ...list, items: list.items.map(slimPod) };
      },
      false,
      labelSelector,
    );
    return keepWatching(informer, toPodInfo, handlers, this.options.maxBackoffMs ?? 30_000);
  }

  watchDeployments(labelSelector: string, handlers: WatchHandlers<DeploymentInfo>): Watch {
    const { namespace } = this;
    const informer = makeInformer<V1Deployment>(
      this.kc,
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      () => this.call('list', (o) => this.apps.listNamespacedDeployment({ namespace, labelSelector }, o)),
      labelSelector,
    );
    return keepWatching(informer, toDeploymentInfo, handlers, this.options.maxBackoffMs ?? 30_000);
  }

  async patchPod(name: string, resourceVersion: string | undefined, labels: Record<string, string | null>, annotations: Record<string, string | null>): Promise<PodInfo> {
    const body = { metadata: { ...(resourceVersion ? { resourceVersion } : {}), labels, annotations } };
    const pod = await this.call('patch', (o) => this.core.patchNamespacedPod({ name, namespace: this.namespace, body }, mergePatch(o)));
    return toPodInfo(pod);
  }

  async deletePod(name: string, uid: string, resourceVersion?: string): Promise<void> {
    const body = { preconditions: { uid, ...(resourceVersion ? { resourceVersion } : {}) } };
    await this.call('delete', (o) => this.core.deleteNamespacedPod({ name, namespace: this.namespace, body }, o));
  }

  async scaleDeployment(name: string, replicas: number, resourceVersion?: string): Promise<void> {
    const body = { ...(resourceVersion ? { metadata: { resourceVersion } } : {}), spec: { replicas } };
    await this.call('patch', (o) => this.apps.patchNamespacedDeploymentScale({ name, namespace: this.namespace, body }, mergePatch(o)));
  }

  async ping(): Promise<void> {
    await this.call('list', (o) => this.apps.listNamespacedDeployment({ namespace: this.namespace, labelSelector: POOL_LABEL, limit: 1 }, o));
  }

  async createEvent({ object, reason, message, type, replica }: KubeEvent): Promise<void> {
    const { namespace } = this;
    const now = new Date();
    const body = {
      metadata: { generateName: `${object.name}.` },
      involvedObject: { apiVersion: object.kind === 'Pod' ? 'v1' : 'apps/v1', kind: object.kind, namespace, name: object.name, uid: object.uid },
      reason,
      message,
      type,
      source: { component: 'warmpool-controller', host: replica },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    await this.call('create', (o) => this.core.createNamespacedEvent({ namespace, body }, o));
  }

  /** One request, cancelled at its deadline; counted by verb and status (`timeout` when cancelled). */
  /**
   * One request: it waits up to the request timeout for a connection (then fails QUEUED, never
   * sent), and from when it is sent up to the request timeout for the answer (then it is
   * cancelled, its socket destroyed).
   */
  private async call<T>(verb: string, run: (o: CallOptions) => Promise<T>): Promise<T> {
    if (!(await this.slots.acquire(this.timeoutMs))) {
      this.options.count(verb, 'queued');
      throw Object.assign(new Error(`kubernetes ${verb} not sent: all ${this.maxSockets} connections busy for ${this.timeoutMs} ms`), { code: QUEUED });
    }
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.timeoutMs);
    try {
      const result = await run(cancelledBy(deadline.signal));
      this.options.count(verb, '2xx');
      return result;
    } catch (err) {
      if (deadline.signal.aborted) {
        this.options.count(verb, 'timeout');
        throw Object.assign(new Error(`kubernetes ${verb} cancelled after ${this.timeoutMs} ms`, { cause: err }), { code: 'ETIMEDOUT' });
      }
      this.options.count(verb, String(statusOf(err) ?? 'error'));
      throw err;
    } finally {
      clearTimeout(timer);
      this.slots.release();
    }
  }
}

const mergePatch = (o: CallOptions): CallOptions => setHeaderOptions('Content-Type', PatchStrategy.MergePatch, o);

export function createKubeApi(kc: KubeConfig, options: KubeClientOptions): KubeApi {
  return new KubeClient(kc, options);
}

/** Loads credentials the standard way: in-cluster service account, else KUBECONFIG or ~/.kube/config. */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}
