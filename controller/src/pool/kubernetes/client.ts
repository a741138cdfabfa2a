/**
 * The only module that imports @kubernetes/client-node. It turns the library's objects into the
 * small shapes the pool logic needs and back, so a unit test can fake this interface instead of
 * an API server. It also gives the library what it lacks: after an error the informer stops
 * watching for good, so here it restarts with capped exponential backoff. The library is used
 * for what it does well (kubeconfig, authentication, the watch); every request warmpool sends
 * itself goes through `send` below.
 */
import http from 'node:http';
import https from 'node:https';
import {
  HttpMethod,
  KubeConfig,
  ListWatch,
  RequestContext,
  Watch as LibraryWatch,
  makeInformer,
  type Informer,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { QUEUED, type DeploymentInfo, type KubeApi, type KubeEvent, type PodInfo, type PodWatchHandlers, type Watch, type WatchHandlers } from './api.js';
import { toDeploymentInfo, toPodInfo, type DeploymentObject, type PodObject } from './convert.js';
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

/** What a request needs to be let in: the user's headers (token, basic auth, impersonation) and the kept-alive agent. */
interface Credentials {
  headers: Record<string, string>;
  agent: http.Agent;
}

/**
 * The library's authentication, applied at most once a second, and one keep-alive agent. The
 * library reads the CA and client certificate files and builds a new agent for every request
 * (`KubeConfig.applySecurityAuthentication`): each call would pay a new connection and TLS
 * handshake (`npm run bench` measured a claim at ~7x a bare PATCH because of it) and file reads.
 * Tokens the library refreshes (service account token files, exec plugins) are picked up within
 * the second; the agent keeps the first TLS options.
 */
function credentialsOf(kc: KubeConfig, server: URL, maxSockets: number): () => Promise<Credentials> {
  let current: Credentials | undefined;
  let readAt = 0;
  let reading: Promise<Credentials> | undefined;
  const read = async (): Promise<Credentials> => {
    const context = new RequestContext(server.href, HttpMethod.GET);
    await kc.applySecurityAuthentication(context);
    const fresh = context.getAgent();
    const options = { keepAlive: true, maxSockets, maxTotalSockets: maxSockets };
    const agent = current?.agent ?? (fresh instanceof https.Agent ? new https.Agent({ ...fresh.options, ...options }) : new http.Agent(options));
    current = { headers: context.getHeaders(), agent };
    readAt = performance.now();
    return current;
  };
  return () => {
    if (current && performance.now() - readAt < 1000) return Promise.resolve(current);
    reading ??= read().finally(() => {
      reading = undefined;
    });
    return reading;
  };
}

/** An answer of the API server other than 2xx; `code` is its HTTP status (what statusOf reads). */
export class KubeStatusError extends Error {
  constructor(readonly code: number, readonly reason: string | undefined, message: string) {
    super(message);
    this.name = 'KubeStatusError';
  }
}

/** What the API server says about a failed request: its Status object's reason and message, when the body is one. */
function statusError(method: string, path: string, code: number, text: string): KubeStatusError {
  let status: { reason?: unknown; message?: unknown } = {};
  try {
    status = JSON.parse(text) as typeof status;
  } catch {
    // Not a Status object (a proxy's page, an empty body): the code says enough.
  }
  const reason = typeof status.reason === 'string' ? status.reason : undefined;
  const message = typeof status.message === 'string' ? status.message : text.slice(0, 200);
  return new KubeStatusError(code, reason, `kubernetes ${method} ${path}: ${code}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`);
}

const MERGE_PATCH = 'application/merge-patch+json';

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
  private readonly server: URL;
  private readonly credentials: () => Promise<Credentials>;
  private readonly namespace: string;
  private readonly timeoutMs: number;
  /** As many as the agent's sockets, so no request waits for one inside the agent, on its deadline. */
  private readonly slots: Slots;
  private readonly maxSockets: number;

  constructor(private readonly kc: KubeConfig, private readonly options: KubeClientOptions) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.maxSockets = options.maxSockets ?? 16;
    this.slots = new Slots(this.maxSockets);
    this.credentials = credentialsOf(kc, this.server, this.maxSockets);
    this.namespace = options.namespace;
    this.timeoutMs = options.requestTimeoutMs ?? 5000;
  }

  private get podsPath(): string {
    return `/api/v1/namespaces/${this.namespace}/pods`;
  }

  private get deploymentsPath(): string {
    return `/apis/apps/v1/namespaces/${this.namespace}/deployments`;
  }

  watchPods(labelSelector: string, handlers: PodWatchHandlers): Watch {
    const informer = new ListWatch<SlimPod>(
      this.podsPath,
      new SlimPodWatch(this.kc),
      async (): Promise<KubernetesListObject<SlimPod>> => {
        const list = await this.send<KubernetesListObject<V1Pod>>('list', HttpMethod.GET, `${this.podsPath}?labelSelector=${encodeURIComponent(labelSelector)}`);
        return { ...list, items: list.items.map(slimPod) };
      },
      false,
      labelSelector,
    );
    return keepWatching(informer, toPodInfo, handlers, this.options.maxBackoffMs ?? 30_000);
  }

  watchDeployments(labelSelector: string, handlers: WatchHandlers<DeploymentInfo>): Watch {
    const informer = makeInformer<V1Deployment>(
      this.kc,
      this.deploymentsPath,
      () => this.send<KubernetesListObject<V1Deployment>>('list', HttpMethod.GET, `${this.deploymentsPath}?labelSelector=${encodeURIComponent(labelSelector)}`),
      labelSelector,
    );
    return keepWatching(informer, (d: DeploymentObject) => toDeploymentInfo(d), handlers, this.options.maxBackoffMs ?? 30_000);
  }

  async patchPod(name: string, resourceVersion: string | undefined, labels: Record<string, string | null>, annotations: Record<string, string | null>): Promise<PodInfo> {
    const body = { metadata: { ...(resourceVersion ? { resourceVersion } : {}), labels, annotations } };
    return toPodInfo(await this.send<PodObject>('patch', HttpMethod.PATCH, `${this.podsPath}/${name}`, body, MERGE_PATCH));
  }

  async deletePod(name: string, uid: string, resourceVersion?: string): Promise<void> {
    const body = { preconditions: { uid, ...(resourceVersion ? { resourceVersion } : {}) } };
    await this.send('delete', HttpMethod.DELETE, `${this.podsPath}/${name}`, body);
  }

  async scaleDeployment(name: string, replicas: number, resourceVersion?: string): Promise<void> {
    const body = { ...(resourceVersion ? { metadata: { resourceVersion } } : {}), spec: { replicas } };
    await this.send('patch', HttpMethod.PATCH, `${this.deploymentsPath}/${name}/scale`, body, MERGE_PATCH);
  }

  async ping(): Promise<void> {
    await this.send('list', HttpMethod.GET, `${this.deploymentsPath}?labelSelector=${encodeURIComponent(POOL_LABEL)}&limit=1`);
  }

  async createEvent({ object, reason, message, type, replica }: KubeEvent): Promise<void> {
    const { namespace } = this;
    const now = new Date().toISOString();
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
    await this.send('create', HttpMethod.POST, `/api/v1/namespaces/${namespace}/events`, body);
  }

  /**
   * One request: it waits up to the request timeout for a connection (then fails QUEUED, never
   * sent), and from when it is sent up to the request timeout for the answer (then it is
   * cancelled, its socket destroyed, not merely abandoned, so a hung API server cannot pile up
   * sockets). Counted by verb and status (`queued`, `timeout`). The answer is plain JSON: the
   * library's request path turns every answer into its model classes first, a third of a
   * claim's client-side CPU (`npm run bench`, part scale), for fields nobody here reads.
   */
  private async send<T = unknown>(verb: string, method: HttpMethod, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    if (!(await this.slots.acquire(this.timeoutMs))) {
      this.options.count(verb, 'queued');
      throw Object.assign(new Error(`kubernetes ${verb} not sent: all ${this.maxSockets} connections busy for ${this.timeoutMs} ms`), { code: QUEUED });
    }
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.timeoutMs);
    try {
      const result = await this.exchange<T>(method, path, body, contentType, deadline.signal);
      this.options.count(verb, '2xx');
      return result;
    } catch (err) {
      if (deadline.signal.aborted) {
        this.options.count(verb, 'timeout');
        throw Object.assign(new Error(`kubernetes ${verb} cancelled after ${this.timeoutMs} ms`, { cause: err }), { code: 'ETIMEDOUT' });
      }
      this.options.count(verb, err instanceof KubeStatusError ? String(err.code) : 'error');
      throw err;
    } finally {
      clearTimeout(timer);
      this.slots.release();
    }
  }

  private async exchange<T>(method: HttpMethod, path: string, body: unknown, contentType: string, signal: AbortSignal): Promise<T> {
    // The server may carry a path (a proxy such as Rancher's serves clusters under one): keep it.
    const url = new URL(this.server.pathname.replace(/\/+$/, '') + path, this.server);
    const { headers: user, agent } = await this.credentials();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = { ...user, accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = contentType;
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const send = url.protocol === 'https:' ? https.request : http.request;
    return new Promise<T>((resolve, reject) => {
      const req = send(url, { method, headers, agent, signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const code = res.statusCode ?? 0;
          if (code < 200 || code >= 300) return reject(statusError(method, path, code, text));
          try {
            resolve((text ? JSON.parse(text) : undefined) as T);
          } catch (err) {
            reject(err);
          }
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }
}

export function createKubeApi(kc: KubeConfig, options: KubeClientOptions): KubeApi {
  return new KubeClient(kc, options);
}

/** Loads credentials the standard way: in-cluster service account, else KUBECONFIG or ~/.kube/config. */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}
