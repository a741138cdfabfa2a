/** kubectl against the node tier, for its tests: plain calls, exec into a container, port-forward. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { nodeStatePath, nodeTier, type NodeState } from './paths.js';

export function kubectl(...args: string[]): string {
  return execFileSync(nodeTier.kubectlPath, args, { env: { ...process.env, KUBECONFIG: nodeTier.kubeconfigPath }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export const nodeState = (): NodeState => JSON.parse(readFileSync(nodeStatePath, 'utf8')) as NodeState;

/** The imported image whose name contains `part` (`/controller:`, `/chatbot-worker:`). */
export function imageNamed(part: string): string {
  const name = nodeState().images.find((n) => n.includes(part));
  if (!name) throw new Error(`no image ${part} in ${nodeStatePath}`);
  return name;
}

/**
 * Runs a Node.js snippet inside a running container (kubelet's exec, through the API server)
 * and returns what it printed. The snippet dials with a deadline and prints a verdict, so a
 * dropped packet shows as output rather than as a hung test.
 */
export function execNode(ns: string, pod: string, script: string): string {
  return kubectl('exec', '-n', ns, pod, '--', 'node', '-e', script).trim();
}

/** A TCP dial from inside a pod: `connected`, or the error code (`ETIMEDOUT` after 3 s). */
export function dialFrom(ns: string, pod: string, host: string, port: number): string {
  return execNode(ns, pod, `const s=require('net').connect(${port},'${host}');s.setTimeout(3000,()=>{console.log('ETIMEDOUT');process.exit(0)});s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(0)})`);
}

/** `kubectl port-forward` to a Service on 127.0.0.1; resolves with the local port. */
export function portForward(ns: string, target: string, port: number): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(nodeTier.kubectlPath, ['port-forward', '-n', ns, '--address', '127.0.0.1', target, `0:${port}`], { env: { ...process.env, KUBECONFIG: nodeTier.kubeconfigPath }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((res, rej) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) res({ port: Number(m[1]), child });
    });
    child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    child.on('exit', (code) => rej(new Error(`port-forward exited ${code}: ${out}`)));
  });
}
