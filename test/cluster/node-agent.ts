/**
 * The test node agent: plays kubelet for one Node of the loopback cluster.
 *
 * It registers the Node (Ready, with a Lease it renews, so the real node lifecycle
 * controller stays content), watches the pods bound to it, and runs each container as a
 * local process bound to the pod's own loopback IP (127.0.N.x). It probes readiness as the
 * pod spec says, writes the pod status a kubelet would, restarts containers as restartPolicy
 * says, and finishes graceful deletion the way kubelet does: SIGTERM, wait up to the grace
 * period, SIGKILL, then delete with gracePeriodSeconds=0 and a uid precondition.
 *
 * It authenticates as system:node:<name>, so the API server's Node authorizer and the
 * NodeRestriction admission plugin hold it to what a kubelet may do.
 *
 * With --hollow it plays a hollow Node for scale tests instead (see hollow-pod.ts): tainted
 * `warmpool.dev/hollow=true:NoSchedule` and labelled `warmpool.dev/hollow: "true"`, so only pods
 * that ask for it (a nodeSelector and a toleration) land there, and those become Running and
 * Ready without a process. Its --net may then be a /16 (127.A), room for thousands of pods.
 *
 * Usage: node-agent.ts --node=NAME --net=127.A.B|127.A --kubeconfig=PATH [--hollow]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HollowPod } from './hollow-pod.js';
import { isAlreadyExists, isConflict, isNotFound, Kube, type ObjectMeta, type WatchEvent } from './kube.js';
import { clusterHarnessDir, logDir, repoRoot } from './paths.js';
import { PodVolumes, withMounts, type Mount, type Volume, type VolumeMount } from './volumes.js';

// ---- the parts of the Pod API this agent reads --------------------------------------------

interface KeyRef {
  name: string;
  key: string;
  optional?: boolean;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    configMapKeyRef?: KeyRef;
    secretKeyRef?: KeyRef;
    resourceFieldRef?: { resource: string };
  };
}
interface EnvFromSource {
  prefix?: string;
  configMapRef?: { name: string; optional?: boolean };
  secretRef?: { name: string; optional?: boolean };
}
interface Probe {
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: string };
  tcpSocket?: { port: number | string; host?: string };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: EnvFromSource[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  volumeMounts?: VolumeMount[];
}
interface Pod {
  metadata: ObjectMeta;
  spec: {
    nodeName?: string;
    serviceAccountName?: string;
    restartPolicy?: 'Always' | 'OnFailure' | 'Never';
    containers: Container[];
    volumes?: Volume[];
  };
  status?: { phase?: string; conditions?: Condition[] };
}
interface Condition {
  type: string;
  status: 'True' | 'False';
  lastTransitionTime?: string;
  reason?: string;
}
type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; signal?: number; reason: string; startedAt: string; finishedAt: string; containerID?: string } };

// ---- arguments and environment --------------------------------------------------------------

function arg(name: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (!hit) {
    console.error(`node-agent: --${name}= is required`);
    process.exit(2);
  }
  return hit.slice(name.length + 3);
}

const nodeName = arg('node');
const hollow = process.argv.includes('--hollow');
const net = arg('net');
if (!/^127\.\d{1,3}(\.\d{1,3})?$/.test(net)) throw new Error(`--net must be 127.A.B or 127.A, got ${net}`);
/** A /16 net: pod IPs net.C.D (C 0-255). A /24: net.D. */
const wide = net.split('.').length === 2;
const hostIP = wide ? `${net}.0.1` : `${net}.1`;
const kube = Kube.fromKubeconfig(arg('kubeconfig'));
const apiPort = kube.server.port;

/** Image -> argv. A different map can be given in WARMPOOL_IMAGE_MAP (same format). */
const imageMapPath = process.env.WARMPOOL_IMAGE_MAP ?? join(clusterHarnessDir, 'images.json');
const imageMap = JSON.parse(readFileSync(imageMapPath, 'utf8')) as Record<string, string[]>;

/** Label and taint key of a hollow Node. */
const HOLLOW = 'warmpool.dev/hollow';
const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const microNow = (): string => new Date().toISOString().replace(/Z$/, '000Z');
const log = (msg: string): void => console.log(`${new Date().toISOString()} ${nodeName}: ${msg}`);
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Repository name of an image reference: no registry of the default kind, no tag, no digest. */
function imageName(image: string): string {
  let name = image.split('@')[0] ?? image;
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) name = name.slice(0, colon);
  return name.replace(/^docker\.io\//, '').replace(/^library\//, '');
}

/** Only loopback may ever be a target here, probes included. */
function assertLoopback(host: string): void {
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) && host !== 'localhost') {
    throw new Error(`refusing to probe ${host}: only loopback addresses are targets in the test cluster`);
  }
}

// ---- pod IPs --------------------------------------------------------------------------------

/**
 * Pod IPs come from this node's own /24 (or /16) on loopback (.1 is the node; .0 and .255 of
 * every /24 are skipped). They are handed out round-robin so a just-released address (sockets
 * in TIME_WAIT) is not reused at once.
 */
class IpPool {
  private readonly used = new Set<string>();
  private next = 0;
  private readonly size = wide ? 256 * 253 : 253;
  take(): string {
    for (let i = 0; i < this.size; i++) {
      const x = this.next;
      this.next = (this.next + 1) % this.size;
      const ip = wide ? `${net}.${Math.floor(x / 253)}.${(x % 253) + 2}` : `${net}.${x + 2}`;
      if (ip !== hostIP && !this.used.has(ip)) {
        this.used.add(ip);
        return ip;
      }
    }
    throw new Error(`node ${nodeName}: no free pod IP in ${net}`);
  }
  release(ip: string): void {
    this.used.delete(ip);
  }
}
const ips = new IpPool();

// ---- one container ------------------------------------------------------------------------

class ImageNotMapped extends Error {}

/**
 * One container of a pod as a process group. Restarts follow restartPolicy with a backoff
 * of 1 s doubling to 30 s (kubelet's is 10 s to 5 min: far too slow for tests that wait
 * on a restart), reset after a minute of running.
 */
class ContainerRunner {
  proc: ChildProcess | undefined;
  state: ContainerState = { waiting: { reason: 'ContainerCreating' } };
  lastState: ContainerState | Record<string, never> = {};
  ready = false;
  restartCount = 0;
  private containerID: string | undefined;
  private startedAt = '';
  private backoffMs = 1000;
  private probeTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly pod: PodWorker,
    readonly spec: Container,
  ) {}

  get started(): boolean {
    return 'running' in this.state;
  }

  status(): Record<string, unknown> {
    return {
      name: this.spec.name,
      image: this.spec.image,
      imageID: `warmpool-node://${imageName(this.spec.image)}`,
      ...(this.containerID ? { containerID: this.containerID } : {}),
      ready: this.ready,
      started: this.started,
      restartCount: this.restartCount,
      state: this.state,
      lastState: this.lastState,
    };
  }

  private argv(): string[] {
    const { command, args, image } = this.spec;
    const mapped = imageMap[imageName(image)];
    if (!mapped) {
      throw new ImageNotMapped(`image ${image} is not in ${imageMapPath}`);
    }
    const argv = command?.length ? [...command, ...(args ?? [])] : [...mapped, ...(args ?? [])];
    // `node` is the agent's own Node.js, so containers run on the version the tests run on.
    if (argv[0] === 'node') argv[0] = process.execPath;
    return argv;
  }

  async start(): Promise<void> {
    if (this.stopped) return;
    let argv: string[];
    let env: Record<string, string>;
    try {
      argv = this.argv();
      env = await this.pod.containerEnv(this.spec);
    } catch (err) {
      // As kubelet: the container waits with the reason, and the start is retried.
      const reason = err instanceof ImageNotMapped ? 'ErrImageNeverPull' : 'CreateContainerConfigError';
      this.state = { waiting: { reason, message: errText(err) } };
      this.pod.changed();
      this.retryTimer = setTimeout(() => void this.start(), 2000);
      return;
    }
    let mounts: Mount[];
    try {
      mounts = this.pod.volumes.mounts(this.spec.volumeMounts);
    } catch (err) {
      this.state = { waiting: { reason: 'CreateContainerError', message: errText(err) } };
      this.pod.changed();
      this.retryTimer = setTimeout(() => void this.start(), 2000);
      return;
    }
    const [cmd, ...rest] = withMounts(argv, mounts) as [string, ...string[]];
    const logFd = openSync(this.pod.logFile, 'a');
    writeSync(logFd, `--- ${now()} container ${this.spec.name} starting: ${argv.join(' ')}\n`);
    const child = spawn(cmd, rest, { cwd: repoRoot, env, detached: true, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    this.exited = new Promise<void>((res) => {
      child.on('error', (err) => {
        this.onExit(127, null, err.message);
        res();
      });
      child.on('exit', (code, sig) => {
        this.onExit(code ?? 128, sig);
        res();
      });
    });
    if (child.pid === undefined) return;
    this.proc = child;
    this.containerID = `process://${child.pid}`;
    this.startedAt = now();
    this.state = { running: { startedAt: this.startedAt } };
    log(`${this.pod.key}/${this.spec.name}: started pid ${child.pid} on ${this.pod.ip}`);
    this.ready = !this.spec.readinessProbe;
    this.pod.changed();
    if (this.spec.readinessProbe) this.startProbe(this.spec.readinessProbe);
  }

  private onExit(code: number, sig: NodeJS.Signals | null, message?: string): void {
    this.stopProbe();
    this.proc = undefined;
    const exitCode = sig ? 128 + (signalNumbers[sig] ?? 0) : code;
    const ranMs = this.startedAt ? Date.now() - Date.parse(this.startedAt) : 0;
    this.state = {
      terminated: {
        exitCode,
        ...(sig ? { signal: signalNumbers[sig] ?? 0 } : {}),
        reason: message ? 'StartError' : exitCode === 0 ? 'Completed' : 'Error',
        startedAt: this.startedAt || now(),
        finishedAt: now(),
        ...(this.containerID ? { containerID: this.containerID } : {}),
      },
    };
    this.ready = false;
    log(`${this.pod.key}/${this.spec.name}: exited (${sig ?? exitCode})`);
    if (this.stopped) {
      this.pod.changed();
      return;
    }
    const policy = this.pod.pod.spec.restartPolicy ?? 'Always';
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      if (ranMs > 60_000) this.backoffMs = 1000;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
      this.lastState = this.state;
      this.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${delay / 1000}s restarting failed container` } };
      this.retryTimer = setTimeout(() => {
        this.restartCount++;
        void this.start();
      }, delay);
    }
    this.pod.changed();
  }

  private startProbe(p: Probe): void {
    const period = (p.periodSeconds ?? 10) * 1000;
    const failureThreshold = p.failureThreshold ?? 3;
    const successThreshold = p.successThreshold ?? 1;
    let successes = 0;
    let failures = 0;
    const tick = async (): Promise<void> => {
      const ok = await this.probeOnce(p);
      if (!this.proc) return;
      if (ok) {
        failures = 0;
        successes++;
        if (!this.ready && successes >= successThreshold) {
          this.ready = true;
          this.pod.changed();
        }
      } else {
        successes = 0;
        failures++;
        if (this.ready && failures >= failureThreshold) {
          this.ready = false;
          this.pod.changed();
        }
      }
      this.probeTimer = setTimeout(() => void tick(), period);
    };
    this.probeTimer = setTimeout(() => void tick(), (p.initialDelaySeconds ?? 0) * 1000);
  }

  private stopProbe(): void {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  private port(port: number | string): number {
    if (typeof port === 'number') return port;
    const named = this.spec.ports?.find((p) => p.name === port);
    return named ? named.containerPort : Number(port);
  }

  private async probeOnce(p: Probe): Promise<boolean> {
    const timeoutMs = (p.timeoutSeconds ?? 1) * 1000;
    try {
      if (p.httpGet) {
        const host = p.httpGet.host || this.pod.ip;
        assertLoopback(host);
        const scheme = (p.httpGet.scheme ?? 'HTTP').toLowerCase();
        const path = p.httpGet.path ?? '/';
        const res = await fetch(`${scheme}://${host}:${this.port(p.httpGet.port)}${path.startsWith('/') ? path : `/${path}`}`, {
          signal: AbortSignal.timeout(timeoutMs),
          headers: { 'User-Agent': 'kube-probe/warmpool-node-agent' },
        });
        await res.arrayBuffer();
        return res.status >= 200 && res.status < 400;
      }
      if (p.tcpSocket) {
        const host = p.tcpSocket.host || this.pod.ip;
        assertLoopback(host);
        const port = this.port(p.tcpSocket.port);
        return await new Promise<boolean>((res) => {
          const sock = connect({ host, port, timeout: timeoutMs });
          sock.on('connect', () => (sock.destroy(), res(true)));
          sock.on('timeout', () => (sock.destroy(), res(false)));
          sock.on('error', () => res(false));
        });
      }
      log(`${this.pod.key}/${this.spec.name}: only httpGet and tcpSocket probes are supported; the container stays unready`);
      return false;
    } catch {
      return false;
    }
  }

  /** Stops for good: no more restarts or probes. */
  halt(): void {
    this.stopped = true;
    this.stopProbe();
    clearTimeout(this.retryTimer);
    if (!this.proc && 'waiting' in this.state) {
      this.state = { terminated: { exitCode: 0, reason: 'Completed', startedAt: now(), finishedAt: now() } };
    }
  }

  signal(sig: NodeJS.Signals): void {
    const pid = this.proc?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // the group is gone already
    }
  }

  /** SIGTERM, then SIGKILL once `graceMs` has passed; resolves when the process is gone. */
  async kill(graceMs: number): Promise<void> {
    this.halt();
    if (!this.proc) return;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6 };

// ---- one pod ------------------------------------------------------------------------------

class PodWorker {
  readonly containers: ContainerRunner[];
  readonly ip: string;
  readonly logFile: string;
  readonly volumes: PodVolumes;
  private readonly startTime = now();
  private readonly transitions = new Map<string, { status: string; at: string }>();
  private terminating = false;
  private pushing = false;
  private dirty = false;
  private gone = false;

  constructor(public pod: Pod) {
    this.ip = ips.take();
    this.logFile = join(logDir, `${pod.metadata.namespace}_${pod.metadata.name}.log`);
    this.containers = pod.spec.containers.map((c) => new ContainerRunner(this, c));
    const m = pod.metadata;
    this.volumes = new PodVolumes(
      kube,
      { namespace: m.namespace ?? 'default', name: m.name, uid: m.uid, serviceAccountName: pod.spec.serviceAccountName ?? 'default', volumes: pod.spec.volumes ?? [] },
      (fieldPath) => this.field(fieldPath),
      (msg) => log(`${this.key}: ${msg}`),
    );
  }

  get key(): string {
    return `${this.pod.metadata.namespace}/${this.pod.metadata.name}`;
  }

  private get path(): string {
    return `/api/v1/namespaces/${this.pod.metadata.namespace}/pods/${this.pod.metadata.name}`;
  }

  async start(): Promise<void> {
    log(`${this.key}: admitted, pod IP ${this.ip}`);
    this.changed();
    // As kubelet: containers start only once every volume could be made (FailedMount otherwise).
    while (!this.terminating) {
      try {
        await this.volumes.prepare();
        break;
      } catch (err) {
        log(`${this.key}: volumes: ${errText(err)}; retrying`);
        await sleep(2000);
      }
    }
    if (this.terminating) return;
    for (const c of this.containers) void c.start();
  }

  /** Environment of a container, built as kubelet builds it (envFrom, then env), plus loopback wiring. */
  async containerEnv(c: Container): Promise<Record<string, string>> {
    const ns = this.pod.metadata.namespace ?? 'default';
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      HOSTNAME: this.pod.metadata.name,
      // In-cluster clients find the API server through these; here it is on loopback.
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: apiPort,
      KUBERNETES_SERVICE_PORT_HTTPS: apiPort,
      KUBERNETES_PORT: `tcp://127.0.0.1:${apiPort}`,
    };
    const configMaps = new Map<string, Record<string, string> | undefined>();
    const secrets = new Map<string, Record<string, string> | undefined>();
    const source = async (kind: 'configmaps' | 'secrets', name: string, optional: boolean | undefined): Promise<Record<string, string> | undefined> => {
      const cache = kind === 'configmaps' ? configMaps : secrets;
      if (!cache.has(name)) {
        try {
          const obj = await kube.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${ns}/${kind}/${name}`);
          const data = obj.data ?? {};
          cache.set(
            name,
            kind === 'secrets' ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])) : data,
          );
        } catch (err) {
          if (!isNotFound(err)) throw err;
          cache.set(name, undefined);
        }
      }
      const data = cache.get(name);
      if (!data && !optional) throw new Error(`${kind.slice(0, -1)} "${name}" not found`);
      return data;
    };
    for (const from of c.envFrom ?? []) {
      const data = from.configMapRef
        ? await source('configmaps', from.configMapRef.name, from.configMapRef.optional)
        : from.secretRef
          ? await source('secrets', from.secretRef.name, from.secretRef.optional)
          : undefined;
      for (const [k, v] of Object.entries(data ?? {})) env[`${from.prefix ?? ''}${k}`] = v;
    }
    for (const e of c.env ?? []) {
      const vf = e.valueFrom;
      if (!vf) {
        env[e.name] = expand(e.value ?? '', env);
      } else if (vf.fieldRef) {
        env[e.name] = this.field(vf.fieldRef.fieldPath);
      } else if (vf.configMapKeyRef || vf.secretKeyRef) {
        const ref = (vf.configMapKeyRef ?? vf.secretKeyRef) as KeyRef;
        const kind = vf.configMapKeyRef ? 'configmaps' : 'secrets';
        const value = (await source(kind, ref.name, ref.optional))?.[ref.key];
        if (value !== undefined) env[e.name] = value;
        else if (!ref.optional) throw new Error(`key "${ref.key}" not found in ${kind.slice(0, -1)} "${ref.name}"`);
      } else {
        throw new Error(`env ${e.name}: resourceFieldRef is not supported by the test node agent`);
      }
    }
    // Containers share the host's network here, so a process has its own address only if it
    // binds to it: HOST and POD_IP always carry the pod IP, whatever the pod spec says.
    env.HOST = this.ip;
    env.POD_IP = this.ip;
    env.WARMPOOL_CLUSTER = process.env.WARMPOOL_CLUSTER ?? '';
    return env;
  }

  private field(path: string): string {
    const m = this.pod.metadata;
    const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
    if (label?.[1]) return m.labels?.[label[1]] ?? '';
    const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(path);
    if (annotation?.[1]) return m.annotations?.[annotation[1]] ?? '';
    switch (path) {
      case 'metadata.name':
        return m.name;
      case 'metadata.namespace':
        return m.namespace ?? 'default';
      case 'metadata.uid':
        return m.uid;
      case 'spec.nodeName':
        return nodeName;
      case 'spec.serviceAccountName':
        return this.pod.spec.serviceAccountName ?? 'default';
      case 'status.podIP':
      case 'status.podIPs':
        return this.ip;
      case 'status.hostIP':
      case 'status.hostIPs':
        return hostIP;
      default:
        throw new Error(`fieldRef ${path} is not supported by the test node agent`);
    }
  }

  private condition(type: string, ok: boolean): Condition {
    const status = ok ? 'True' : 'False';
    const prev = this.transitions.get(type);
    const at = prev && prev.status === status ? prev.at : now();
    this.transitions.set(type, { status, at });
    return { type, status, lastTransitionTime: at };
  }

  private phase(): string {
    const cs = this.containers;
    if (cs.some((c) => c.proc || 'running' in c.state)) return 'Running';
    const policy = this.pod.spec.restartPolicy ?? 'Always';
    const terminated = cs.map((c) => ('terminated' in c.state ? c.state.terminated : undefined));
    if (terminated.every((t) => t) && policy !== 'Always') {
      if (terminated.every((t) => t?.exitCode === 0)) return 'Succeeded';
      if (policy === 'Never') return 'Failed';
    }
    return cs.some((c) => c.restartCount > 0 || 'terminated' in c.lastState) ? 'Running' : 'Pending';
  }

  private ready(): boolean {
    return !this.terminating && this.containers.every((c) => c.ready);
  }

  /**
   * Whether the API server's Ready condition of the pod says otherwise than this node sees:
   * someone else wrote it (the node lifecycle controller marks every pod of a Node it takes for
   * gone NotReady), and kubelet's status manager puts such a status back.
   */
  readyDiffers(pod: Pod): boolean {
    const api = pod.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    return api !== undefined && api !== (this.ready() ? 'True' : 'False');
  }

  status(): Record<string, unknown> {
    const phase = this.phase();
    const allReady = this.ready();
    const scheduled = this.pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    return {
      phase,
      conditions: [
        this.condition('PodReadyToStartContainers', true),
        this.condition('Initialized', true),
        this.condition('Ready', allReady),
        this.condition('ContainersReady', allReady),
        scheduled ?? this.condition('PodScheduled', true),
      ],
      hostIP,
      hostIPs: [{ ip: hostIP }],
      podIP: this.ip,
      podIPs: [{ ip: this.ip }],
      startTime: this.startTime,
      containerStatuses: this.containers.map((c) => c.status()),
    };
  }

  /** Marks the status dirty; one write is in flight at a time and carries the latest state. */
  changed(): void {
    this.dirty = true;
    if (!this.pushing) void this.push();
  }

  private async push(): Promise<void> {
    this.pushing = true;
    try {
      while (this.dirty && !this.gone) {
        this.dirty = false;
        try {
          // The uid makes the write fail instead of landing on a new pod of the same name.
          await kube.mergePatch(`${this.path}/status`, { metadata: { uid: this.pod.metadata.uid }, status: this.status() });
        } catch (err) {
          if (isNotFound(err) || isConflict(err)) {
            this.gone = isNotFound(err);
          } else {
            log(`${this.key}: status write failed (${errText(err)}); retrying`);
            this.dirty = true;
            await sleep(1000);
          }
        }
      }
    } finally {
      this.pushing = false;
    }
  }

  /** Graceful deletion, as kubelet finishes it once the API server set deletionTimestamp. */
  async terminate(): Promise<void> {
    if (this.terminating) return;
    this.terminating = true;
    // kubelet gives every container at least 2 s, even on a forced delete.
    const graceMs = Math.max(this.pod.metadata.deletionGracePeriodSeconds ?? 30, 2) * 1000;
    log(`${this.key}: deleting, grace ${graceMs / 1000}s`);
    await Promise.all(this.containers.map((c) => c.kill(graceMs)));
    this.changed();
    while (this.pushing) await sleep(50);
    // As kubelet, until the pod is gone: a pod whose final delete is lost (etcd away, or a
    // conflict from an API server just restarted) would stay Terminating for good, and so would
    // its namespace.
    while (!stop.signal.aborted) {
      try {
        await kube.delete(this.path, { gracePeriodSeconds: 0, preconditions: { uid: this.pod.metadata.uid } });
        break;
      } catch (err) {
        if (isNotFound(err) || (isConflict(err) && (await this.replaced()))) break;
        log(`${this.key}: final delete failed (${errText(err)}); retrying`);
        await sleep(1000);
      }
    }
    this.release();
  }

  /** Whether the API server has no pod of this name any more, or another one (a new uid). */
  private async replaced(): Promise<boolean> {
    try {
      return (await kube.get<{ metadata: ObjectMeta }>(this.path)).metadata.uid !== this.pod.metadata.uid;
    } catch (err) {
      return isNotFound(err);
    }
  }

  /** The object is gone from the API server (force-deleted): stop at once, write nothing. */
  async vanish(): Promise<void> {
    this.gone = true;
    this.terminating = true;
    await Promise.all(this.containers.map((c) => c.kill(2000)));
    this.release();
  }

  kill(graceMs: number): Promise<unknown> {
    return Promise.all(this.containers.map((c) => c.kill(graceMs)));
  }

  private released = false;
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.volumes.close();
    ips.release(this.ip);
    pods.delete(this.pod.metadata.uid);
    log(`${this.key}: done`);
  }
}

/** Kubernetes' $(VAR) expansion of env values: earlier variables only, $$ escapes. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) =>
    m === '$$' ? '$' : name !== undefined && name in env ? (env[name] ?? m) : m,
  );
}

const pods = new Map<string, PodWorker | HollowPod>();

function admit(pod: Pod): PodWorker | HollowPod {
  if (!hollow) return new PodWorker(pod);
  const ip = ips.take();
  return new HollowPod(pod, {
    kube, hostIP, ip, log, stopping: stop.signal,
    released: () => {
      ips.release(ip);
      pods.delete(pod.metadata.uid);
    },
  });
}

function observe(pod: Pod): void {
  if (pod.spec.nodeName !== nodeName) return;
  let worker = pods.get(pod.metadata.uid);
  if (!worker) {
    if (pod.metadata.deletionTimestamp) {
      // Never started here: nothing to stop, only the final delete.
      void kube
        .delete(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid } })
        .catch(() => undefined);
      return;
    }
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    worker = admit(pod);
    pods.set(pod.metadata.uid, worker);
    void worker.start();
  }
  worker.pod = pod;
  if (!pod.metadata.deletionTimestamp && worker.readyDiffers(pod)) worker.changed();
  if (pod.metadata.deletionTimestamp) void worker.terminate();
}

/** List, then watch from the list's resourceVersion; relist whenever the watch ends or fails. */
async function syncPods(signal: AbortSignal): Promise<void> {
  const base = `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${nodeName}`)}`;
  while (!signal.aborted) {
    try {
      const list = await kube.get<{ metadata: { resourceVersion: string }; items: Pod[] }>(base);
      const seen = new Set(list.items.map((p) => p.metadata.uid));
      for (const [uid, w] of pods) if (!seen.has(uid)) void w.vanish();
      for (const p of list.items) observe(p);
      let rv = list.metadata.resourceVersion;
      await kube.watch<Pod>(
        base,
        rv,
        (ev: WatchEvent<Pod>) => {
          if (ev.type === 'ERROR') throw new Error(`watch error: ${JSON.stringify(ev.object)}`);
          rv = ev.object.metadata.resourceVersion;
          if (ev.type === 'BOOKMARK') return;
          if (ev.type === 'DELETED') void pods.get(ev.object.metadata.uid)?.vanish();
          else observe(ev.object);
        },
        signal,
      );
    } catch (err) {
      if (!signal.aborted) log(`pod watch: ${errText(err)}; relisting`);
      await sleep(1000);
    }
  }
}

// ---- the Node and its Lease ---------------------------------------------------------------

async function registerNode(): Promise<string> {
  const version = await kube.get<{ gitVersion: string }>('/version');
  const node = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: nodeName,
      labels: {
        'kubernetes.io/hostname': nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': process.arch === 'x64' ? 'amd64' : process.arch,
        ...(hollow ? { [HOLLOW]: 'true' } : {}),
      },
    },
    ...(hollow ? { spec: { taints: [{ key: HOLLOW, value: 'true', effect: 'NoSchedule' }] } } : {}),
  };
  let uid: string;
  try {
    uid = (await kube.create<{ metadata: ObjectMeta }>('/api/v1/nodes', node)).metadata.uid;
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    uid = (await kube.get<{ metadata: ObjectMeta }>(`/api/v1/nodes/${nodeName}`)).metadata.uid;
  }
  const resources = { cpu: '8', memory: '16Gi', pods: hollow ? '10000' : '250', 'ephemeral-storage': '100Gi' };
  const nodeStatus = (): Record<string, unknown> => {
    const t = now();
    const cond = (type: string, status: string, reason: string) => ({ type, status, reason, lastHeartbeatTime: t, lastTransitionTime: started });
    return {
      status: {
        capacity: resources,
        allocatable: resources,
        conditions: [
          cond('Ready', 'True', 'KubeletReady'),
          cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
          cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
          cond('PIDPressure', 'False', 'KubeletHasSufficientPID'),
        ],
        addresses: [
          { type: 'InternalIP', address: hostIP },
          { type: 'Hostname', address: nodeName },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
        nodeInfo: {
          kubeletVersion: version.gitVersion,
          kubeProxyVersion: '',
          operatingSystem: 'linux',
          architecture: process.arch === 'x64' ? 'amd64' : process.arch,
          containerRuntimeVersion: `warmpool-node-agent://${process.version}`,
          kernelVersion: '',
          osImage: 'warmpool test node agent',
          machineID: '',
          systemUUID: '',
          bootID: '',
        },
      },
    };
  };
  const started = now();
  await kube.mergePatch(`/api/v1/nodes/${nodeName}/status`, nodeStatus());
  // kubelet reports status every few minutes when nothing changed (the Lease is the heartbeat),
  // and at once when the Node's status is not what it sees: the node lifecycle controller marks
  // a Node whose Lease it missed (its own watch behind after an API server restart) not Ready.
  let reported = Date.now();
  const report = async (): Promise<void> => {
    const node = await kube.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/api/v1/nodes/${nodeName}`);
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
    if (ready && Date.now() - reported < 60_000) return;
    await kube.mergePatch(`/api/v1/nodes/${nodeName}/status`, nodeStatus());
    reported = Date.now();
  };
  setInterval(() => void report().catch((e: unknown) => log(`node status: ${errText(e)}`)), 10_000).unref();
  return uid;
}

async function keepLease(nodeUid: string): Promise<void> {
  const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`;
  const lease = {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: nodeName, namespace: 'kube-node-lease', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: nodeUid }] },
    spec: { holderIdentity: nodeName, leaseDurationSeconds: 40, renewTime: microNow() },
  };
  try {
    await kube.create('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', lease);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
  setInterval(
    () => void kube.mergePatch(path, { spec: { holderIdentity: nodeName, renewTime: microNow() } }).catch((e: unknown) => log(`lease: ${errText(e)}`)),
    10_000,
  ).unref();
}

// ---- main ---------------------------------------------------------------------------------

const stop = new AbortController();
const shutdown = async (): Promise<void> => {
  if (stop.signal.aborted) return;
  stop.abort();
  log('stopping: ending every container');
  await Promise.all([...pods.values()].map((p) => p.kill(5000)));
  kube.close();
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());

const nodeUid = await registerNode();
await keepLease(nodeUid);
log(`registered${hollow ? ' hollow' : ''} (pod IPs in ${net}, API server port ${apiPort}, images from ${resolve(imageMapPath)})`);
await syncPods(stop.signal);
