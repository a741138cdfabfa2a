/**
 * The node tier's `down`: pods first (through kubelet, so CNI removes their addresses), then
 * the processes, leftovers by their mark or their cgroup, mounts, cgroups, the network, the
 * paths the runtime made on the host; then the host is compared with the snapshot `up` took.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { log, signal } from '../tier.js';
import { markedPids } from '../procs.js';
import { differences, HOST_PATHS, restoreRules, snapshot } from './host.js';
import { tearDown } from './net.js';
import { CGROUP_ROOT, containerdSocket, nodeDir, nodeStatePath, nodeTier as tier, type NodeState } from './paths.js';


function quiet(cmd: string, args: string[], timeoutMs = 60_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return r.status === 0 ? r.stdout : '';
}

/** Every pod deleted at once; kubelet stops them and CNI releases their addresses. */
async function removePods(): Promise<void> {
  if (!existsSync(tier.kubeconfigPath) || !existsSync(containerdSocket)) return;
  const kubectl = (...args: string[]): string => quiet(tier.kubectlPath, ['--kubeconfig', tier.kubeconfigPath, '--request-timeout=10s', ...args]);
  kubectl('delete', 'pods', '--all', '--all-namespaces', '--grace-period=0', '--force', '--wait=false');
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const sandboxes = quiet('ctr', ['--address', containerdSocket, '-n', 'k8s.io', 'tasks', 'ls', '-q'], 10_000).trim();
    if (!sandboxes) return;
    // Deployments make new pods meanwhile: delete again.
    kubectl('delete', 'pods', '--all', '--all-namespaces', '--grace-period=0', '--force', '--wait=false');
    await sleep(1000);
  }
  log('pods were still running after 60 s; killing them by their cgroup');
}

function cgroupTree(): string[] {
  const dirs: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    dirs.push(d);
  };
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const root = `/sys/fs/cgroup/${h}/${CGROUP_ROOT}`;
    if (existsSync(root)) walk(root);
  }
  return dirs;
}

/** Containers left running (kubelet or containerd died) are in the tier's cgroup: SIGKILL each by pid. */
async function killCgroupProcesses(): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const pids = cgroupTree().flatMap((d) => readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
    if (pids.length === 0) return;
    for (const pid of new Set(pids)) signal(pid, 'SIGKILL', false);
    await sleep(100);
  }
}

async function killMarked(): Promise<number[]> {
  for (let i = 0; i < 50; i++) {
    const left = markedPids(false, nodeDir);
    if (left.length === 0) break;
    for (const pid of left) signal(pid, i < 20 ? 'SIGTERM' : 'SIGKILL', false);
    await sleep(100);
  }
  return markedPids(false, nodeDir);
}

/** Mount points under `prefix`, deepest first. */
function mountsUnder(prefix: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === prefix || m.startsWith(`${prefix}/`)).sort((a, b) => b.length - a.length);
}

function unmountAll(state: NodeState): void {
  const before = new Set(state.before.mounts);
  const ours = [...mountsUnder(nodeDir), ...mountsUnder('/run/netns').filter((m) => !before.has(m))];
  for (const m of ours) spawnSync('umount', ['-l', m]);
}

function removeHostPaths(state: NodeState): void {
  for (const p of HOST_PATHS) {
    if (state.before.paths.includes(p) || !existsSync(p)) continue;
    if (p === '/run/netns') for (const m of mountsUnder(p)) spawnSync('umount', ['-l', m]);
    rmSync(p, { recursive: true, force: true });
  }
}

export async function down(): Promise<void> {
  const state = existsSync(nodeStatePath) ? (JSON.parse(readFileSync(nodeStatePath, 'utf8')) as NodeState) : undefined;
  if (!state) {
    // `up` records its state before it changes the host: without one, the host-wide names
    // (bridge, cgroup root, rules) may be another checkout's node tier, so they are left alone.
    const left = await killMarked();
    if (left.length > 0) throw new Error(`processes left: ${left.join(' ')}`);
    log('no node tier state here: nothing to take down');
    return;
  }
  await removePods();
  await tier.stopRecorded();
  await killCgroupProcesses();
  const left = await killMarked();
  // The rules kube-proxy and kube-router made, removed by their own cleanup modes.
  for (const [name, args] of [['kube-proxy', ['--cleanup']], ['kube-router', ['--cleanup-config']]] as const) {
    const exe = findBinary(name);
    if (exe) spawnSync(exe, [...args], { stdio: 'ignore', timeout: 60_000 });
  }
  unmountAll(state);
  for (const d of cgroupTree()) {
    try {
      rmdirSync(d);
    } catch (err) {
      log(`cgroup ${d}: ${String(err)}`);
    }
  }
  tearDown(state.sysctls);
  restoreRules(state.before);
  removeHostPaths(state);
  const etcd = tier.readState()?.etcdDataDir;
  if (etcd) rmSync(etcd, { recursive: true, force: true });
  if (existsSync(nodeDir)) {
    for (const entry of readdirSync(nodeDir)) if (entry !== 'logs') rmSync(join(nodeDir, entry), { recursive: true, force: true });
  }
  if (left.length > 0) throw new Error(`processes left: ${left.join(' ')}`);
  const diff = differences(state.before, snapshot());
  if (diff.length > 0) throw new Error(`the host is not as it was:\n  ${diff.join('\n  ')}`);
  log('node tier down; the host is as it was before up');
}

/** The cached binary a recorded process ran, for its cleanup mode. */
function findBinary(name: string): string | undefined {
  const record = join(tier.logs, 'bin-dir');
  const exe = existsSync(record) ? join(readFileSync(record, 'utf8').trim(), name) : '';
  return exe && existsSync(exe) && statSync(exe).isFile() ? exe : undefined;
}
