import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import type { Logger } from '../../log.js';
import type { Clock } from './clock.js';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One worker process, as the pool sees it. */
export interface WorkerProcess {
  readonly pid: number | undefined;
  readonly port: number;
  /** Resolves once the worker has exited and whatever it left in its process group was killed. */
  readonly exited: Promise<Exit>;
  /** The last line the worker wrote to stderr: the likeliest reason a command keeps dying. */
  lastStderr(): string | undefined;
  /** GET /healthz answers 200 within the probe timeout. */
  healthy(): Promise<boolean>;
  /** SIGTERM to the process group, SIGKILL after the grace period; resolves once it has exited. */
  stop(): Promise<void>;
}

/** Starts the worker called `name`; rejects when no process could be started. */
export type Launcher = (name: string) => Promise<WorkerProcess>;

export interface ProcessOptions {
  /** Run as `exec <command>` by /bin/sh; the worker gets HOST and PORT and must answer GET /healthz. */
  command: string;
  env: Readonly<Record<string, string | undefined>>;
  host: string;
  logger: Logger;
  clock: Clock;
  /** SIGTERM, then SIGKILL after this long. */
  stopGraceMs: number;
  probeTimeoutMs: number;
}

/** How long a worker's exit waits for the rest of its stderr. */
const STDERR_DRAIN_MS = 200;

/**
 * The shell line every worker starts under, so that no worker outlives the controller, whatever
 * the command and however the controller dies (kill -9 included; Node cannot ask the kernel for
 * a parent-death signal). It leaves a watcher in the worker's process group that reads fd 3, a
 * socket whose other end only the controller holds: the controller's death closes it, the read
 * sees end-of-file and the watcher kills the whole group. The watcher ignores SIGTERM so that a
 * graceful stop leaves it watching until the group is swept. Then the command replaces the
 * shell, so the pid the controller holds, and the process group, are the worker's.
 */
const WATCHDOG = '(trap "" TERM; while read -r _; do :; done <&3; kill -KILL 0) & exec 3<&- </dev/null; exec ';

/** Asks the kernel for a free port; the short window before the worker binds it is accepted. */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function probe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/healthz', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** Workers as processes on this machine, each in its own process group under the watchdog. */
export function processLauncher(o: ProcessOptions): Launcher {
  return async (name) => {
    const port = await freePort(o.host);
    const child = spawn('/bin/sh', ['-c', WATCHDOG + o.command], {
      env: { ...o.env, HOST: o.host, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
      // Its own process group, so a stop reaches whatever the command started.
      detached: true,
    });
    const lifeline = child.stdio[3] as net.Socket;
    lifeline.on('error', () => undefined);
    let last: string | undefined;
    let done = false;
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n').filter(Boolean)) {
        last = line;
        o.logger.warn({ worker: name, stderr: line }, 'worker stderr');
      }
    });
    const exited = new Promise<Exit>((resolve) => {
      const finish = async (exit: Exit) => {
        if (done) return;
        done = true;
        // The watcher, and anything the worker left behind, go with it.
        signalGroup(child.pid, 'SIGKILL');
        lifeline.destroy();
        // Its last stderr lines may still be in the pipe; a grandchild that left the group could hold it open.
        await Promise.race([new Promise((r) => child.stderr?.once('close', r)), o.clock.sleep(STDERR_DRAIN_MS)]);
        resolve(exit);
      };
      child.once('exit', (code, signal) => void finish({ code, signal }));
      child.once('error', (err) => {
        o.logger.error({ worker: name, err: err.message }, 'worker failed to start');
        if (child.pid === undefined) void finish({ code: null, signal: null });
      });
    });
    o.logger.debug({ worker: name, pid: child.pid, port }, 'worker started');
    return {
      pid: child.pid,
      port,
      exited,
      lastStderr: () => last,
      healthy: async () => !done && probe(o.host, port, o.probeTimeoutMs),
      async stop() {
        if (done) return;
        signalGroup(child.pid, 'SIGTERM');
        const stopped = new AbortController();
        void o.clock.sleep(o.stopGraceMs, stopped.signal).then(() => {
          if (!stopped.signal.aborted && !done) signalGroup(child.pid, 'SIGKILL');
        });
        await exited;
        stopped.abort();
      },
    };
  };
}
