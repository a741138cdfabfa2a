/** Where the node tier keeps its state; shared by node.ts, teardown.ts and the tests. */
import { join } from 'node:path';
import { Tier } from '../tier.js';
import { repoRoot } from '../paths.js';
import type { HostSnapshot } from './host.js';
import type { Sysctls } from './net.js';

export const NODE_NAME = 'warmpool-node';
export const nodeDir = join(repoRoot, '.node-cluster');
export const nodeTier = new Tier(nodeDir);
export const nodeStatePath = join(nodeDir, 'node.json');
/** The tier's cgroup in every v1 hierarchy (kubelet's cgroupRoot). */
export const CGROUP_ROOT = 'warmpool-node';
export const containerdDir = join(nodeDir, 'containerd');
export const containerdSocket = join(containerdDir, 'containerd.sock');

export interface NodeState {
  /** The host before `up` changed anything; `down` must leave it so. */
  before: HostSnapshot;
  sysctls: Sysctls;
  /** Names of the images imported into containerd (pause, controller, worker). */
  images: string[];
  /** When the FORWARD drop rules were in place, and when kubelet (hence any pod) started. */
  dropRulesAt: number;
  kubeletStartedAt: number;
}
