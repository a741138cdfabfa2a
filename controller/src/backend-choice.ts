import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';

export interface BackendChoice {
  backend: 'kubernetes' | 'local';
  reason: string;
}

/** One kubeconfig file: its text, or why it could not be read. */
export interface KubeconfigFile {
  path: string;
  text?: string;
  error?: string;
}

export interface Surroundings {
  /** A service account token is mounted and KUBERNETES_SERVICE_HOST is set. */
  inCluster: boolean;
  /** The kubeconfig files that exist, in the order kubectl merges them. */
  kubeconfigs: readonly KubeconfigFile[];
}

/** Reads the kubeconfig files kubectl would: each one in $KUBECONFIG's list, else ~/.kube/config. */
export function readKubeconfigs(paths: readonly string[]): KubeconfigFile[] {
  return paths.filter((p) => existsSync(p)).map((path) => {
    try {
      return { path, text: readFileSync(path, 'utf8') };
    } catch (err) {
      return { path, error: (err as Error).message };
    }
  });
}

interface Named<T> {
  name?: unknown;
  context?: T;
  cluster?: T;
}

type Merged = { current?: string; contexts: Map<string, { cluster?: unknown }>; clusters: Map<string, { server?: unknown }> };

/** Merges as kubectl does: the first file to set a value, or to name a context or cluster, wins. */
function merge(files: readonly KubeconfigFile[]): Merged | string {
  const merged: Merged = { contexts: new Map(), clusters: new Map() };
  for (const file of files) {
    if (file.error !== undefined) return `${file.path} cannot be read: ${file.error}`;
    let doc: unknown;
    try {
      doc = parse(file.text ?? '');
    } catch (err) {
      return `${file.path} does not parse: ${(err as Error).message.split('\n')[0]}`;
    }
    if (doc === null || doc === undefined) continue;
    if (typeof doc !== 'object') return `${file.path} is not a kubeconfig`;
    const config = doc as { 'current-context'?: unknown; contexts?: unknown; clusters?: unknown };
    if (!merged.current && typeof config['current-context'] === 'string') merged.current = config['current-context'];
    for (const entry of Array.isArray(config.contexts) ? (config.contexts as Named<{ cluster?: unknown }>[]) : []) {
      if (typeof entry?.name === 'string' && !merged.contexts.has(entry.name)) merged.contexts.set(entry.name, entry.context ?? {});
    }
    for (const entry of Array.isArray(config.clusters) ? (config.clusters as Named<{ server?: unknown }>[]) : []) {
      if (typeof entry?.name === 'string' && !merged.clusters.has(entry.name)) merged.clusters.set(entry.name, entry.cluster ?? {});
    }
  }
  return merged;
}

/**
 * Whether the kubeconfig names a cluster to talk to: a current context whose cluster has a
 * server. Returns the server, or why not. A developer's machine often holds an empty or stale
 * kubeconfig, which must not send `BACKEND=auto` to a cluster that is not there.
 */
export function kubeconfigServer(files: readonly KubeconfigFile[]): { server: string; context: string } | { unusable: string } {
  const merged = merge(files);
  if (typeof merged === 'string') return { unusable: merged };
  const where = files.map((f) => f.path).join(', ');
  if (!merged.current) return { unusable: `${where} has no current-context` };
  const context = merged.contexts.get(merged.current);
  if (!context) return { unusable: `${where}: current context "${merged.current}" is not defined` };
  const cluster = typeof context.cluster === 'string' ? merged.clusters.get(context.cluster) : undefined;
  if (!cluster) return { unusable: `${where}: the cluster of context "${merged.current}" is not defined` };
  if (typeof cluster.server !== 'string' || cluster.server === '') {
    return { unusable: `${where}: the cluster of context "${merged.current}" has no server` };
  }
  return { server: cluster.server, context: merged.current };
}

/** `BACKEND=auto`: a cluster when one is reachable by the usual means, else local processes. */
export function chooseBackend(setting: 'auto' | 'kubernetes' | 'local', around: Surroundings): BackendChoice {
  if (setting !== 'auto') return { backend: setting, reason: `BACKEND=${setting}` };
  if (around.inCluster) return { backend: 'kubernetes', reason: 'running in a cluster (service account mounted)' };
  if (around.kubeconfigs.length === 0) return { backend: 'local', reason: 'no cluster service account and no kubeconfig' };
  const found = kubeconfigServer(around.kubeconfigs);
  if ('unusable' in found) {
    return { backend: 'local', reason: `the kubeconfig is not usable (${found.unusable}); BACKEND=kubernetes would fail` };
  }
  const where = around.kubeconfigs.map((f) => f.path).join(', ');
  return { backend: 'kubernetes', reason: `kubeconfig ${where}: context "${found.context}", server ${found.server}` };
}
