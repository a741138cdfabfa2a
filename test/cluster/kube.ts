/**
 * A small Kubernetes API client for the cluster harness (node agent, tests, cluster:up).
 *
 * The harness needs exact control over a few calls that kubelet makes (status writes
 * carrying a uid, deletes with preconditions, list-then-watch from a resourceVersion), and
 * it must not share code paths with the product's client, which is what the tests check.
 * So it speaks HTTP to the API server directly, from a kubeconfig that `cluster.ts` writes
 * as JSON (YAML is a superset of JSON, so kubectl and @kubernetes/client-node read the same file).
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';

export interface Credentials {
  server: string;
  ca: string;
  cert?: string;
  key?: string;
  token?: string;
}

interface KubeconfigFile {
  'current-context': string;
  contexts: { name: string; context: { cluster: string; user: string } }[];
  clusters: { name: string; cluster: { server: string; 'certificate-authority-data': string } }[];
  users: {
    name: string;
    user: { 'client-certificate-data'?: string; 'client-key-data'?: string; token?: string };
  }[];
}

const b64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

/** Reads a kubeconfig written by cluster.ts (JSON, data embedded, current context). */
export function loadKubeconfig(path: string): Credentials {
  const cfg = JSON.parse(readFileSync(path, 'utf8')) as KubeconfigFile;
  const ctx = cfg.contexts.find((c) => c.name === cfg['current-context']);
  const cluster = cfg.clusters.find((c) => c.name === ctx?.context.cluster);
  const user = cfg.users.find((u) => u.name === ctx?.context.user);
  if (!ctx || !cluster || !user) throw new Error(`${path}: current context is incomplete`);
  const u = user.user;
  return {
    server: cluster.cluster.server,
    ca: b64(cluster.cluster['certificate-authority-data']),
    ...(u['client-certificate-data'] ? { cert: b64(u['client-certificate-data']) } : {}),
    ...(u['client-key-data'] ? { key: b64(u['client-key-data']) } : {}),
    ...(u.token ? { token: u.token } : {}),
  };
}

/** A kubeconfig as cluster.ts writes it: one cluster, one user, one context. */
export function kubeconfigJson(
  server: string,
  caPem: string,
  user: { certPem: string; keyPem: string } | { token: string },
  name = 'warmpool',
): string {
  const enc = (s: string): string => Buffer.from(s).toString('base64');
  const userEntry =
    'token' in user
      ? { token: user.token }
      : { 'client-certificate-data': enc(user.certPem), 'client-key-data': enc(user.keyPem) };
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': name,
      clusters: [{ name, cluster: { server, 'certificate-authority-data': enc(caPem) } }],
      users: [{ name, user: userEntry }],
      contexts: [{ name, context: { cluster: name, user: name } }],
    },
    null,
    2,
  )}\n`;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  ownerReferences?: { kind: string; name: string; uid: string }[];
}

export type Json = Record<string, unknown>;

export class Kube {
  private readonly agent: https.Agent;
  private readonly base: URL;

  /**
   * `maxSockets` bounds the open connections (none by default); `impersonate` sends every request
   * as that user (the credentials must be allowed to impersonate, as the admin's are).
   */
  constructor(private readonly creds: Credentials, private readonly options: { maxSockets?: number; impersonate?: string } = {}) {
    this.base = new URL(creds.server);
    this.agent = new https.Agent({
      keepAlive: true,
      ...(options.maxSockets ? { maxSockets: options.maxSockets } : {}),
      ca: creds.ca,
      ...(creds.cert ? { cert: creds.cert } : {}),
      ...(creds.key ? { key: creds.key } : {}),
    });
  }

  static fromKubeconfig(path: string, options: { maxSockets?: number } = {}): Kube {
    return new Kube(loadKubeconfig(path), options);
  }

  /** The same credentials acting as `user`. */
  as(user: string): Kube {
    return new Kube(this.creds, { ...this.options, impersonate: user });
  }

  get server(): URL {
    return this.base;
  }

  get caPem(): string {
    return this.creds.ca;
  }

  close(): void {
    this.agent.destroy();
  }

  private open(method: string, path: string, body: string | undefined, contentType: string | undefined, signal?: AbortSignal) {
    const headers: Record<string, string | number> = { Accept: 'application/json' };
    if (contentType) headers['Content-Type'] = contentType;
    // Explicit, because Node sends a DELETE body neither chunked nor with a length: the API
    // server would read it as the next request on the kept-alive connection.
    if (body !== undefined) headers['Content-Length'] = Buffer.byteLength(body);
    if (this.creds.token) headers.Authorization = `Bearer ${this.creds.token}`;
    if (this.options.impersonate) headers['Impersonate-User'] = this.options.impersonate;
    return https.request({
      agent: this.agent,
      host: this.base.hostname,
      port: this.base.port,
      method,
      path,
      headers,
      ...(signal ? { signal } : {}),
    });
  }

  /** One request; resolves to the decoded body, rejects with ApiError on a non-2xx status. */
  request<T = Json>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = this.open(method, path, payload, payload === undefined ? undefined : contentType);
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : {};
          } catch {
            // not JSON (e.g. /readyz): handed back as text
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(parsed as T);
          const st = (typeof parsed === 'object' && parsed ? parsed : {}) as { reason?: string; message?: string };
          reject(new ApiError(status, st.reason ?? '', `${method} ${path}: ${status} ${st.message ?? text}`));
        });
      });
      req.end(payload);
    });
  }

  get<T = Json>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  create<T = Json>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  mergePatch<T = Json>(path: string, patch: unknown): Promise<T> {
    return this.request<T>('PATCH', path, patch, 'application/merge-patch+json');
  }

  delete<T = Json>(path: string, options?: Json): Promise<T> {
    return this.request<T>('DELETE', path, options ? { kind: 'DeleteOptions', apiVersion: 'v1', ...options } : undefined);
  }

  /**
   * Streams watch events of `path` (a collection URL with its query, without `watch`) from
   * `resourceVersion` until the server ends the stream, the signal aborts, or an error.
   * Resolves when the stream ends; the caller decides whether to relist.
   */
  watch<T>(path: string, resourceVersion: string, onEvent: (ev: WatchEvent<T>) => void, signal: AbortSignal): Promise<void> {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${path}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(resourceVersion)}`;
    return new Promise<void>((resolve, reject) => {
      const req = this.open('GET', url, undefined, undefined, signal);
      req.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new ApiError(res.statusCode ?? 0, '', `watch ${path}: ${res.statusCode}`));
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            try {
              onEvent(JSON.parse(line) as WatchEvent<T>);
            } catch (err) {
              req.destroy();
              reject(err);
              return;
            }
          }
        });
        res.on('end', resolve);
        res.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
      });
      req.end();
    });
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof ApiError && err.code === 404;
export const isConflict = (err: unknown): boolean => err instanceof ApiError && err.code === 409;
export const isAlreadyExists = (err: unknown): boolean => err instanceof ApiError && err.code === 409 && err.reason === 'AlreadyExists';

/**
 * A kubeconfig (JSON text) for a ServiceAccount, with a token from the TokenRequest API.
 * A client run with it gets exactly what RBAC grants that ServiceAccount, which is how the
 * tests hold a process to the roles in k8s/.
 */
export async function serviceAccountKubeconfig(admin: Kube, namespace: string, name: string, expirationSeconds = 3600): Promise<string> {
  const res = await admin.create<{ status: { token: string } }>(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds },
  });
  return kubeconfigJson(admin.server.origin, admin.caPem, { token: res.status.token }, `${namespace}-${name}`);
}
