export interface BackendChoice {
  backend: 'kubernetes' | 'local';
  reason: string;
}

export interface Surroundings {
  /** A service account token is mounted and KUBERNETES_SERVICE_HOST is set. */
  inCluster: boolean;
  /** Path of a kubeconfig that exists ($KUBECONFIG or ~/.kube/config), if any. */
  kubeconfig: string | undefined;
}

/** `BACKEND=auto`: a cluster when one is reachable by the usual means, else local processes. */
export function chooseBackend(setting: 'auto' | 'kubernetes' | 'local', around: Surroundings): BackendChoice {
  if (setting !== 'auto') return { backend: setting, reason: `BACKEND=${setting}` };
  if (around.inCluster) return { backend: 'kubernetes', reason: 'running in a cluster (service account mounted)' };
  if (around.kubeconfig) return { backend: 'kubernetes', reason: `kubeconfig found at ${around.kubeconfig}` };
  return { backend: 'local', reason: 'no cluster service account and no kubeconfig' };
}
