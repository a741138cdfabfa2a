/**
 * A hollow pod, for scale tests (the node agent's --hollow mode, as kwok and kubemark do it):
 * Running and Ready as soon as it is bound, with its own loopback pod IP, and no process. The
 * API server, the controller manager and the scheduler do all their usual work for it; only the
 * container is missing, so thousands of pods fit on a small machine.
 *
 * Instead of a container, the agent answers on the pod's IP and first container port itself,
 * with one handler shared by every hollow pod: `POST /session` 204 (a worker taking a session's
 * settings) and `GET /healthz` 200, so a claim of a hollow pod goes through the same delivery as
 * a claim of a real one.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { isConflict, isNotFound, type Kube, type ObjectMeta } from './kube.js';

interface HollowPodSpec {
  metadata: ObjectMeta;
  spec: { containers: { name: string; image: string; ports?: { containerPort: number }[] }[] };
  status?: { conditions?: { type: string; status: string }[] };
}

export interface HollowDeps {
  kube: Kube;
  hostIP: string;
  ip: string;
  log: (msg: string) => void;
  /** The agent is stopping: no more retries. */
  stopping: AbortSignal;
  /** The pod is finished here: its IP may go back to the pool. */
  released: () => void;
}

const answer = (req: http.IncomingMessage, res: http.ServerResponse): void => {
  req.resume();
  const path = (req.url ?? '').split('?')[0];
  res.statusCode = req.method === 'POST' && path === '/session' ? 204 : req.method === 'GET' && path === '/healthz' ? 200 : 404;
  res.end();
};

const stamp = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export class HollowPod {
  private readonly server = http.createServer({ keepAliveTimeout: 1000 }, answer);
  private readonly startedAt = stamp();
  private ending = false;
  private done = false;

  constructor(public pod: HollowPodSpec, private readonly d: HollowDeps) {}

  private get path(): string {
    return `/api/v1/namespaces/${this.pod.metadata.namespace}/pods/${this.pod.metadata.name}`;
  }

  async start(): Promise<void> {
    const port = this.pod.spec.containers[0]?.ports?.[0]?.containerPort ?? 8080;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.d.ip, () => resolve());
    }).catch((err: unknown) => this.d.log(`${this.pod.metadata.name}: cannot answer on ${this.d.ip}:${port} (${String(err)})`));
    await this.changed();
  }

  /** Whether the API server's Ready condition says otherwise than this hollow pod (always Ready). */
  readyDiffers(pod: HollowPodSpec): boolean {
    const api = pod.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    return api !== undefined && api !== 'True';
  }

  /** One status write: Running and Ready, with the pod IP. */
  async changed(): Promise<void> {
    if (this.ending) return;
    const at = this.startedAt;
    const cond = (type: string) => ({ type, status: 'True', lastTransitionTime: at });
    const status = {
      phase: 'Running',
      conditions: ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map(cond),
      hostIP: this.d.hostIP,
      hostIPs: [{ ip: this.d.hostIP }],
      podIP: this.d.ip,
      podIPs: [{ ip: this.d.ip }],
      startTime: at,
      containerStatuses: this.pod.spec.containers.map((c) => ({
        name: c.name, image: c.image, imageID: 'warmpool-node://hollow', ready: true, started: true, restartCount: 0, state: { running: { startedAt: at } }, lastState: {},
      })),
    };
    try {
      await this.d.kube.mergePatch(`${this.path}/status`, { metadata: { uid: this.pod.metadata.uid }, status });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) this.d.log(`${this.pod.metadata.name}: status write failed (${String(err)})`);
    }
  }

  /** Graceful deletion has nothing to wait for: the final delete at once (retried as kubelet does). */
  async terminate(): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    this.server.close();
    while (!this.d.stopping.aborted) {
      try {
        await this.d.kube.delete(this.path, { gracePeriodSeconds: 0, preconditions: { uid: this.pod.metadata.uid } });
        break;
      } catch (err) {
        if (isNotFound(err) || isConflict(err)) break;
        await sleep(1000);
      }
    }
    this.release();
  }

  async vanish(): Promise<void> {
    this.ending = true;
    this.server.close();
    this.release();
  }

  async kill(): Promise<void> {
    this.server.close();
  }

  private release(): void {
    if (this.done) return;
    this.done = true;
    this.d.released();
  }
}
