/**
 * The control plane both cluster tiers start (etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler), its throwaway PKI and its process bookkeeping, parameterised by the
 * directory a tier keeps its state in and by the addresses it serves on. `cluster.ts` runs it
 * on 127.0.0.1 with the node agent; `node/node.ts` runs it on the node tier's bridge address
 * with a real kubelet.
 *
 * Every process started here carries WARMPOOL_CLUSTER=<state dir> in its environment, so a
 * tier's `down` can find leftovers of a crashed run by that mark and end them by pid.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { alive, eventually } from '../integration/harness.js';
import { ApiError, Kube, kubeconfigJson } from './kube.js';
import { clusterHarnessDir, repoRoot } from './paths.js';

export interface State {
  apiserverPort: number;
  etcdDataDir: string;
  /** Started processes in start order; each leads its own process group. */
  processes: { name: string; pid: number }[];
}

/** A client certificate: file name, subject, and for serving certificates the SANs. */
export interface Identity {
  name: string;
  subject: string;
  usage: 'serverAuth' | 'clientAuth';
  san?: string;
}

export function log(msg: string): void {
  console.error(`cluster: ${msg}`);
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The directory of cached binaries; setup.sh builds them first if they are missing. */
export function ensureBinaries(): string {
  const r = spawnSync('bash', [join(clusterHarnessDir, 'setup.sh'), '--print-bin-dir'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`setup.sh failed (exit ${r.status})`);
  return r.stdout.trim();
}

export function signal(pid: number, sig: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, sig);
  } catch {
    // already gone
  }
}

/** One tier's state directory: PKI, kubeconfigs, logs and the processes it started. */
export class Tier {
  readonly pki: string;
  readonly logs: string;
  readonly statePath: string;
  readonly kubeconfigPath: string;
  readonly kubectlPath: string;
  state: State = { apiserverPort: 0, etcdDataDir: '', processes: [] };

  constructor(readonly dir: string) {
    this.pki = join(dir, 'pki');
    this.logs = join(dir, 'logs');
    this.statePath = join(dir, 'state.json');
    this.kubeconfigPath = join(dir, 'kubeconfig');
    this.kubectlPath = join(dir, 'kubectl');
  }

  readState(): State | undefined {
    return existsSync(this.statePath) ? (JSON.parse(readFileSync(this.statePath, 'utf8')) as State) : undefined;
  }

  saveState(): void {
    writeFileSync(this.statePath, JSON.stringify(this.state, null, 2));
  }

  /**
   * A CA and one key/certificate per identity, plus the service-account signing key pair.
   * EC P-256 keys: generating them is instant, where RSA would add seconds to every start.
   */
  makePki(identities: Identity[]): void {
    const pki = this.pki;
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
    for (const { name, subject, usage, san } of identities) {
      openssl([
        'req', '-x509', '-new', '-config', cnf, '-key', key(name), '-subj', subject, '-days', '30',
        '-CA', join(pki, 'ca.crt'), '-CAkey', caKey,
        '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
        '-addext', `extendedKeyUsage=${usage}`, ...(san ? ['-addext', `subjectAltName=${san}`] : []),
        '-out', join(pki, `${name}.crt`),
      ]);
    }
    const saKey = key('sa');
    openssl(['pkey', '-in', saKey, '-pubout', '-out', join(pki, 'sa.pub')]);
  }

  writeKubeconfig(path: string, server: string, identity: string): void {
    const read = (f: string): string => readFileSync(join(this.pki, f), 'utf8');
    writeFileSync(
      path,
      kubeconfigJson(server, read('ca.crt'), { certPem: read(`${identity}.crt`), keyPem: read(`${identity}.key`) }),
      { mode: 0o600 },
    );
  }

  start(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
    const out = openSync(join(this.logs, `${name}.log`), 'a');
    const child = spawn(cmd, args, {
      cwd: repoRoot,
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, ...env, WARMPOOL_CLUSTER: this.dir },
    });
    if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
    child.unref();
    this.state.processes.push({ name, pid: child.pid });
    this.saveState();
  }

  /** Polls like the tests do, but gives up at once when a component has exited. */
  waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
    return eventually(what, probe, timeoutMs, {
      intervalMs: 250,
      failFast: () => {
        const dead = this.state.processes.find((p) => !alive(p.pid));
        if (dead) throw new Error(`${dead.name} exited; see ${join(this.logs, `${dead.name}.log`)}`);
      },
    });
  }

  /** SIGTERM to each recorded process group, last started first; SIGKILL after 10 s. */
  async stopRecorded(): Promise<void> {
    for (const { pid } of [...(this.readState()?.processes ?? [])].reverse()) {
      signal(pid, 'SIGTERM', true);
      const deadline = Date.now() + 10_000;
      while (alive(pid) && Date.now() < deadline) await sleep(100);
      signal(pid, 'SIGKILL', true);
    }
  }
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
      clientConnection: { kubeconfig: schedKubeconfig },
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
