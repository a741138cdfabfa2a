/**
 * `node.ts up|down`: the loopback cluster's control plane with a real node: containerd and
 * runc (Debian), kubelet and kube-proxy (the same Kubernetes modules), CNI bridge +
 * host-local, and kube-router's NetworkPolicy controller, running the images built from the
 * repository's Dockerfiles (images.sh). Network layout and safety: net.ts.
 *
 * up: builds what is missing, snapshots the host, sets up the packet filter and only then
 * the bridge, starts everything, imports the images into containerd's `k8s.io` namespace and
 * waits for a Ready Node. down: removes every pod, process, mount, cgroup, namespace, link,
 * route and rule it made, and fails if the host differs from the snapshot.
 * One node tier per machine (the bridge and the cgroup root have fixed names).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBinaries, startControlPlane, tierCommand, waitUsable } from '../controlplane.js';
import { type Identity, log } from '../tier.js';
import type { Kube } from '../kube.js';
import { CGROUP_ROOT, containerdDir, containerdSocket, nodeDir, nodeTier as tier, type NodeState, nodeStatePath, NODE_NAME } from './paths.js';
import { BRIDGE, CLUSTER_CIDR, KUBERNETES_SERVICE_IP, NODE_IP, POD_SUBNET, readSysctls, SERVICE_CIDR, setUp, sh } from './net.js';
import { snapshot } from './host.js';
import { down } from './teardown.js';

const here = import.meta.dirname;
const KUBE_ROUTER_USER = 'warmpool:kube-router';

/** What kube-router's NetworkPolicy controller reads (its own manifests' role, less the router's writes). */
async function grantKubeRouter(admin: Kube): Promise<void> {
  const read = ['get', 'list', 'watch'];
  await admin.create('/apis/rbac.authorization.k8s.io/v1/clusterroles', {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: KUBE_ROUTER_USER },
    rules: [
      { apiGroups: [''], resources: ['namespaces', 'pods', 'services', 'nodes', 'endpoints'], verbs: read },
      { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: read },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: read },
    ],
  });
  await admin.create('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: KUBE_ROUTER_USER },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: KUBE_ROUTER_USER },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: KUBE_ROUTER_USER }],
  });
}


function identities(): Identity[] {
  return [
    {
      name: 'apiserver', subject: '/CN=kube-apiserver', usage: 'serverAuth',
      san: `IP:${NODE_IP},IP:${KUBERNETES_SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local`,
    },
    { name: 'admin', subject: '/O=system:masters/CN=kubernetes-admin', usage: 'clientAuth' },
    { name: 'controller-manager', subject: '/CN=system:kube-controller-manager', usage: 'clientAuth' },
    { name: 'scheduler', subject: '/CN=system:kube-scheduler', usage: 'clientAuth' },
    { name: 'node', subject: `/O=system:nodes/CN=system:node:${NODE_NAME}`, usage: 'clientAuth' },
    { name: 'kubelet', subject: `/CN=${NODE_NAME}`, usage: 'serverAuth', san: `IP:${NODE_IP},DNS:${NODE_NAME}` },
    { name: 'apiserver-kubelet-client', subject: '/O=system:masters/CN=kube-apiserver-kubelet-client', usage: 'clientAuth' },
    // Bound to system:node-proxier by the API server's default policy.
    { name: 'kube-proxy', subject: '/CN=system:kube-proxy', usage: 'clientAuth' },
    { name: 'kube-router', subject: `/CN=${KUBE_ROUTER_USER}`, usage: 'clientAuth' },
  ];
}

function run(script: string, args: string[] = []): string {
  const r = spawnSync('bash', [join(here, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status})`);
  return r.stdout.trim();
}

/** A cgroup root of the tier's own in every v1 hierarchy, so `down` removes one tree. */
function makeCgroupRoot(): void {
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const d = `/sys/fs/cgroup/${h}/${CGROUP_ROOT}`;
    if (!existsSync(`/sys/fs/cgroup/${h}/cgroup.procs`) || existsSync(d)) continue;
    mkdirSync(d);
    // A new cpuset starts with no CPUs and no memory nodes: give it its parent's.
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(join(d, f))) writeFileSync(join(d, f), readFileSync(`/sys/fs/cgroup/${h}/${f}`));
    }
  }
}

function containerdConfig(pauseImage: string): string {
  return `version = 2
root = "${containerdDir}/root"
state = "${containerdDir}/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "${containerdSocket}"
[ttrpc]
  address = "${containerdSocket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${containerdDir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseImage}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj as kubelet asks.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${containerdDir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${nodeDir}/cni/net.d"
`;
}

function cniConfig(): string {
  return JSON.stringify({
    cniVersion: '0.4.0',
    name: 'warmpool-node',
    plugins: [
      {
        type: 'bridge', bridge: BRIDGE, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: POD_SUBNET, gateway: NODE_IP }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(nodeDir, 'cni/ipam') },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  }, null, 2);
}

function kubeletConfig(port: number, healthzPort: number): object {
  const p = (f: string): string => join(tier.pki, f);
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: NODE_IP, port, readOnlyPort: 0, healthzBindAddress: '127.0.0.1', healthzPort,
    tlsCertFile: p('kubelet.crt'), tlsPrivateKeyFile: p('kubelet.key'),
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: p('ca.crt') } },
    authorization: { mode: 'Webhook' },
    containerRuntimeEndpoint: `unix://${containerdSocket}`,
    // cgroup v1 machine, no systemd: cgroupfs, and v1 explicitly allowed (1.31+ refuses it otherwise).
    cgroupDriver: 'cgroupfs', failCgroupV1: false, cgroupRoot: `/${CGROUP_ROOT}`,
    failSwapOn: false,
    makeIPTablesUtilChains: false,
    // No cluster DNS: pods get an empty resolv.conf (nothing to ask outside the machine).
    resolvConf: join(nodeDir, 'resolv.conf'),
    podLogsDir: join(nodeDir, 'pod-logs'),
    volumePluginDir: join(nodeDir, 'volume-plugins'),
    serializeImagePulls: false,
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    staticPodPath: '',
  };
}

function kubeProxyConfig(kubeconfig: string): object {
  return {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'iptables',
    clientConnection: { kubeconfig },
    hostnameOverride: NODE_NAME,
    bindAddress: NODE_IP,
    clusterCIDR: CLUSTER_CIDR,
    healthzBindAddress: '127.0.0.1:10256',
    metricsBindAddress: '127.0.0.1:10249',
    nodePortAddresses: [`${NODE_IP}/32`],
    // Leave the host's conntrack and localnet sysctls as they are.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    iptables: { localhostNodePorts: false },
  };
}

function imports(images: Map<string, string>): void {
  for (const archive of images.values()) {
    execFileSync('ctr', ['--address', containerdSocket, '-n', 'k8s.io', 'images', 'import', archive], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

async function up(): Promise<void> {
  const t0 = Date.now();
  if (existsSync(nodeStatePath)) {
    log('found the remains of an earlier node tier: taking it down first');
    await down();
  }
  if (existsSync(`/sys/class/net/${BRIDGE}`)) {
    throw new Error(`the bridge ${BRIDGE} exists: another checkout's node tier is up on this machine (one at a time; its node:down removes it)`);
  }
  const bin = ensureBinaries();
  const nodeBin = run('setup.sh', ['--print-bin-dir']);
  const images = new Map(run('images.sh').split('\n').map((l) => l.split(' ') as [string, string]));
  const tBuilt = Date.now();
  rmSync(nodeDir, { recursive: true, force: true });
  mkdirSync(tier.logs, { recursive: true });
  writeFileSync(join(tier.logs, 'bin-dir'), nodeBin);
  const state: NodeState = { before: snapshot(), sysctls: readSysctls(), images: [...images.keys()], dropRulesAt: 0, kubeletStartedAt: 0 };
  writeFileSync(join(tier.logs, 'host-before.json'), JSON.stringify(state.before, null, 2));
  const save = (): void => writeFileSync(nodeStatePath, JSON.stringify(state, null, 2));
  save();
  setUp();
  state.dropRulesAt = Date.now();
  save();

  tier.makePki(identities());
  const p = (f: string): string => join(tier.pki, f);
  const { server, admin } = await startControlPlane(tier, bin, {
    address: NODE_IP,
    serviceCidr: SERVICE_CIDR,
    apiserverArgs: ['--kubelet-preferred-address-types=InternalIP', `--kubelet-client-certificate=${p('apiserver-kubelet-client.crt')}`, `--kubelet-client-key=${p('apiserver-kubelet-client.key')}`, `--kubelet-certificate-authority=${p('ca.crt')}`],
    // kube-router reads its Node's pod range from spec.podCIDR.
    controllerManagerArgs: ['--allocate-node-cidrs=true', `--cluster-cidr=${POD_SUBNET}`, '--node-cidr-mask-size=17'],
  });

  makeCgroupRoot();
  for (const d of ['containerd', 'cni/net.d', 'pod-logs', 'volume-plugins', 'kubelet']) mkdirSync(join(nodeDir, d), { recursive: true });
  const pause = [...images.keys()].find((n) => n.includes('/pause:')) as string;
  writeFileSync(join(containerdDir, 'config.toml'), containerdConfig(pause));
  writeFileSync(join(nodeDir, 'cni/net.d/10-warmpool.conflist'), cniConfig());
  writeFileSync(join(nodeDir, 'resolv.conf'), '# the node tier has no DNS\n');
  tier.start('containerd', 'containerd', ['--config', join(containerdDir, 'config.toml')]);
  await tier.waitFor('containerd', 30_000, async () => (existsSync(containerdSocket) && sh('ctr', ['--address', containerdSocket, 'version']) ? true : undefined));
  imports(images);

  const kubeletKubeconfig = join(nodeDir, 'kubelet.kubeconfig');
  tier.writeKubeconfig(kubeletKubeconfig, server, 'node');
  const kubeletConfigPath = join(nodeDir, 'kubelet-config.json');
  writeFileSync(kubeletConfigPath, JSON.stringify(kubeletConfig(10250, 10248), null, 2));
  state.kubeletStartedAt = Date.now();
  save();
  tier.start('kubelet', join(nodeBin, 'kubelet'), [
    `--config=${kubeletConfigPath}`, `--kubeconfig=${kubeletKubeconfig}`, `--root-dir=${join(nodeDir, 'kubelet')}`,
    `--hostname-override=${NODE_NAME}`, `--node-ip=${NODE_IP}`, `--pod-infra-container-image=${pause}`,
  ]);
  const proxyKubeconfig = join(nodeDir, 'kube-proxy.kubeconfig');
  tier.writeKubeconfig(proxyKubeconfig, server, 'kube-proxy');
  const proxyConfigPath = join(nodeDir, 'kube-proxy-config.json');
  writeFileSync(proxyConfigPath, JSON.stringify(kubeProxyConfig(proxyKubeconfig), null, 2));
  tier.start('kube-proxy', join(nodeBin, 'kube-proxy'), [`--config=${proxyConfigPath}`]);

  await waitUsable(tier, admin, 1);
  await tier.waitFor('the Node\'s pod range', 30_000, async () => ((await admin.get<{ spec?: { podCIDR?: string } }>(`/api/v1/nodes/${NODE_NAME}`)).spec?.podCIDR ? true : undefined));
  await grantKubeRouter(admin);
  const routerKubeconfig = join(nodeDir, 'kube-router.kubeconfig');
  tier.writeKubeconfig(routerKubeconfig, server, 'kube-router');
  tier.start('kube-router', join(nodeBin, 'kube-router'), [
    `--kubeconfig=${routerKubeconfig}`, `--hostname-override=${NODE_NAME}`,
    '--run-firewall=true', '--run-router=false', '--run-service-proxy=false',
    `--service-cluster-ip-range=${SERVICE_CIDR}`, '--health-port=0', '--metrics-port=0',
  ]);
  admin.close();
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
  log(`node tier up in ${s(Date.now() - t0)} (builds ${s(tBuilt - t0)}). KUBECONFIG=${tier.kubeconfigPath}, kubectl: ${tier.kubectlPath}`);
}

tierCommand('node.ts', tier.logs, up, down);
