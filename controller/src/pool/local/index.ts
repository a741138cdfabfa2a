import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { ClaimQueue } from '../claim-queue.js';
import type { ClaimRequest, EndReason, GoneListener, PoolCounts, SessionWorker } from '../types.js';
import { systemClock, type Clock } from './clock.js';
import { StartFailures } from './failures.js';
import { processLauncher, type Exit, type Launcher, type WorkerProcess } from './process.js';

export type { Clock } from './clock.js';
export type { Exit, Launcher, WorkerProcess } from './process.js';

export interface LocalPoolOptions {
  /** The pool's name, in sessions, /pool and metrics. */
  name: string;
  size: number;
  /** Run by /bin/sh as `exec <command>`; the worker gets HOST and PORT and must answer GET /healthz. */
  command: string;
  env: Readonly<Record<string, string | undefined>>;
  host: string;
  /** Woken with this pool's name when one of its workers turns warm. */
  queue: ClaimQueue;
  logger: Logger;
  metrics: Metrics;
  /** SIGTERM, then SIGKILL after this long. */
  stopGraceMs?: number;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  clock?: Clock;
  /** How a worker is started; by default a process under the watchdog shell (see process.ts). */
  launcher?: Launcher;
}

type State = 'warming' | 'warm' | 'checking' | 'assigned' | 'stopping';

interface LocalWorker {
  name: string;
  proc: WorkerProcess;
  state: State;
  spawnedAt: number;
  session?: SessionWorker;
}

/**
 * The embedded pool: the article's first, hand-made orchestrator, with processes for
 * containers. It keeps `size` workers warming or warm; a claim re-probes the oldest warm worker,
 * marks it assigned and starts its replacement; a release stops the process; an assigned worker
 * that exits is a lost session.
 */
export class LocalPool {
  private readonly workers = new Map<string, LocalWorker>();
  private readonly bySession = new Map<string, LocalWorker>();
  private readonly goneListeners: GoneListener[] = [];
  /** Starts under way (backing off or launching), so stop() can wait for them. */
  private readonly starting = new Set<Promise<void>>();
  private serial = 0;
  private readonly failures: StartFailures;
  private started = false;
  private readonly stopping = new AbortController();
  private readonly clock: Clock;
  private readonly launcher: Launcher;
  private readonly probeIntervalMs: number;

  constructor(private readonly options: LocalPoolOptions) {
    this.clock = options.clock ?? systemClock;
    this.probeIntervalMs = options.probeIntervalMs ?? 100;
    this.failures = new StartFailures(options.size, options.logger);
    this.launcher = options.launcher ?? processLauncher({
      command: options.command,
      env: options.env,
      host: options.host,
      logger: options.logger,
      clock: this.clock,
      stopGraceMs: options.stopGraceMs ?? 5000,
      probeTimeoutMs: options.probeTimeoutMs ?? 1000,
    });
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  async start(): Promise<void> {
    if (this.options.size === 0) this.options.logger.warn({ problem: this.failures.problem() }, 'this pool can never serve a session');
    this.reconcile();
    this.started = true;
  }

  /** Ready once started and until stopped, unless the pool cannot serve (see `problem`). */
  isReady(): boolean {
    return this.started && !this.stopped && this.failures.problem() === undefined;
  }

  get poolName(): string {
    return this.options.name;
  }

  lookup(hash: string): SessionWorker | undefined {
    return this.bySession.get(hash)?.session;
  }

  *sessions(): Iterable<SessionWorker> {
    for (const w of this.bySession.values()) if (w.session) yield w.session;
  }

  /** A scan: a local pool holds a few workers. */
  sessionCount(client?: string): number {
    let n = 0;
    for (const s of this.sessions()) if (client === undefined || s.client === client) n++;
    return n;
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

  counts(): PoolCounts {
    const count = { warm: 0, warming: this.starting.size, assigned: 0 };
    for (const w of this.workers.values()) {
      if (w.state === 'warm' || w.state === 'checking') count.warm++;
      else if (w.state === 'warming') count.warming++;
      else if (w.state === 'assigned') count.assigned++;
    }
    const problem = this.failures.problem();
    return { ...count, size: this.options.size, ...(problem ? { problem } : {}) };
  }


  onGone(listener: GoneListener): void {
    this.goneListeners.push(listener);
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.bySession.clear();
    await Promise.all(this.starting);
    await Promise.all([...this.workers.values()].map((w) => this.terminate(w)));
  }

  /**
   * Hands out the oldest warm worker that still answers its probe: a worker can die or hang
   * silently while it waits, and a session given a dead worker would be lost at its first
   * request. Those that fail are stopped and replaced.
   */
  async take(request: ClaimRequest): Promise<SessionWorker | undefined> {
    for (;;) {
      const worker = [...this.workers.values()].find((w) => w.state === 'warm');
      if (!worker) return undefined;
      worker.state = 'checking';
      const healthy = await worker.proc.healthy();
      if (worker.state !== 'checking') continue;
      if (healthy) return this.assign(worker, request);
      this.options.logger.warn({ worker: worker.name }, 'warm worker failed its probe before a claim; replacing it');
      void this.terminate(worker);
      this.reconcile();
    }
  }

  private assign(worker: LocalWorker, request: ClaimRequest): SessionWorker {
    const now = this.clock.now();
    worker.state = 'assigned';
    worker.session = {
      hash: request.hash,
      worker: worker.name,
      endpoint: { host: this.options.host, port: worker.proc.port },
      createdAt: now,
      lastActivity: now,
      client: request.client,
      pool: this.options.name,
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
    let have = this.starting.size;
    for (const w of this.workers.values()) if (w.state === 'warm' || w.state === 'warming' || w.state === 'checking') have++;
    for (; have < this.options.size; have++) {
      // Once this start is done counting, look again: it may have failed, or its worker died already.
      const start: Promise<void> = this.startOne().then(() => {
        this.starting.delete(start);
        this.reconcile();
      });
      this.starting.add(start);
    }
  }

  private async startOne(): Promise<void> {
    const backoff = this.failures.backoffMs();
    if (backoff > 0) await this.clock.sleep(backoff, this.stopping.signal);
    if (this.stopped) return;
    const name = `${this.options.name}-worker-${++this.serial}`;
    const spawnedAt = this.clock.now();
    let proc: WorkerProcess;
    try {
      proc = await this.launcher(name);
    } catch (err) {
      this.options.logger.error({ worker: name, err: (err as Error).message }, 'cannot start a local worker');
      this.failures.failed((err as Error).message);
      return;
    }
    const worker: LocalWorker = { name, proc, state: 'warming', spawnedAt };
    this.workers.set(name, worker);
    void proc.exited.then((exit) => this.exited(worker, exit));
    void this.watchReadiness(worker);
  }

  private async watchReadiness(worker: LocalWorker): Promise<void> {
    while (worker.state === 'warming' && !this.stopped) {
      if (await worker.proc.healthy()) {
        if (worker.state !== 'warming') return;
        worker.state = 'warm';
        this.failures.warm();
        this.options.metrics.podStartup.observe({ pool: this.options.name }, (this.clock.now() - worker.spawnedAt) / 1000);
        this.options.logger.info({ worker: worker.name, port: worker.proc.port }, 'worker warm');
        this.publish();
        this.options.queue.wake(this.options.name);
        return;
      }
      await this.clock.sleep(this.probeIntervalMs, this.stopping.signal);
    }
  }

  private exited(worker: LocalWorker, { code, signal }: Exit): void {
    this.workers.delete(worker.name);
    const previous = worker.state;
    worker.state = 'stopping';
    if (previous === 'warming') this.failures.failed(worker.proc.lastStderr());
    if (previous === 'assigned' && worker.session) {
      this.bySession.delete(worker.session.hash);
      const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
      for (const listener of this.goneListeners) listener(worker.session, 'lost', why);
    } else if (previous !== 'stopping') {
      this.options.logger.warn({ worker: worker.name, code, signal, state: previous }, 'worker exited unexpectedly');
    }
    this.reconcile();
  }

  private async terminate(worker: LocalWorker): Promise<void> {
    worker.state = 'stopping';
    await worker.proc.stop();
  }

  private publish(): void {
    const counts = this.counts();
    for (const state of ['warm', 'warming', 'assigned'] as const) this.options.metrics.poolPods.set({ pool: this.options.name, state }, counts[state]);
  }
}
