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
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { alive } from '../integration/harness.js';
import { ensureBinaries, startControlPlane, tierCommand, waitUsable } from './controlplane.js';
import { type Identity, log, signal, Tier } from './tier.js';
import { markedPids } from './procs.js';
import { createdMountPointsFile, removeMountPoint } from './volumes.js';
import { clusterDir, clusterHarnessDir as here, kubeconfigPath, kubectlPath, logDir as logs } from './paths.js';

const tier = new Tier(clusterDir);

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

function identities(nodeNames: string[]): Identity[] {
  return [
    {
      name: 'apiserver', subject: '/CN=kube-apiserver', usage: 'serverAuth',
      san: 'IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
    },
    { name: 'admin', subject: '/O=system:masters/CN=kubernetes-admin', usage: 'clientAuth' },
    { name: 'controller-manager', subject: '/CN=system:kube-controller-manager', usage: 'clientAuth' },
    { name: 'scheduler', subject: '/CN=system:kube-scheduler', usage: 'clientAuth' },
    ...nodeNames.map((node): Identity => ({ name: `node-${node}`, subject: `/O=system:nodes/CN=system:node:${node}`, usage: 'clientAuth' })),
  ];
}

async function up(): Promise<void> {
  const t0 = Date.now();
  const previous = tier.readState();
  if (previous) {
    if (previous.processes.length > 0 && previous.processes.every((p) => alive(p.pid))) {
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
  const hollowCount = Number(process.env.WARMPOOL_CLUSTER_HOLLOW_NODES ?? '3');
  if (!Number.isInteger(hollowCount) || hollowCount < 0 || hollowCount > 40) throw new Error('WARMPOOL_CLUSTER_HOLLOW_NODES must be 0..40');
  const nodes = Array.from({ length: nodeCount }, (_, i) => `warmpool-node-${i + 1}`);
  const hollow = Array.from({ length: hollowCount }, (_, i) => `warmpool-hollow-${i + 1}`);
  const netBase = nodeNetBase(Math.max(nodes.length, hollow.length));
  tier.makePki(identities([...nodes, ...hollow]));

  const { server, admin } = await startControlPlane(tier, bin, {
    address: '127.0.0.1',
    // Bookkeeping only: no traffic ever goes to a ClusterIP here (see docs/cluster.md).
    serviceCidr: '10.0.0.0/24',
    // The `kubernetes` Service would get 127.0.0.1 as its endpoint, which endpoint validation
    // rejects (loopback); nothing here uses that Service, so it is not reconciled at all.
    apiserverArgs: ['--endpoint-reconciler-type=none'],
  });
  const tApi = Date.now();

  // Node i gets the pod IPs 127.0.(base+i).0/24; hollow Node i the /16 127.(base+i).0.0.
  const agents = [...nodes.map((node, i) => [node, `127.0.${netBase + i}`]), ...hollow.map((node, i) => [node, `127.${netBase + i}`, '--hollow'])];
  for (const [node, net, ...flags] of agents as [string, string, ...string[]][]) {
    const cfg = join(clusterDir, `${node}.kubeconfig`);
    tier.writeKubeconfig(cfg, server, `node-${node}`);
    tier.start(node, process.execPath, ['--import', 'tsx', join(here, 'node-agent.ts'), `--node=${node}`, `--net=${net}`, `--kubeconfig=${cfg}`, ...flags]);
  }

  await waitUsable(tier, admin, agents.length);
  admin.close();
  const s = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
  log(
    `up in ${s(Date.now() - t0)} (binaries ${s(tBuilt - t0)}, API server ready after ${s(tApi - tBuilt)}, ` +
      `nodes: ${[...nodes, ...hollow].join(', ')}). KUBECONFIG=${kubeconfigPath}, kubectl: ${kubectlPath}`,
  );
}

async function down(): Promise<void> {
  const state = tier.readState();
  // Node agents first (they stop their containers), then the control plane, etcd last.
  await tier.stopRecorded();
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

tierCommand('cluster.ts', logs, up, down);
