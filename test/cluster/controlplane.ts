/**
 * The control plane both cluster tiers start (etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler), parameterised by the addresses it serves on: `cluster.ts` runs it on
 * 127.0.0.1 with the node agent; `node/node.ts` on the node tier's bridge address with a real
 * kubelet.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError, Kube } from './kube.js';
import { clusterHarnessDir } from './paths.js';
import { freePort, log, type Tier } from './tier.js';

/** The directory of cached binaries; setup.sh builds them first if they are missing. */
export function ensureBinaries(): string {
  const r = spawnSync('bash', [join(clusterHarnessDir, 'setup.sh'), '--print-bin-dir'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`setup.sh failed (exit ${r.status})`);
  return r.stdout.trim();
}

export interface ControlPlaneOptions {
  /** Where the API server listens and what it advertises (the `kubernetes` Service's endpoint). */
  address: string;
  serviceCidr: string;
  /** Further kube-apiserver flags. */
  apiserverArgs: string[];
  /** Further kube-controller-manager flags. */
  controllerManagerArgs?: string[];
}

/**
 * Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler (the PKI must be
 * made, with identities `apiserver`, `admin`, `controller-manager` and `scheduler`), writes the
 * admin kubeconfig and the kubectl link, and resolves once the API server is ready.
 */
export async function startControlPlane(tier: Tier, bin: string, opts: ControlPlaneOptions): Promise<{ server: string; admin: Kube }> {
  const [etcdPort, etcdPeerPort, apiPort] = [await freePort(), await freePort(), await freePort(opts.address)];
  // etcd fsyncs every write; Debian's etcd 3.4 has no --unsafe-no-fsync, so a tmpfs data dir
  // is what keeps it fast.
  const shm = existsSync('/dev/shm') ? '/dev/shm' : tier.dir;
  tier.state = { apiserverPort: apiPort, etcdDataDir: mkdtempSync(join(shm, 'warmpool-etcd-')), processes: [] };
  tier.saveState();

  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  tier.start('etcd', 'etcd', [
    '--name=node0', `--data-dir=${tier.state.etcdDataDir}`,
    `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=node0=${peerUrl}`,
    '--logger=zap', '--log-outputs=stderr',
  ]);
  await tier.waitFor('etcd', 30_000, async () => {
    const res = await fetch(`${etcdUrl}/health`);
    return res.ok ? true : undefined;
  });

  const p = (f: string): string => join(tier.pki, f);
  tier.start('kube-apiserver', join(bin, 'kube-apiserver'), [
    `--etcd-servers=${etcdUrl}`,
    `--bind-address=${opts.address}`, `--advertise-address=${opts.address}`, `--secure-port=${apiPort}`,
    `--tls-cert-file=${p('apiserver.crt')}`, `--tls-private-key-file=${p('apiserver.key')}`,
    `--client-ca-file=${p('ca.crt')}`,
    `--service-account-key-file=${p('sa.pub')}`, `--service-account-signing-key-file=${p('sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc',
    '--authorization-mode=Node,RBAC', '--enable-admission-plugins=NodeRestriction',
    `--service-cluster-ip-range=${opts.serviceCidr}`,
    '--allow-privileged=true', '--profiling=false',
    ...opts.apiserverArgs,
  ]);
  const server = `https://${opts.address}:${apiPort}`;
  tier.writeKubeconfig(tier.kubeconfigPath, server, 'admin');
  symlinkSync(join(bin, 'kubectl'), tier.kubectlPath);
  const admin = Kube.fromKubeconfig(tier.kubeconfigPath);
  await tier.waitFor('kube-apiserver /readyz', 60_000, async () => ((await admin.get<string>('/readyz')) === 'ok' ? true : undefined));

  const kcmConfig = join(tier.dir, 'controller-manager.kubeconfig');
  tier.writeKubeconfig(kcmConfig, server, 'controller-manager');
  tier.start('kube-controller-manager', join(bin, 'kube-controller-manager'), [
    `--kubeconfig=${kcmConfig}`,
    '--bind-address=127.0.0.1', '--secure-port=0',
    `--service-account-private-key-file=${p('sa.key')}`, `--root-ca-file=${p('ca.crt')}`,
    `--cluster-signing-cert-file=${p('ca.crt')}`, `--cluster-signing-key-file=${p('ca.key')}`,
    '--use-service-account-credentials=true', '--controllers=*', '--leader-elect=false',
    // The default client limit (20 requests/s) would take minutes to fill the thousands of
    // hollow pods of `npm run bench` and cap the refill rate below the claim rates it offers.
    '--kube-api-qps=400', '--kube-api-burst=800',
    ...(opts.controllerManagerArgs ?? []),
  ]);

  const schedKubeconfig = join(tier.dir, 'scheduler.kubeconfig');
  tier.writeKubeconfig(schedKubeconfig, server, 'scheduler');
  const schedConfig = join(tier.dir, 'scheduler-config.json');
  writeFileSync(
    schedConfig,
    JSON.stringify({
      apiVersion: 'kubescheduler.config.k8s.io/v1',
      kind: 'KubeSchedulerConfiguration',
      clientConnection: { kubeconfig: schedKubeconfig, qps: 400, burst: 800 },
      leaderElection: { leaderElect: false },
    }),
  );
  tier.start('kube-scheduler', join(bin, 'kube-scheduler'), [`--config=${schedConfig}`, '--bind-address=127.0.0.1', '--secure-port=0']);
  return { server, admin };
}

/** Resolves once the controller manager has made the `default` ServiceAccount and `count` Nodes are Ready. */
export async function waitUsable(tier: Tier, admin: Kube, count: number): Promise<void> {
  await tier.waitFor('the default ServiceAccount (controller manager)', 60_000, async () =>
    (await admin.get('/api/v1/namespaces/default/serviceaccounts/default').catch((e: unknown) => {
      if (e instanceof ApiError && e.code === 404) return undefined;
      throw e;
    }))
      ? true
      : undefined,
  );
  await tier.waitFor('Ready nodes', 60_000, async () => {
    const list = await admin.get<{ items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[] }>('/api/v1/nodes');
    const ready = list.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    return ready.length === count ? true : undefined;
  });
}

/**
 * The `up|down` command line of a tier script: a failed `up` takes down what it started (the
 * logs stay), a failed `down` exits 1.
 */
export function tierCommand(script: string, logs: string, up: () => Promise<void>, down: () => Promise<void>): void {
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
    console.error(`usage: ${script} up|down`);
    process.exitCode = 2;
  }
}
