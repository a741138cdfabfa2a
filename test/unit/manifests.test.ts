/**
 * The manifests in k8s/, read as `kubectl apply -k k8s/` would take them: kustomization.yaml's
 * resources, its namespace and image overrides. No cluster is needed: these are the rules the
 * design and the security baseline set, checked on the objects themselves.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { CONFIG_KEYS, parseConfig } from '../../controller/src/config.js';
import { settingsOf, type PoolSettings } from '../../controller/src/pool/kubernetes/pools.js';
import { SIZING_DEFAULTS } from '../../controller/src/pool/sizing.js';

const K8S = fileURLToPath(new URL('../../k8s/', import.meta.url));
const NAMESPACE = 'warmpool';

type Labels = Record<string, string>;
interface Selector { matchLabels?: Labels; matchExpressions?: { key: string; operator: string; values?: string[] }[] }
interface Meta { name: string; namespace?: string; labels?: Labels }
interface Probe { httpGet?: { path: string; port: number | string }; tcpSocket?: unknown; exec?: unknown }
interface SecurityContext {
  runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; privileged?: boolean;
  allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean;
  capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type: string };
}
interface Container {
  name: string; image: string;
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string; optional?: boolean } }[];
  readinessProbe?: Probe; livenessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { cpu?: string; memory?: string } };
  securityContext?: SecurityContext;
}
interface PodSpec {
  containers: Container[]; initContainers?: Container[];
  serviceAccountName?: string; automountServiceAccountToken?: boolean;
  hostNetwork?: boolean; hostPID?: boolean; hostIPC?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: SecurityContext;
  topologySpreadConstraints?: unknown[]; affinity?: { podAntiAffinity?: unknown };
  volumes?: { name: string; emptyDir?: unknown }[];
}
interface K8sObject {
  apiVersion: string; kind: string; metadata: Meta;
  spec?: {
    // Deployments and budgets have a label selector, a Service a plain map.
    replicas?: number; selector?: Selector | Labels;
    strategy?: { type: string; rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string } };
    template?: { metadata: { labels: Labels }; spec: PodSpec };
    // Service
    type?: string; ports?: { port: number; targetPort?: number | string; protocol?: string }[];
    // PodDisruptionBudget
    minAvailable?: number | string;
    // NetworkPolicy (and Service/PDB selectors)
    podSelector?: Selector; policyTypes?: string[]; ingress?: IngressRule[];
  };
  // ConfigMap
  data?: Record<string, string>;
  // ServiceAccount
  automountServiceAccountToken?: boolean;
  // Role, RoleBinding
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}
interface IngressRule {
  from?: { podSelector?: Selector; namespaceSelector?: Selector; ipBlock?: unknown }[];
  ports?: { protocol?: string; port?: number | string }[];
}
interface Kustomization { namespace?: string; resources?: string[]; images?: { name: string; newName?: string; newTag?: string }[] }

function readYaml(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  for (const d of docs) assert.deepEqual(d.errors.map((e) => e.message), [], `${file} parses`);
  return docs.map((d) => d.toJS() as unknown).filter((o) => o !== null);
}

/** The objects a kustomization brings in (files and directory bases, recursively), and the files read. */
function resolve(dir: string): { kustomization: Kustomization; objects: K8sObject[]; files: string[] } {
  const [kustomization] = readYaml(path.join(dir, 'kustomization.yaml')) as [Kustomization];
  const objects: K8sObject[] = [];
  const files = [path.join(dir, 'kustomization.yaml')];
  for (const resource of kustomization.resources ?? []) {
    const p = path.join(dir, resource);
    assert.ok(existsSync(p), `resource ${resource} exists`);
    if (statSync(p).isDirectory()) {
      const base = resolve(p);
      objects.push(...base.objects);
      files.push(...base.files);
    } else {
      objects.push(...(readYaml(p) as K8sObject[]));
      files.push(p);
    }
  }
  return { kustomization, objects, files };
}

const { kustomization, objects, files } = resolve(K8S);
/** The second pool shipped as an example overlay, not applied by k8s/ itself. */
const secondPool = resolve(path.join(K8S, 'examples/second-pool'));

function find(kind: string, name: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0] as K8sObject;
}

const controller = find('Deployment', 'warmpool-controller');
const pool = find('Deployment', 'chatbot-worker');
const configMap = find('ConfigMap', 'warmpool-config');

function podSpec(d: K8sObject): PodSpec {
  const spec = d.spec?.template?.spec;
  assert.ok(spec, `${d.metadata.name} has a pod template`);
  return spec;
}

function onlyContainer(d: K8sObject): Container {
  const { containers } = podSpec(d);
  assert.equal(containers.length, 1, `${d.metadata.name} runs one container`);
  return containers[0] as Container;
}

function envValue(c: Container, name: string): string | undefined {
  return c.env?.find((e) => e.name === name)?.value;
}

/** A controller setting as the running controller sees it: its pod env, else the ConfigMap, else the default. */
function setting(name: keyof typeof CONFIG_KEYS): string {
  return envValue(onlyContainer(controller), name) ?? configMap.data?.[name] ?? CONFIG_KEYS[name].default;
}

function containerPort(c: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = c.ports?.find((p) => p.name === port);
  assert.ok(named, `${c.name} has a port named ${port}`);
  return named.containerPort;
}

function matches(selector: Selector | undefined, labels: Labels): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const inValues = has && (e.values ?? []).includes(labels[e.key] as string);
    const ok = { In: inValues, NotIn: !inValues, Exists: has, DoesNotExist: !has }[e.operator];
    assert.notEqual(ok, undefined, `selector operator ${e.operator} is known`);
    if (!ok) return false;
  }
  return true;
}

const POOL_LABEL = 'warmpool.dev/pool';
const poolLabelKey = setting('POOL_LABEL_KEY');
/** How the controller finds pool pods and pool Deployments: the pool label, whatever its value. */
const anyPool: Selector = { matchExpressions: [{ key: POOL_LABEL, operator: 'Exists' }] };

/** The rules a Deployment must follow to be the pool `name`, checked as the controller checks them. */
function assertPool(d: K8sObject, name: string): void {
  assert.equal(d.metadata.labels?.[POOL_LABEL], name, `${d.metadata.name} is labelled as the pool ${name}`);
  const warm = { [POOL_LABEL]: name, [poolLabelKey]: 'not_assigned' };
  const selector = d.spec?.selector as Selector;
  for (const [k, v] of Object.entries(warm)) {
    assert.equal(selector.matchLabels?.[k], v, `the selector includes ${k}=${v}, so a claimed pod leaves the ReplicaSet and pools never share pods`);
    assert.equal(d.spec?.template?.metadata.labels[k], v, `the pod template carries ${k}=${v}`);
  }
  assert.ok(matches(selector, d.spec?.template?.metadata.labels ?? {}), 'new pods are warm pool pods');
  const claimed = { ...(d.spec?.template?.metadata.labels ?? {}), [poolLabelKey]: 'assigned' };
  assert.ok(!matches(selector, claimed), 'a claimed pod no longer matches');
}

describe('k8s manifests', () => {
  test('when kustomization.yaml is resolved, then every manifest in k8s/ is one of its resources and every object lands in namespace warmpool', () => {
    assert.equal(kustomization.namespace, NAMESPACE);
    const onDisk = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(K8S, f)).sort();
    assert.deepEqual(onDisk.filter((f) => !files.includes(f)), [], 'no manifest is left out of the kustomization');
    for (const o of objects) {
      if (o.kind === 'Namespace') continue;
      assert.ok(o.metadata.namespace === undefined || o.metadata.namespace === NAMESPACE, `${o.kind} ${o.metadata.name} is in ${NAMESPACE}`);
    }
    const keys = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    assert.deepEqual(keys.filter((k, i) => keys.indexOf(k) !== i), [], 'no object is defined twice');
  });

  test('when the objects are listed, then the design\'s fixed names are there and nothing is cluster-wide but the namespace and the claim guard', () => {
    const expected = [
      'Namespace/warmpool', 'ServiceAccount/warmpool-controller', 'Role/warmpool-controller', 'RoleBinding/warmpool-controller',
      'ConfigMap/warmpool-config', 'Deployment/warmpool-controller', 'Service/warmpool', 'PodDisruptionBudget/warmpool-controller',
      'ServiceAccount/chatbot-worker', 'Deployment/chatbot-worker', 'NetworkPolicy/chatbot-worker', 'NetworkPolicy/warmpool-controller',
      'ValidatingAdmissionPolicy/warmpool-claimed-pods', 'ValidatingAdmissionPolicyBinding/warmpool-claimed-pods',
    ];
    assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), expected.sort());
    const pools = objects.filter((o) => o.kind === 'Deployment' && o.metadata.labels?.[POOL_LABEL] !== undefined);
    assert.deepEqual(pools.map((o) => o.metadata.name), ['chatbot-worker'], 'one pool is shipped');
  });

  test('when any object is read, then it carries the recommended labels with part-of warmpool', () => {
    for (const o of objects) {
      const labels = o.metadata.labels ?? {};
      assert.ok(labels['app.kubernetes.io/name'], `${o.kind} ${o.metadata.name} has app.kubernetes.io/name`);
      assert.equal(labels['app.kubernetes.io/part-of'], 'warmpool', `${o.kind} ${o.metadata.name} is part-of warmpool`);
    }
    for (const d of [controller, pool]) {
      assert.equal(d.spec?.template?.metadata.labels['app.kubernetes.io/part-of'], 'warmpool', `${d.metadata.name} pods are part-of warmpool`);
    }
  });

  for (const d of [...objects, ...secondPool.objects].filter((o) => o.spec?.template)) {
    test(`when the pod template of ${d.kind} ${d.metadata.name} is read, then it runs non-root, read-only, unprivileged, with RuntimeDefault seccomp and requests and limits`, () => {
      const spec = podSpec(d);
      const pod = spec.securityContext ?? {};
      assert.equal(pod.runAsNonRoot, true, 'runAsNonRoot');
      assert.ok((pod.runAsUser ?? 0) > 0, 'runAsUser is not root');
      assert.ok((pod.runAsGroup ?? 0) > 0, 'runAsGroup is not root');
      assert.equal(pod.seccompProfile?.type, 'RuntimeDefault');
      assert.ok(!spec.hostNetwork && !spec.hostPID && !spec.hostIPC, 'no host namespaces');
      for (const v of spec.volumes ?? []) assert.ok(v.emptyDir, `volume ${v.name} is an emptyDir`);
      const overridable = (kustomization.images ?? []).map((i) => i.name);
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
        const sc = c.securityContext ?? {};
        assert.equal(sc.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${c.name}: allowPrivilegeEscalation false`);
        assert.notEqual(sc.privileged, true, `${c.name}: not privileged`);
        assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${c.name}: drops ALL capabilities`);
        assert.deepEqual(sc.capabilities?.add ?? [], [], `${c.name}: adds no capability`);
        assert.notEqual(sc.runAsUser, 0, `${c.name}: does not run as root`);
        for (const kind of ['requests', 'limits'] as const) {
          assert.ok(c.resources?.[kind]?.cpu && c.resources[kind].memory, `${c.name}: ${kind} for cpu and memory`);
        }
        assert.ok(overridable.includes(c.image), `${c.name}: image ${c.image} is untagged and listed in kustomization images, so its tag can be overridden`);
      }
    });
  }

  test('when the Role is read, then its rules are exactly what the kubernetes backend uses, bound to the controller\'s ServiceAccount only', () => {
    const granted = (find('Role', 'warmpool-controller').rules ?? []).flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) =>
      r.verbs.flatMap((v) => (r.resourceNames ?? ['*']).map((n) => `${g}|${res}|${v}|${n}`)))));
    const wanted = [
      ...['get', 'list', 'watch', 'patch', 'delete'].map((v) => `|pods|${v}|*`),
      ...['get', 'list', 'watch'].map((v) => `apps|deployments|${v}|*`),
      ...['get', 'update', 'patch'].map((v) => `apps|deployments/scale|${v}|*`),
      ...['create', 'patch'].map((v) => `|events|${v}|*`),
    ];
    assert.deepEqual(granted.sort(), wanted.sort());
    const binding = find('RoleBinding', 'warmpool-controller');
    assert.deepEqual(binding.roleRef && { kind: binding.roleRef.kind, name: binding.roleRef.name }, { kind: 'Role', name: 'warmpool-controller' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'warmpool-controller', namespace: NAMESPACE }]);
    assert.equal(podSpec(controller).serviceAccountName, 'warmpool-controller');
    assert.equal(objects.filter((o) => /^(Cluster)?Role(Binding)?$/.test(o.kind)).length, 2, 'no other role or binding');
  });

  test('when the claim guard is read, then it refuses only the ReplicaSet controller, only the deletion of a claimed pool pod, under the label the ConfigMap names', () => {
    const policy = find('ValidatingAdmissionPolicy', 'warmpool-claimed-pods') as unknown as { spec: {
      failurePolicy: string;
      matchConstraints: { resourceRules: { apiGroups: string[]; operations: string[]; resources: string[] }[]; objectSelector: Selector };
      validations: { expression: string }[];
    } };
    const { matchConstraints: match, validations } = policy.spec;
    assert.deepEqual(match.resourceRules.map((r) => [r.apiGroups, r.operations, r.resources]), [[[''], ['DELETE'], ['pods']]]);
    const labelKey = configMap.data?.POOL_LABEL_KEY ?? 'assigned';
    assert.deepEqual(match.objectSelector.matchExpressions, [
      { key: POOL_LABEL, operator: 'Exists' },
      { key: labelKey, operator: 'In', values: ['assigned'] },
    ]);
    assert.deepEqual(validations.map((v) => v.expression), ["request.userInfo.username != 'system:serviceaccount:kube-system:replicaset-controller'"]);
    const binding = find('ValidatingAdmissionPolicyBinding', 'warmpool-claimed-pods') as unknown as { spec: { policyName: string; validationActions: string[] } };
    assert.deepEqual(binding.spec, { policyName: 'warmpool-claimed-pods', validationActions: ['Deny'] });
  });

  test('when the ConfigMap is read, then its keys are known settings whose values pass the controller\'s validation: BACKEND=kubernetes, the rest at their defaults', () => {
    const data = configMap.data ?? {};
    assert.deepEqual(Object.keys(data).filter((k) => !(k in CONFIG_KEYS)), [], 'no unknown key');
    assert.doesNotThrow(() => parseConfig(data), 'the values are valid');
    assert.equal(data.BACKEND, 'kubernetes');
    for (const [k, v] of Object.entries(data)) {
      if (k !== 'BACKEND') assert.equal(v, CONFIG_KEYS[k as keyof typeof CONFIG_KEYS].default, `${k} is at its default`);
    }
    assert.ok(Object.keys(data).length >= 10, 'the tunables are listed, so operators find them');
    for (const k of ['NAMESPACE', 'API_TOKENS', 'API_TOKENS_FILE']) assert.ok(!(k in data), `${k} does not come from the ConfigMap`);
  });

  test('when the controller Deployment is read, then it runs 2 spread replicas named by the downward API, configured from warmpool-config, probed on the admin port, with time to drain', () => {
    const spec = podSpec(controller);
    const c = onlyContainer(controller);
    assert.equal(controller.spec?.replicas, 2);
    assert.equal(controller.spec?.strategy?.rollingUpdate?.maxUnavailable, 0, 'a rollout never drops below 2 ready replicas');
    assert.ok(spec.topologySpreadConstraints?.length || spec.affinity?.podAntiAffinity, 'replicas are spread over nodes');
    assert.notEqual(spec.automountServiceAccountToken, false, 'the controller gets its ServiceAccount token');
    assert.equal(c.image, 'warmpool/controller');
    for (const [name, field] of [['POD_NAME', 'metadata.name'], ['NAMESPACE', 'metadata.namespace']]) {
      assert.equal(c.env?.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath, field, `${name} from ${field}`);
    }
    assert.equal(c.envFrom?.[0]?.configMapRef?.name, 'warmpool-config');
    assert.deepEqual(c.envFrom.slice(1).filter((e) => !e.secretRef?.optional), [], 'nothing else it reads is required to exist');
    assert.equal(containerPort(c, 'client'), Number(setting('PORT')));
    assert.equal(containerPort(c, 'admin'), Number(setting('ADMIN_PORT')));
    assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
    assert.equal(containerPort(c, c.readinessProbe.httpGet.port), Number(setting('ADMIN_PORT')), 'readiness on the admin port');
    assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
    assert.equal(containerPort(c, c.livenessProbe.httpGet.port), Number(setting('ADMIN_PORT')), 'liveness on the admin port');
    const drain = Number(setting('SHUTDOWN_TIMEOUT_S')) + (c.lifecycle?.preStop?.sleep?.seconds ?? 0);
    assert.ok((spec.terminationGracePeriodSeconds ?? 30) > drain, `terminationGracePeriodSeconds exceeds preStop + SHUTDOWN_TIMEOUT_S (${drain} s)`);
  });

  test('when the pool Deployment is read, then its selector and labels are the ones the controller claims by, and its size, port and probe agree with the configuration', () => {
    const spec = podSpec(pool);
    const c = onlyContainer(pool);
    assertPool(pool, 'chatbot');
    assert.deepEqual(pool.spec?.selector, { matchLabels: { 'app.kubernetes.io/name': 'chatbot-worker', [POOL_LABEL]: 'chatbot', assigned: 'not_assigned' } }, 'the design\'s labels');
    assert.ok(!matches(anyPool, controller.spec?.template?.metadata.labels ?? {}), 'controller pods are never taken for pool pods');
    assert.ok(!matches(anyPool, controller.metadata.labels ?? {}), 'the controller Deployment is no pool');
    assert.equal(pool.spec?.replicas, undefined, 'no replicas: the controller owns them, and an apply never changes them');
    assert.equal(pool.spec?.strategy?.rollingUpdate?.maxUnavailable, 0, 'a rollout never takes a warm pod away before its replacement is ready');
    assert.equal(spec.serviceAccountName, 'chatbot-worker', 'workers have an identity of their own, created in the same apply');
    assert.equal(find('ServiceAccount', 'chatbot-worker').automountServiceAccountToken, false, 'no token by default either');
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(c.image, 'warmpool/chatbot-worker');
    const port = Number(setting('WORKER_PORT'));
    assert.equal(envValue(c, 'HOST'), '0.0.0.0');
    assert.equal(envValue(c, 'PORT'), String(port));
    assert.deepEqual(c.ports?.map((p) => p.containerPort), [port]);
    assert.equal(c.readinessProbe?.httpGet?.path, '/healthz');
    assert.equal(containerPort(c, c.readinessProbe.httpGet.port), port);
    assert.equal(c.livenessProbe, undefined, 'no liveness probe: a restart would swap a session\'s conversation for an empty one');
  });

  test('when the Service and the PodDisruptionBudget are read, then the Service exposes the client port 8080 alone and both select the controller pods only', () => {
    const service = find('Service', 'warmpool');
    const c = onlyContainer(controller);
    const ports = service.spec?.ports ?? [];
    assert.equal(ports.length, 1, 'one port');
    assert.equal(ports[0]?.port, 8080);
    assert.equal(containerPort(c, ports[0]?.targetPort ?? 8080), Number(setting('PORT')), 'it targets the client port');
    assert.notEqual(service.spec?.type, 'NodePort');
    assert.notEqual(service.spec?.type, 'LoadBalancer');
    const controllerLabels = controller.spec?.template?.metadata.labels ?? {};
    const poolLabels = pool.spec?.template?.metadata.labels ?? {};
    assert.ok(matches({ matchLabels: service.spec?.selector as Labels }, controllerLabels), 'the Service selects the controller');
    assert.ok(!matches({ matchLabels: service.spec?.selector as Labels }, poolLabels), 'the Service never selects workers');
    const pdb = find('PodDisruptionBudget', 'warmpool-controller');
    assert.equal(pdb.spec?.minAvailable, 1);
    assert.ok(matches(pdb.spec?.selector as Selector, controllerLabels) && !matches(pdb.spec?.selector as Selector, poolLabels), 'the budget covers the controller only');
  });

  describe('network policies', () => {
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
    interface Source { namespace: string; labels: Labels }
    interface Target { labels: Labels; container: Container }

    /** Kubernetes' ingress semantics: a pod any Ingress policy selects takes only what one of them allows. */
    function allowed(from: Source | 'outside', to: Target, port: number): boolean {
      const selecting = policies.filter((p) => (p.spec?.policyTypes ?? ['Ingress']).includes('Ingress') && matches(p.spec?.podSelector, to.labels));
      if (selecting.length === 0) return true;
      return selecting.some((p) => (p.spec?.ingress ?? []).some((rule) => {
        const portOk = !rule.ports?.length || rule.ports.some((rp) => (rp.protocol ?? 'TCP') === 'TCP' && (rp.port === undefined || containerPort(to.container, rp.port) === port));
        const peerOk = !rule.from?.length || rule.from.some((peer) => {
          assert.equal(peer.ipBlock, undefined, 'ipBlock peers are not modelled here');
          if (from === 'outside') return false;
          const nsLabels = { 'kubernetes.io/metadata.name': from.namespace };
          const nsOk = peer.namespaceSelector ? matches(peer.namespaceSelector, nsLabels) : from.namespace === NAMESPACE;
          const podOk = peer.podSelector ? matches(peer.podSelector, from.labels) : true;
          return nsOk && podOk;
        });
        return portOk && peerOk;
      }));
    }

    const controllerPod = { labels: controller.spec?.template?.metadata.labels ?? {}, container: onlyContainer(controller) };
    const workerPod = { labels: pool.spec?.template?.metadata.labels ?? {}, container: onlyContainer(pool) };
    const claimedWorker = { ...workerPod, labels: { ...workerPod.labels, [poolLabelKey]: 'assigned' } };
    const small = secondPool.objects.find((o) => o.kind === 'Deployment') as K8sObject;
    const smallWorker = { labels: small.spec?.template?.metadata.labels ?? {}, container: onlyContainer(small) };
    const fromController = { namespace: NAMESPACE, labels: controllerPod.labels };
    const fromWorker = { namespace: NAMESPACE, labels: workerPod.labels };
    const fromNeighbour = { namespace: NAMESPACE, labels: { app: 'debug-shell' } };
    const fromMonitoring = { namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'prometheus' } };
    const fromOtherApp = { namespace: 'shop', labels: { 'app.kubernetes.io/name': 'warmpool-controller' } };

    const cases: [string, Source | 'outside', Target, number, boolean][] = [
      ['the controller -> a warm worker on 8080', fromController, workerPod, 8080, true],
      ['the controller -> a claimed worker on 8080', fromController, claimedWorker, 8080, true],
      ['the controller -> a worker on another port', fromController, workerPod, 9090, false],
      ['a worker -> another session\'s worker', fromWorker, claimedWorker, 8080, false],
      ['the controller -> a worker of the example pool small on 8080', fromController, smallWorker, 8080, true],
      ['a worker of the example pool small -> a worker', { namespace: NAMESPACE, labels: smallWorker.labels }, workerPod, 8080, false],
      ['another pod of the namespace -> a worker of the example pool small', fromNeighbour, smallWorker, 8080, false],
      ['another pod of the namespace -> a worker', fromNeighbour, workerPod, 8080, false],
      ['monitoring -> a worker', fromMonitoring, workerPod, 8080, false],
      ['a pod elsewhere that copies the controller\'s labels -> a worker', fromOtherApp, workerPod, 8080, false],
      ['outside the cluster -> a worker', 'outside', workerPod, 8080, false],
      ['outside the cluster -> the controller\'s client port', 'outside', controllerPod, 8080, true],
      ['another namespace -> the controller\'s client port', fromOtherApp, controllerPod, 8080, true],
      ['outside the cluster -> the admin port', 'outside', controllerPod, 9090, false],
      ['another namespace -> the admin port', fromOtherApp, controllerPod, 9090, false],
      ['monitoring -> the admin port', fromMonitoring, controllerPod, 9090, true],
      ['a pod of the namespace -> the admin port', fromNeighbour, controllerPod, 9090, true],
      ['anyone -> a port the controller does not serve', fromNeighbour, controllerPod, 22, false],
    ];
    for (const [what, from, to, port, expected] of cases) {
      test(`when ${what} is checked, then it is ${expected ? 'allowed' : 'denied'}`, () => {
        assert.equal(allowed(from, to, port), expected);
      });
    }
  });
});

describe('k8s/examples/second-pool', () => {
  test('when the overlay is resolved, then it adds one Deployment, chatbot-worker-small, a valid pool small with valid size annotations, beside the shipped objects and not among them', () => {
    assert.equal(secondPool.kustomization.namespace, NAMESPACE);
    assert.deepEqual(secondPool.objects.map((o) => `${o.kind}/${o.metadata.name}`), ['Deployment/chatbot-worker-small']);
    assert.ok(!files.some((f) => f.includes(`${path.sep}examples${path.sep}`)), 'k8s/ does not apply the example');
    const small = secondPool.objects[0] as K8sObject;
    assertPool(small, 'small');
    const annotations = (small.metadata as Meta & { annotations?: Labels }).annotations ?? {};
    const settings = settingsOf(annotations, { minSize: 3, maxSize: 3, ...SIZING_DEFAULTS });
    assert.equal(typeof settings, 'object', `its annotations are valid settings: ${JSON.stringify(settings)}`);
    assert.ok((settings as PoolSettings).minSize < (settings as PoolSettings).maxSize, 'an adaptive pool');
    assert.equal(small.spec?.replicas, undefined, 'no replicas: the controller owns them');
    assert.equal(podSpec(small).serviceAccountName, 'chatbot-worker', 'it runs as the workers\' identity that k8s/ creates');
    const shipped = pool.spec?.selector as Selector;
    assert.ok(!matches(shipped, small.spec?.template?.metadata.labels ?? {}), 'the shipped pool never takes its pods');
    assert.ok(!matches(small.spec?.selector as Selector, pool.spec?.template?.metadata.labels ?? {}), 'nor it the shipped pool\'s');
  });
});
