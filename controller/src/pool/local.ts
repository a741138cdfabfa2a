import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { claimInOrder, type ClaimQueue } from './claim-queue.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, PoolSnapshot, SessionWorker } from './types.js';

export interface LocalPoolOptions {
  size: number;
  /** Run with `sh -c 'exec <command>'`; the worker gets HOST and PORT and must answer GET /healthz. */
  command: string;
  env: Readonly<Record<string, string | undefined>>;
  host: string;
  queue: ClaimQueue;
  logger: Logger;
  metrics: Metrics;
  /** SIGTERM, then SIGKILL after this long. */
  stopGraceMs?: number;
  probeIntervalMs?: number;
}

type State = 'warming' | 'warm' | 'assigned' | 'stopping';

interface LocalWorker {
  name: string;
  child: ChildProcess;
  port: number;
  state: State;
  spawnedAt: number;
  session?: SessionWorker;
  exited: Promise<void>;
}

/** Asks the kernel for a free port; the short window before the worker binds it is accepted. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function probe(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/healthz', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

/**
 * The embedded pool: the article's first, hand-made orchestrator, with processes for
 * containers. It keeps `size` workers warming or warm; a claim marks one assigned and starts its
 * replacement; a release stops the process; an assigned worker that exits is a lost session.
 */
export class LocalPool implements PoolBackend {
  readonly name = 'local';
  private readonly workers = new Map<string, LocalWorker>();
  private readonly bySession = new Map<string, LocalWorker>();
  private readonly goneListeners: GoneListener[] = [];
  private spawning = 0;
  private serial = 0;
  /** Consecutive workers that died before turning warm; spaces out restarts of a broken command. */
  private failures = 0;
  private stopped = false;
  private ready = false;
  private readonly stopGraceMs: number;
  private readonly probeIntervalMs: number;

  constructor(private readonly options: LocalPoolOptions) {
    this.stopGraceMs = options.stopGraceMs ?? 5000;
    this.probeIntervalMs = options.probeIntervalMs ?? 100;
  }

  async start(): Promise<void> {
    this.reconcile();
    this.ready = true;
  }

  isReady(): boolean {
    return this.ready && !this.stopped;
  }

  claim(request: ClaimRequest): Promise<SessionWorker> {
    return claimInOrder(this.options.queue, () => this.take(request), request.signal);
  }

  lookup(hash: string): SessionWorker | undefined {
    return this.bySession.get(hash)?.session;
  }

  /** This process made every session it has: what it does not know does not exist. */
  async waitForSession(hash: string): Promise<SessionWorker | undefined> {
    return this.lookup(hash);
  }

  *sessions(): Iterable<SessionWorker> {
    for (const w of this.bySession.values()) if (w.session) yield w.session;
  }

  recordActivity(hash: string, at: number): void {
    const worker = this.bySession.get(hash);
    if (worker?.session && at > worker.session.lastActivity) worker.session = { ...worker.session, lastActivity: at };
  }

  /** A process holds no version to guard on: this replica alone serves it, so every end is final. */
  async release(session: SessionWorker, _reason: EndReason): Promise<boolean> {
    const worker = this.bySession.get(session.hash);
    if (!worker) return false;
    this.bySession.delete(session.hash);
    await this.terminate(worker);
    return true;
  }

  snapshot(): PoolSnapshot {
    const count = { warm: 0, warming: this.spawning, assigned: 0 };
    for (const w of this.workers.values()) {
      if (w.state === 'warm') count.warm++;
      else if (w.state === 'warming') count.warming++;
      else if (w.state === 'assigned') count.assigned++;
    }
    return { backend: this.name, ...count, pendingClaims: this.options.queue.length };
  }

  onGone(listener: GoneListener): void {
    this.goneListeners.push(listener);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.bySession.clear();
    await Promise.all([...this.workers.values()].map((w) => this.terminate(w)));
  }

  private take(request: ClaimRequest): SessionWorker | undefined {
    const warm = [...this.workers.values()].filter((w) => w.state === 'warm');
    const worker = warm[Math.floor(Math.random() * warm.length)];
    if (!worker) return undefined;
    const now = Date.now();
    worker.state = 'assigned';
    worker.session = {
      hash: request.hash,
      worker: worker.name,
      endpoint: { host: this.options.host, port: worker.port },
      createdAt: now,
      lastActivity: now,
      client: request.client,
      version: '1',
    };
    this.bySession.set(request.hash, worker);
    this.reconcile();
    return worker.session;
  }

  /** Starts workers until `size` are warming or warm; a no-op once stopped. */
  private reconcile(): void {
    this.publish();
    if (this.stopped) return;
    let have = this.spawning;
    for (const w of this.workers.values()) if (w.state === 'warm' || w.state === 'warming') have++;
    for (; have < this.options.size; have++) void this.spawnOne();
  }

  private async spawnOne(): Promise<void> {
    this.spawning++;
    try {
      if (this.failures > 0) await sleep(Math.min(30_000, 250 * 2 ** Math.min(this.failures - 1, 10)));
      const port = await freePort(this.options.host);
      if (this.stopped) return;
      this.launch(port);
    } catch (err) {
      this.options.logger.error({ err: (err as Error).message }, 'cannot start a local worker');
      this.failures++;
    } finally {
      this.spawning--;
    }
    // The finally above ran before this line, so a failed start is retried here.
    this.reconcile();
  }

  private launch(port: number): void {
    const name = `local-worker-${++this.serial}`;
    const child = spawn('/bin/sh', ['-c', `exec ${this.options.command}`], {
      env: { ...this.options.env, HOST: this.options.host, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
      // Its own process group, so a stop reaches whatever the command started.
      detached: true,
    });
    const worker: LocalWorker = {
      name,
      child,
      port,
      state: 'warming',
      spawnedAt: Date.now(),
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n').filter(Boolean)) this.options.logger.warn({ worker: name, stderr: line }, 'worker stderr');
    });
    child.once('error', (err) => this.options.logger.error({ worker: name, err: err.message }, 'worker failed to start'));
    child.once('exit', (code, signal) => this.exited(worker, code, signal));
    this.workers.set(name, worker);
    this.options.logger.debug({ worker: name, pid: child.pid, port }, 'worker started');
    void this.watchReadiness(worker);
  }

  private async watchReadiness(worker: LocalWorker): Promise<void> {
    while (worker.state === 'warming' && !this.stopped) {
      if (await probe(this.options.host, worker.port)) {
        if (worker.state !== 'warming') return;
        worker.state = 'warm';
        this.failures = 0;
        this.options.metrics.podStartup.observe((Date.now() - worker.spawnedAt) / 1000);
        this.options.logger.info({ worker: worker.name, port: worker.port }, 'worker warm');
        this.publish();
        this.options.queue.wake();
        return;
      }
      await sleep(this.probeIntervalMs);
    }
  }

  private exited(worker: LocalWorker, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(worker.name);
    const previous = worker.state;
    worker.state = 'stopping';
    if (previous === 'warming') this.failures++;
    if (previous === 'assigned' && worker.session) {
      this.bySession.delete(worker.session.hash);
      const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
      for (const listener of this.goneListeners) listener(worker.session.hash, worker.name, 'lost', why);
    } else if (previous !== 'stopping') {
      this.options.logger.warn({ worker: worker.name, code, signal, state: previous }, 'worker exited unexpectedly');
    }
    this.reconcile();
  }

  private async terminate(worker: LocalWorker): Promise<void> {
    worker.state = 'stopping';
    this.signal(worker, 'SIGTERM');
    const timer = setTimeout(() => this.signal(worker, 'SIGKILL'), this.stopGraceMs);
    await worker.exited;
    clearTimeout(timer);
  }

  private signal(worker: LocalWorker, signal: NodeJS.Signals): void {
    if (worker.child.pid === undefined || worker.child.exitCode !== null || worker.child.signalCode !== null) return;
    try {
      process.kill(-worker.child.pid, signal);
    } catch {
      // The group is already gone.
    }
  }

  private publish(): void {
    const s = this.snapshot();
    const gauge = this.options.metrics.poolPods;
    gauge.set({ state: 'warm' }, s.warm);
    gauge.set({ state: 'warming' }, s.warming);
    gauge.set({ state: 'assigned' }, s.assigned);
  }
}
