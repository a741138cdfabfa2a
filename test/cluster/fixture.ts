/**
 * A namespace with the pool Deployment of the pool `chatbot` (replicas 0: the controller sets
 * them), the controller's ServiceAccount bound to its Role, and a kubeconfig from that
 * ServiceAccount's token, plus helpers to start controller replicas against it, to add more
 * pools and to look at the pools' pods.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startController, type Controller } from '../integration/harness.js';
import { isAlreadyExists, isNotFound, Kube, serviceAccountKubeconfig, type ObjectMeta } from './kube.js';
import { parseAllDocuments } from 'yaml';
import { kubeconfigPath, repoRoot } from './paths.js';
import { waitUntil } from './wait.js';

/** The pool Deployment's name; its pool is POOL_NAME. */
export const POOL = 'chatbot-worker';
export const POOL_NAME = 'chatbot';
export const POOL_LABEL = 'warmpool.dev/pool';
const SA = 'warmpool-controller';

export interface Pod {
  metadata: ObjectMeta & { annotations?: Record<string, string> };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    /** The node agent writes `process://<pid>` as the containerID of a running container. */
    containerStatuses?: { containerID?: string }[];
  };
}

/**
 * The controller's Role exactly as `k8s/rbac.yaml` ships it, so the cluster tests hold the
 * backend to the permissions operators deploy.
 */
function controllerRules(): unknown[] {
  return (parseAllDocuments(readFileSync(join(repoRoot, 'k8s/rbac.yaml'), 'utf8'))
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string }; rules?: unknown[] })
    .find((d) => d.kind === 'Role' && d.metadata?.name === SA)?.rules) as unknown[];
}

/**
 * The admission policy of `k8s/claim-guard.yaml` (cluster-scoped, so created once per cluster):
 * the ReplicaSet controller may not delete a claimed pool pod from a stale cache.
 */
async function installClaimGuard(kube: Kube): Promise<void> {
  const docs = parseAllDocuments(readFileSync(join(repoRoot, 'k8s/claim-guard.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string });
  for (const doc of docs) {
    const plural = doc.kind === 'ValidatingAdmissionPolicy' ? 'validatingadmissionpolicies' : 'validatingadmissionpolicybindings';
    await kube.create(`/apis/admissionregistration.k8s.io/v1/${plural}`, doc).catch((err: unknown) => {
      if (!isAlreadyExists(err)) throw err;
    });
  }
}

export const isReady = (p: Pod): boolean =>
  p.status?.phase === 'Running' && !p.metadata.deletionTimestamp && !!p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

export const hashOf = (token: string): string => createHash('sha256').update(token).digest('hex').slice(0, 40);

/**
 * A pool Deployment as an operator writes one: the pool label on it, its selector and its pod
 * template (with the free label), the reference worker. Every pool's pods also carry
 * `app.kubernetes.io/name: chatbot-worker`.
 */
export function poolDeployment(name: string, pool: string, workerEnv: Record<string, string> = {}, annotations: Record<string, string> = {}) {
  const labels = { 'app.kubernetes.io/name': POOL, [POOL_LABEL]: pool, assigned: 'not_assigned' };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { 'app.kubernetes.io/name': POOL, [POOL_LABEL]: pool }, annotations },
    spec: {
      replicas: 0,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 5,
          automountServiceAccountToken: false,
          containers: [{
            name: 'worker',
            image: 'warmpool/chatbot-worker:dev',
            ports: [{ name: 'http', containerPort: 8080 }],
            env: Object.entries({ PORT: '8080', MODEL_LOAD_DELAY_MS: '300', ...workerEnv }).map(([k, value]) => ({ name: k, value })),
            readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1, failureThreshold: 3 },
          }],
        },
      },
    },
  };
}

/** Label and taint of the cluster's hollow Nodes (the node agent's --hollow mode). */
const HOLLOW = 'warmpool.dev/hollow';

/** The pool Deployment with its pods on hollow Nodes: Running and Ready with no process (scale tests). */
export function hollowed<D extends ReturnType<typeof poolDeployment>>(deployment: D): D {
  const spec = { ...deployment.spec.template.spec, nodeSelector: { [HOLLOW]: 'true' }, tolerations: [{ key: HOLLOW, operator: 'Equal', value: 'true', effect: 'NoSchedule' }] };
  return { ...deployment, spec: { ...deployment.spec, template: { ...deployment.spec.template, spec } } };
}

export interface FixtureOptions {
  /** The pool's pods go to hollow Nodes. */
  hollow?: boolean;
}

/**
 * Each replica's log goes to .artifacts/cluster-logs/<namespace>/<replica>.log, so a failed
 * run can be read after the fact (run-tests.sh prints their warnings when a test fails).
 */
function saveLogs(ns: string, started: [string, Controller][]): void {
  const dir = join(repoRoot, '.artifacts', 'cluster-logs', ns);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  started.forEach(([name, c], i) => writeFileSync(join(dir, `${String(i).padStart(2, '0')}-${name}.log`), c.output.join('\n') + '\n'));
}

export async function poolFixture(ns: string, workerEnv: Record<string, string> = {}, options: FixtureOptions = {}) {
  const kube = Kube.fromKubeconfig(kubeconfigPath);
  const dir = mkdtempSync(join(tmpdir(), 'warmpool-backend-'));
  const podsPath = `/api/v1/namespaces/${ns}/pods`;
  const deploymentPath = `/apis/apps/v1/namespaces/${ns}/deployments/${POOL}`;
  const running: Controller[] = [];
  /** Every replica started here, by name, for its log at teardown. */
  const started: [string, Controller][] = [];

  await installClaimGuard(kube);
  await kube.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }).catch((err: unknown) => {
    if (!isAlreadyExists(err)) throw err;
  });
  await waitUntil('the default ServiceAccount exists', () => kube.get(`/api/v1/namespaces/${ns}/serviceaccounts/default`));
  await kube.create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: SA } });
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: SA }, rules: controllerRules(),
  });
  await kube.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: SA },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: SA },
    subjects: [{ kind: 'ServiceAccount', name: SA, namespace: ns }],
  });
  const deployment = poolDeployment(POOL, POOL_NAME, workerEnv);
  await kube.create(`/apis/apps/v1/namespaces/${ns}/deployments`, options.hollow ? hollowed(deployment) : deployment);
  const saKubeconfig = join(dir, 'kubeconfig');
  writeFileSync(saKubeconfig, await serviceAccountKubeconfig(kube, ns, SA));

  const pods = async (selector: string): Promise<Pod[]> =>
    (await kube.get<{ items: Pod[] }>(`${podsPath}?labelSelector=${encodeURIComponent(selector)}`)).items.filter((p) => !p.metadata.deletionTimestamp);
  const claimed = () => pods(`app.kubernetes.io/name=${POOL},assigned=assigned`);

  return {
    kube,
    ns,
    podsPath,
    deploymentPath,
    saKubeconfig,
    running,
    pods,
    claimed,
    /** At least `n` warm Ready pods of the pool `pool` (default: the pool chatbot), else undefined. */
    async warmReady(n: number, pool = POOL_NAME): Promise<Pod[] | undefined> {
      const ready = (await pods(`${POOL_LABEL}=${pool},assigned=not_assigned`)).filter(isReady);
      return ready.length >= n ? ready : undefined;
    },
    async podOf(token: string): Promise<Pod | undefined> {
      return (await claimed()).find((p) => p.metadata.labels?.['warmpool.dev/session'] === hashOf(token));
    },
    /** Starts a replica as a local process with the ServiceAccount kubeconfig and waits until it is ready. */
    async controller(name: string, env: Record<string, string> = {}): Promise<Controller> {
      const c = await startController({
        BACKEND: 'kubernetes',
        KUBECONFIG: saKubeconfig,
        NAMESPACE: ns,
        POD_NAME: name,
        POOL_SIZE: '3',
        CLAIM_TIMEOUT_MS: '15000',
        ACTIVITY_FLUSH_S: '0.5',
        // Every test client is 127.0.0.1: the per-client creation rate is tested in the integration tier.
        SESSION_CREATE_RATE: '0',
        LOG_LEVEL: 'info',
        ...env,
      });
      running.push(c);
      started.push([name, c]);
      await waitUntil(`${name} is ready`, async () => ((await fetch(`${c.admin}/readyz`)).status === 200 ? true : undefined), 60_000);
      return c;
    },
    async stopAll(): Promise<void> {
      await Promise.all(running.splice(0).map((c) => c.stop()));
    },
    async teardown(): Promise<void> {
      await Promise.all(running.splice(0).map((c) => c.stop()));
      saveLogs(ns, started);
      await kube.delete(`/api/v1/namespaces/${ns}`).catch(() => undefined);
      await waitUntil('the namespace is gone', () => kube.get(`/api/v1/namespaces/${ns}`).then(() => undefined, (err: unknown) => (isNotFound(err) ? true : Promise.reject(err))), 120_000).catch(() => undefined);
      kube.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type PoolFixture = Awaited<ReturnType<typeof poolFixture>>;
