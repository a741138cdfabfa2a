/**
 * What the node tier may change on the host, as a comparable snapshot: `up` takes one before
 * it touches anything, `down` takes another when it is done and fails on any difference.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { sh } from './net.js';

export interface HostSnapshot {
  links: string[];
  routes: string[];
  netns: string[];
  rules: string[];
  ipsets: string[];
  mounts: string[];
  cgroups: string[];
  paths: string[];
}

/** Paths the runtime or kubelet create outside the tier's directory when they are missing. */
export const HOST_PATHS = ['/run/containerd', '/run/netns', '/var/log/containers', '/var/log/pods', '/var/lib/cni', '/etc/cni', '/var/lib/kubelet'];

const lines = (s: string): string[] => s.split('\n').map((l) => l.trim()).filter(Boolean).sort();

/** Top-level cgroup directories of every mounted v1 hierarchy. */
export function cgroupDirs(): string[] {
  const root = '/sys/fs/cgroup';
  return readdirSync(root).flatMap((h) => {
    try {
      return readdirSync(`${root}/${h}`, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `${h}/${d.name}`);
    } catch {
      return [];
    }
  }).sort();
}

export function snapshot(): HostSnapshot {
  const rules = ['filter', 'nat', 'mangle', 'raw'].flatMap((t) => [
    ...lines(sh('iptables', ['-t', t, '-S'])).map((r) => `ip4 ${t} ${r}`),
    ...lines(sh('ip6tables', ['-t', t, '-S'])).map((r) => `ip6 ${t} ${r}`),
  ]);
  return {
    links: lines(sh('ip', ['-o', 'link', 'show'])).map((l) => l.split(':')[1]?.trim().split('@')[0] ?? l).sort(),
    routes: lines(sh('ip', ['route', 'show', 'table', 'all'])),
    netns: lines(sh('ip', ['netns', 'list'])),
    rules,
    ipsets: lines(sh('ipset', ['list', '-n'])),
    mounts: lines(readFileSync('/proc/self/mountinfo', 'utf8')).map((l) => l.split(' ')[4] ?? '').sort(),
    cgroups: cgroupDirs(),
    paths: HOST_PATHS.filter((p) => existsSync(p)),
  };
}

/** Human-readable differences, empty when the host is as it was. */
export function differences(before: HostSnapshot, after: HostSnapshot): string[] {
  const out: string[] = [];
  for (const key of Object.keys(before) as (keyof HostSnapshot)[]) {
    const was = new Set(before[key]);
    const now = new Set(after[key]);
    for (const x of now) if (!was.has(x)) out.push(`${key}: left behind: ${x}`);
    for (const x of was) if (!now.has(x)) out.push(`${key}: gone: ${x}`);
  }
  return out;
}

/** `iptables -S` words: split on blanks, double quotes group (as iptables prints comments). */
function words(rule: string): string[] {
  return [...rule.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '');
}

/**
 * Removes every iptables rule, chain and ipset that is not in `before` (those kube-proxy,
 * kubelet and kube-router leave when their own cleanup misses some: canaries, empty chains).
 */
export function restoreRules(before: HostSnapshot): void {
  const had = new Set(before.rules);
  for (let pass = 0; pass < 3; pass++) {
    const added = snapshot().rules.filter((r) => !had.has(r));
    if (added.length === 0) break;
    for (const r of added.filter((x) => / -A /.test(` ${x} `))) {
      const [family, table, , ...rest] = words(r);
      tryRun(family === 'ip6' ? 'ip6tables' : 'iptables', ['-t', table as string, '-D', ...rest]);
    }
    for (const r of added.filter((x) => / -N /.test(` ${x} `))) {
      const [family, table, , chain] = words(r);
      const cmd = family === 'ip6' ? 'ip6tables' : 'iptables';
      tryRun(cmd, ['-t', table as string, '-F', chain as string]);
      tryRun(cmd, ['-t', table as string, '-X', chain as string]);
    }
  }
  const sets = new Set(before.ipsets);
  for (const set of snapshot().ipsets) if (!sets.has(set)) tryRun('ipset', ['destroy', set]);
}

function tryRun(cmd: string, args: string[]): void {
  try {
    sh(cmd, args);
  } catch {
    // referenced still, or gone already: the next pass or the final comparison tells
  }
}
