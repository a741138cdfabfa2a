/**
 * `cluster.ts up|down`: a real Kubernetes control plane on 127.0.0.1 for the cluster tests.
 *
 * up: builds the binaries on first use (setup.sh), makes a throwaway PKI with openssl,
 * starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and one node agent
 * per Node, waits until the API server is ready, every Node is Ready and the controller
 * manager has made the `default` ServiceAccount, and writes the admin kubeconfig to
 * `.cluster/kubeconfig`. down: stops all of it and checks that no process it started is left.
 *
 * Every process it starts (and every container a node agent starts) carries
 * WARMPOOL_CLUSTER=<abs .cluster dir> in its environment, so `down` can find leftovers of a
 * crashed run by that mark and end them by pid, never by name.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { alive, eventually } from '../integration/harness.js';
import { ApiError, Kube, kubeconfigJson } from './kube.js';
import { markedPids } from './procs.js';
import { createdMountPointsFile, removeMountPoint } from './volumes.js';
import { clusterDir, clusterHarnessDir as here, kubeconfigPath, kubectlPath, logDir as logs, repoRoot } from './paths.js';

const statePath = join(clusterDir, 'state.json');
const pki = join(clusterDir, 'pki');

/**
 * Third octet of the first Node's pod range: Node i gets 127.0.(base+i).0/24. It is derived
 * from the checkout's path (10..209), so clusters of two checkouts on one machine (worktrees,
 * CI beside a developer) do not hand out the same pod IPs; WARMPOOL_CLUSTER_NET overrides it.
 */
function nodeNetBase(nodeCount: number): number {
  const fixed = process.env.WARMPOOL_CLUSTER_NET;
  const base = fixed ? Number(fixed) : 10 + (createHash('sha256').update(clusterDir).digest().readUInt32BE(0) % 200);
  if (!Number.isInteger(base) || base < 1 || base + nodeCount > 255) throw new Error(`WARMPOOL_CLUSTER_NET must leave room for ${nodeCount} /24s below 127.0.255.0`);
  return base;
}

interface State {
  apiserverPort: number;
  etcdDataDir: string;
  /** Started processes in start order; each leads its own process group. */
  processes: { name: string; pid: number }[];
}

function log(msg: string): void {
  console.error(`cluster: ${msg}`);
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A CA and one key/certificate per identity. EC P-256 keys: generating them is instant,
 * where RSA would add seconds to every cluster:up.
 */
function makePki(nodeNames: string[]): void {
  mkdirSync(pki, { recursive: true });
  // An empty config, so openssl adds no extensions of its own (the Debian default marks every
  // certificate made with `req -x509` as a CA).
  const cnf = join(pki, 'openssl.cnf');
  writeFileSync(cnf, '[req]\ndistinguished_name = dn\n[dn]\n');
  const key = (name: string): string => {
    const path = join(pki, `${name}.key`);
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
    return path;
  };
  const caKey = key('ca');
  openssl([
    'req', '-x509', '-new', '-config', cnf, '-key', caKey, '-subj', '/CN=warmpool-test-ca', '-days', '30',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    '-out', join(pki, 'ca.crt'),
  ]);
  const leaf = (name: string, subj: string, usage: 'serverAuth' | 'clientAuth', san?: string): void => {
    openssl([
      'req', '-x509', '-new', '-config', cnf, '-key', key(name), '-subj', subj, '-days', '30',
      '-CA', join(pki, 'ca.crt'), '-CAkey', caKey,
      '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
      '-addext', `extendedKeyUsage=${usage}`, ...(san ? ['-addext', `subjectAltName=${san}`] : []),
      '-out', join(pki, `${name}.crt`),
    ]);
  };
  leaf('apiserver', '/CN=kube-apiserver', 'serverAuth',
    'IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local');
  leaf('admin', '/O=system:masters/CN=kubernetes-admin', 'clientAuth');
  leaf('controller-manager', '/CN=system:kube-controller-manager', 'clientAuth');
  leaf('scheduler', '/CN=system:kube-scheduler', 'clientAuth');
  for (const node of nodeNames) leaf(`node-${node}`, `/O=system:nodes/CN=system:node:${node}`, 'clientAuth');
  // The service-account token signing key pair.
  const saKey = key('sa');
  openssl(['pkey', '-in', saKey, '-pubout', '-out', join(pki, 'sa.pub')]);
}

function writeKubeconfig(path: string, server: string, identity: string): void {
  const read = (f: string): string => readFileSync(join(pki, f), 'utf8');
  writeFileSync(
    path,
    kubeconfigJson(server, read('ca.crt'), { certPem: read(`${identity}.crt`), keyPem: read(`${identity}.key`) }),
    { mode: 0o600 },
  );
}

/** The directory of cached binaries; setup.sh builds them first if they are missing. */
function ensureBinaries(): string {
  const r = spawnSync('bash', [join(here, 'setup.sh'), '--print-bin-dir'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`setup.sh failed (exit ${r.status})`);
  return r.stdout.trim();
}

function start(state: State, name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  const out = openSync(join(logs, `${name}.log`), 'a');
  const child = spawn(cmd, args, {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...env, WARMPOOL_CLUSTER: clusterDir },
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  child.unref();
  state.processes.push({ name, pid: child.pid });
  writeFileSync(statePath, JSON.stringify(state, null, 2));
}

/** Polls like the tests do, but gives up at once when a component has exited. */
function waitFor<T>(what: string, timeoutMs: number, state: State, probe: () => Promise<T | undefined>): Promise<T> {
  return eventually(what, probe, timeoutMs, {
    intervalMs: 250,
    failFast: () => {
      const dead = state.processes.find((p) => !alive(p.pid));
      if (dead) throw new Error(`${dead.name} exited; see ${join(logs, `${dead.name}.log`)}`);
    },
  });
}

async function up(): Promise<void> {
  const t0 = Date.now();
  if (existsSync(statePath)) {
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as State;
    if (state.processes.length > 0 && state.processes.every((p) => alive(p.pid))) {
      log(`already up (KUBECONFIG=${kubeconfigPath})`);
      return;
    }
    log('found the remains of an earlier cluster: cleaning up first');
    await down();
  }
  const bin = ensureBinaries();
  const tBuilt = Date.now();
  rmSync(clusterDir, { recursive: true, force: true });
  mkdirSync(logs, { recursive: true });

  const nodeCount = Number(process.env.WARMPOOL_CLUSTER_NODES ?? '1');
  if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 100) throw new Error('WARMPOOL_CLUSTER_NODES must be 1..100');
  const nodes = Array.from({ length: nodeCount }, (_, i) => `warmpool-node-${i + 1}`);
  const netBase = nodeNetBase(nodes.length);
  makePki(nodes);

  const [etcdPort, etcdPeerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  // etcd fsyncs every write; Debian's etcd 3.4 has no --unsafe-no-fsync, so a tmpfs data dir
  // is what keeps it fast.
  const shm = existsSync('/dev/shm') ? '/dev/shm' : clusterDir;
  const state: State = { apiserverPort: apiPort, etcdDataDir: mkdtempSync(join(shm, 'warmpool-etcd-')), processes: [] };
  writeFileSync(statePath, JSON.stringify(state, null, 2));

  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  start(state, 'etcd', 'etcd', [
    '--name=node0', `--data-dir=${state.etcdDataDir}`,
    `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=node0=${peerUrl}`,
    '--logger=zap', '--log-outputs=stderr',
  ]);
  await waitFor('etcd', 30_000, state, async () => {
    const res = await fetch(`${etcdUrl}/health`);
    return res.ok ? true : undefined;
  });

  const p = (f: string): string => join(pki, f);
  start(state, 'kube-apiserver', join(bin, 'kube-apiserver'), [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
    `--tls-cert-file=${p('apiserver.crt')}`, `--tls-private-key-file=${p('apiserver.key')}`,
    `--client-ca-file=${p('ca.crt')}`,
    `--service-account-key-file=${p('sa.pub')}`, `--service-account-signing-key-file=${p('sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc',
    '--authorization-mode=Node,RBAC', '--enable-admission-plugins=NodeRestriction',
    // Bookkeeping only: no traffic ever goes to a ClusterIP here (see docs/cluster.md).
    '--service-cluster-ip-range=10.0.0.0/24',
    // The `kubernetes` Service would get 127.0.0.1 as its endpoint, which endpoint validation
    // rejects (loopback); nothing here uses that Service, so it is not reconciled at all.
    '--endpoint-reconciler-type=none',
    '--allow-privileged=true', '--profiling=false',
  ]);
  const server = `https://127.0.0.1:${apiPort}`;
  writeKubeconfig(kubeconfigPath, server, 'admin');
  symlinkSync(join(bin, 'kubectl'), kubectlPath);
  const admin = Kube.fromKubeconfig(kubeconfigPath);
  await waitFor('kube-apiserver /readyz', 60_000, state, async () => ((await admin.get<string>('/readyz')) === 'ok' ? true : undefined));
  const tApi = Date.now();

  const kcmConfig = join(clusterDir, 'controller-manager.kubeconfig');
  writeKubeconfig(kcmConfig, server, 'controller-manager');
  start(state, 'kube-controller-manager', join(bin, 'kube-controller-manager'), [
    `--kubeconfig=${kcmConfig}`,
    '--bind-address=127.0.0.1', '--secure-port=0',
    `--service-account-private-key-file=${p('sa.key')}`, `--root-ca-file=${p('ca.crt')}`,
    `--cluster-signing-cert-file=${p('ca.crt')}`, `--cluster-signing-key-file=${p('ca.key')}`,
    '--use-service-account-credentials=true', '--controllers=*', '--leader-elect=false',
  ]);

  const schedKubeconfig = join(clusterDir, 'scheduler.kubeconfig');
  writeKubeconfig(schedKubeconfig, server, 'scheduler');
  const schedConfig = join(clusterDir, 'scheduler-config.json');
  writeFileSync(
    schedConfig,
    JSON.stringify({
      apiVersion: 'kubescheduler.config.k8s.io/v1',
      kind: 'KubeSchedulerConfiguration',
      clientConnection: { kubeconfig: schedKubeconfig },
      leaderElection: { leaderElect: false },
    }),
  );
  start(state, 'kube-scheduler', join(bin, 'kube-scheduler'), [`--config=${schedConfig}`, '--bind-address=127.0.0.1', '--secure-port=0']);

  nodes.forEach((node, i) => {
    const cfg = join(clusterDir, `${node}.kubeconfig`);
    writeKubeconfig(cfg, server, `node-${node}`);
    start(state, node, process.execPath, ['--import', 'tsx', join(here, 'node-agent.ts'), `--node=${node}`, `--net=127.0.${netBase + i}`, `--kubeconfig=${cfg}`]);
  });

  await waitFor('the default ServiceAccount (controller manager)', 60_000, state, async () =>
    (await admin.get('/api/v1/namespaces/default/serviceaccounts/default').catch((e: unknown) => {
      if (e instanceof ApiError && e.code === 404) return undefined;
      throw e;
    }))
      ? true
      : undefined,
  );
  await waitFor('Ready nodes', 60_000, state, async () => {
    const list = await admin.get<{ items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[] }>('/api/v1/nodes');
    const ready = list.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    return ready.length === nodes.length ? true : undefined;
  });
  admin.close();
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
  log(
    `up in ${s(Date.now() - t0)} (binaries ${s(tBuilt - t0)}, API server ready after ${s(tApi - tBuilt)}, ` +
      `nodes: ${nodes.join(', ')}). KUBECONFIG=${kubeconfigPath}, kubectl: ${kubectlPath}`,
  );
}

function signal(pid: number, sig: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, sig);
  } catch {
    // already gone
  }
}

async function down(): Promise<void> {
  const state = existsSync(statePath) ? (JSON.parse(readFileSync(statePath, 'utf8')) as State) : undefined;
  // Node agents first (they stop their containers), then the control plane, etcd last.
  const ordered = [...(state?.processes ?? [])].reverse();
  for (const { pid } of ordered) {
    signal(pid, 'SIGTERM', true);
    const deadline = Date.now() + 10_000;
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    signal(pid, 'SIGKILL', true);
  }
  for (let i = 0; i < 50; i++) {
    const left = markedPids();
    if (left.length === 0) break;
    for (const pid of left) signal(pid, i < 20 ? 'SIGTERM' : 'SIGKILL', false);
    await sleep(100);
  }
  const left = markedPids();
  // Mount points are shared by every loopback cluster on this machine, and removing one in
  // use would take it from another cluster's containers (the kernel detaches a removed mount
  // point in every mount namespace): the last cluster to stop removes them.
  if (existsSync(createdMountPointsFile) && markedPids(true).length === 0) {
    for (const path of new Set(readFileSync(createdMountPointsFile, 'utf8').split('\n').filter(Boolean))) removeMountPoint(path);
    rmSync(createdMountPointsFile);
  }
  if (state?.etcdDataDir) rmSync(state.etcdDataDir, { recursive: true, force: true });
  // Keys, kubeconfigs and pods' projected tokens go with the cluster; the logs stay for a look.
  if (existsSync(clusterDir)) {
    for (const entry of readdirSync(clusterDir)) if (entry !== 'logs') rmSync(join(clusterDir, entry), { recursive: true, force: true });
  }
  if (left.length > 0) throw new Error(`processes left: ${left.join(' ')}`);
  log('down');
}

const cmd = process.argv[2];
if (cmd === 'up') {
  up().catch(async (err: unknown) => {
    log(`up failed: ${err instanceof Error ? err.message : String(err)}; stopping what was started (logs stay in ${logs})`);
    process.exitCode = 1;
    await down().catch((e: unknown) => log(String(e)));
  });
} else if (cmd === 'down') {
  down().catch((err: unknown) => {
    log(`down failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
} else {
  console.error('usage: cluster.ts up|down');
  process.exitCode = 2;
}
