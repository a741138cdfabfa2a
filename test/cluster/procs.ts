/** The loopback cluster's processes as /proc shows them; shared by cluster.ts and the fault tests. */
import { readdirSync, readFileSync } from 'node:fs';
import { clusterDir } from './paths.js';

/**
 * Pids of processes marked as ours (WARMPOOL_CLUSTER=<dir>, the loopback cluster's by default),
 * this process excluded; with `anyCluster`, those of every cluster on this machine.
 */
export function markedPids(anyCluster = false, dir = clusterDir): number[] {
  const mark = Buffer.from(anyCluster ? '\0WARMPOOL_CLUSTER=' : `\0WARMPOOL_CLUSTER=${dir}\0`);
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${pid}/environ`)]);
      if (env.includes(mark)) pids.push(pid);
    } catch {
      // gone already, or not readable: not one of ours
    }
  }
  return pids;
}

/** The argv of a process, empty when it is gone. */
export function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** The environment of a process, as it was when the process started. */
export function environment(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => {
    const eq = kv.indexOf('=');
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }));
}
