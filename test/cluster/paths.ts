/** Where the loopback cluster keeps its state; shared by cluster.ts, the node agent and the tests. */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const clusterHarnessDir = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(clusterHarnessDir, '../..');
export const clusterDir = join(repoRoot, '.cluster');
export const kubeconfigPath = join(clusterDir, 'kubeconfig');
export const logDir = join(clusterDir, 'logs');
