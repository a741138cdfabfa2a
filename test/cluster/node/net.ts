/**
 * The node tier's host network: a bridge for the pods, a namespace standing for "outside",
 * routes and the packet filter that keeps every pod packet on the machine. Addresses come
 * from 198.18.0.0/15 (RFC 2544's benchmark range), never a real network:
 *   198.18.0.0/17     the pod bridge; 198.18.0.1 is the node (kubelet, API server)
 *   198.18.200.0/24   a veth into a namespace the tier made, standing for any other network
 *   198.19.0.0/16     Services (kube-proxy)
 *   the rest          blackholed
 * Forwarding is dropped unless it stays on the bridge, in `mangle` FORWARD (which runs before
 * any chain kube-proxy or the NetworkPolicy controller add to `filter`, so none of their
 * ACCEPTs can bypass it) and in `filter` FORWARD. Nothing is masqueraded.
 */
import { execFileSync } from 'node:child_process';

export const BRIDGE = 'wpnode0';
export const NODE_IP = '198.18.0.1';
export const POD_SUBNET = '198.18.0.0/17';
export const CLUSTER_CIDR = '198.18.0.0/16';
export const SERVICE_CIDR = '198.19.0.0/16';
export const KUBERNETES_SERVICE_IP = '198.19.0.1';
export const OUTSIDE_NS = 'wpnode-outside';
export const OUTSIDE_IP = '198.18.200.2';
const OUTSIDE_HOST_IF = 'wpnode-out0';
const OUTSIDE_HOST_IP = '198.18.200.1';
const RANGE = '198.18.0.0/15';
const CHAIN = 'WARMPOOL-NODE';

/** The drop rules, as `iptables -S` prints them, in both tables. */
export const DROP_RULES = [`-A ${CHAIN} -i ${BRIDGE} ! -o ${BRIDGE} -j DROP`, `-A ${CHAIN} ! -i ${BRIDGE} -o ${BRIDGE} -j DROP`];
const FILTER_TABLES = ['mangle', 'filter'] as const;

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function trySh(cmd: string, args: string[]): boolean {
  try {
    sh(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** The rules of the tier's chain in one table (empty when the chain is missing). */
export function chainRules(table: (typeof FILTER_TABLES)[number]): string[] {
  try {
    return sh('iptables', ['-t', table, '-S', CHAIN]).trim().split('\n').filter((l) => l.startsWith('-A'));
  } catch {
    return [];
  }
}

const SYSCTLS = ['net.ipv4.ip_forward', 'net.bridge.bridge-nf-call-iptables'] as const;
export type Sysctls = Record<(typeof SYSCTLS)[number], string>;

/** Values to restore at `down`. */
export function readSysctls(): Sysctls {
  return Object.fromEntries(SYSCTLS.map((k) => [k, sh('sysctl', ['-n', k]).trim()])) as Sysctls;
}

/** Filter first, then addresses: no pod can exist before its packets are held on the machine. */
export function setUp(): void {
  for (const table of FILTER_TABLES) {
    sh('iptables', ['-t', table, '-N', CHAIN]);
    for (const rule of DROP_RULES) sh('iptables', ['-t', table, ...rule.split(' ')]);
    sh('iptables', ['-t', table, '-I', 'FORWARD', '1', '-j', CHAIN]);
  }
  sh('ip', ['route', 'add', 'blackhole', RANGE]);
  sh('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
  sh('ip', ['addr', 'add', `${NODE_IP}/17`, 'dev', BRIDGE]);
  sh('ip', ['link', 'set', BRIDGE, 'up']);
  sh('ip', ['netns', 'add', OUTSIDE_NS]);
  sh('ip', ['link', 'add', OUTSIDE_HOST_IF, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', OUTSIDE_NS]);
  sh('ip', ['addr', 'add', `${OUTSIDE_HOST_IP}/24`, 'dev', OUTSIDE_HOST_IF]);
  sh('ip', ['link', 'set', OUTSIDE_HOST_IF, 'up']);
  const inside = (...args: string[]): string => sh('ip', ['netns', 'exec', OUTSIDE_NS, 'ip', ...args]);
  inside('addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'eth0');
  inside('link', 'set', 'eth0', 'up');
  inside('link', 'set', 'lo', 'up');
  inside('route', 'add', 'default', 'via', OUTSIDE_HOST_IP);
  // Pods reach Services and one another through the host's routing and conntrack.
  sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  sh('sysctl', ['-q', '-w', 'net.bridge.bridge-nf-call-iptables=1']);
}

/** Undoes setUp (each step on its own, so a half-made network is removed too). */
export function tearDown(sysctls: Sysctls): void {
  for (const [k, v] of Object.entries(sysctls)) trySh('sysctl', ['-q', '-w', `${k}=${v}`]);
  trySh('ip', ['link', 'del', OUTSIDE_HOST_IF]);
  trySh('ip', ['netns', 'del', OUTSIDE_NS]);
  trySh('ip', ['link', 'del', BRIDGE]);
  trySh('ip', ['route', 'del', 'blackhole', RANGE]);
  for (const table of FILTER_TABLES) {
    while (trySh('iptables', ['-t', table, '-D', 'FORWARD', '-j', CHAIN]));
    trySh('iptables', ['-t', table, '-F', CHAIN]);
    trySh('iptables', ['-t', table, '-X', CHAIN]);
  }
}
