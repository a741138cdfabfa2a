/**
 * Hard stops of the loopback cluster's own components (etcd, kube-apiserver, ...), for the
 * fault tests: SIGKILL, as a crashed or OOM-killed process, then a restart with the very same
 * command line and environment, recorded in the harness state so `cluster:down` stops the new
 * process (and finds it by its WARMPOOL_CLUSTER mark, which the copied environment carries).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive } from '../integration/harness.js';
import { clusterDir, logDir } from './paths.js';
import { commandLine, environment } from './procs.js';
import { waitUntil } from './wait.js';

const statePath = join(clusterDir, 'state.json');

interface State {
  processes: { name: string; pid: number }[];
}

const readState = (): State => JSON.parse(readFileSync(statePath, 'utf8')) as State;

function entryOf(state: State, name: string): { name: string; pid: number } {
  const entry = state.processes.find((p) => p.name === name);
  if (!entry) throw new Error(`the cluster state (${statePath}) names no ${name}`);
  return entry;
}

export interface StoppedComponent {
  /** Pid of the process that was killed. */
  readonly pid: number;
  /** Starts the component again as it was started; resolves with the new pid. */
  restart(): Promise<number>;
}

/**
 * SIGKILLs the component's process group and waits until it is gone. The state keeps the
 * dead pid meanwhile (cluster:down copes), and the restart re-reads the state before writing
 * it, so components stopped at the same time do not overwrite each other's pids.
 * etcd's data directory (on /dev/shm) is left alone, so a restarted etcd has every object.
 */
export async function stopComponent(name: string): Promise<StoppedComponent> {
  const { pid } = entryOf(readState(), name);
  const argv = commandLine(pid);
  const env = environment(pid);
  const cwd = readlinkSync(`/proc/${pid}/cwd`);
  process.kill(-pid, 'SIGKILL');
  await waitUntil(`${name} (pid ${pid}) exits`, async () => (alive(pid) ? undefined : true), 30_000);
  return {
    pid,
    async restart() {
      const out = openSync(join(logDir, `${name}.log`), 'a');
      const child = spawn(argv[0] as string, argv.slice(1), { cwd, detached: true, stdio: ['ignore', out, out], env });
      closeSync(out);
      child.unref();
      if (child.pid === undefined) throw new Error(`${name}: could not start ${argv[0] as string}`);
      const state = readState();
      entryOf(state, name).pid = child.pid;
      writeFileSync(statePath, JSON.stringify(state, null, 2));
      return child.pid;
    },
  };
}

export interface PausedComponent {
  readonly pid: number;
  /** SIGCONT: the component carries on where it stopped. */
  resume(): void;
}

/**
 * SIGSTOPs the component's process group: a hung process, not a dead one. Its listening socket
 * stays open and the kernel still accepts connections on it, but nothing answers them.
 */
export function pauseComponent(name: string): PausedComponent {
  const { pid } = entryOf(readState(), name);
  process.kill(-pid, 'SIGSTOP');
  return { pid, resume: () => process.kill(-pid, 'SIGCONT') };
}

/** The API server's port on 127.0.0.1. */
export function apiServerPort(): number {
  return (readState() as State & { apiserverPort: number }).apiserverPort;
}
