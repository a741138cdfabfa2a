/**
 * One cluster tier's state directory and bookkeeping: its throwaway PKI, kubeconfigs, logs and
 * the processes it started. Every process started here carries WARMPOOL_CLUSTER=<state dir>
 * in its environment, so a tier's `down` can find leftovers of a crashed run by that mark and
 * end them by pid.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { alive, eventually } from '../integration/harness.js';
import { kubeconfigJson } from './kube.js';
import { repoRoot } from './paths.js';

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

