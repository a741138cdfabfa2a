/**
 * Pod volumes for the test node agent, made of plain directories: projected (service-account
 * token, ConfigMap, Secret, downward API), configMap, secret, downwardAPI and emptyDir.
 *
 * This is what lets a pod use the standard in-cluster path: the ServiceAccount admission
 * plugin gives every pod a projected `kube-api-access-*` volume at
 * /var/run/secrets/kubernetes.io/serviceaccount, and a container run by the agent finds its
 * own bound token, the cluster CA and its namespace there, as under a real kubelet. Each
 * container gets a private mount namespace (`unshare --mount`, root only) in which its
 * volumes are bind-mounted at their mountPaths; the host's own view never changes.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Kube } from './kube.js';
import { clusterDir } from './paths.js';

interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}
interface DownwardItem {
  path: string;
  fieldRef?: { fieldPath: string };
  mode?: number;
}
interface ProjectedSource {
  serviceAccountToken?: { path: string; audience?: string; expirationSeconds?: number };
  configMap?: { name: string; items?: KeyToPath[]; optional?: boolean };
  secret?: { name: string; items?: KeyToPath[]; optional?: boolean };
  downwardAPI?: { items?: DownwardItem[] };
}
export interface Volume {
  name: string;
  projected?: { sources?: ProjectedSource[]; defaultMode?: number };
  configMap?: { name: string; items?: KeyToPath[]; optional?: boolean; defaultMode?: number };
  secret?: { secretName: string; items?: KeyToPath[]; optional?: boolean; defaultMode?: number };
  downwardAPI?: { items?: DownwardItem[]; defaultMode?: number };
  emptyDir?: Record<string, unknown>;
}
export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
}
export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
  serviceAccountName: string;
  volumes: Volume[];
}
export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/**
 * Mount points created on the host by any loopback cluster of this machine (mounting needs
 * root, so /run is writable); the last cluster:down removes them (if empty).
 */
export const createdMountPointsFile = '/run/warmpool-cluster-mount-points';

/** Private mount namespaces need root (CAP_SYS_ADMIN); asked once, by trying. */
const canMount = process.getuid?.() === 0 && spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status === 0;

/**
 * Runs inside the container's new mount namespace: bind-mounts (source, target, ro|rw)
 * triples up to `--`, then execs the container's argv, so the pid stays the container's.
 */
const MOUNT_SCRIPT = `set -e
while [ "$1" != -- ]; do
  mount --bind "$1" "$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
  shift 3
done
shift
exec "$@"`;

/** argv wrapped so that it runs with `mounts` in a private mount namespace. */
export function withMounts(argv: string[], mounts: Mount[]): string[] {
  if (mounts.length === 0) return argv;
  return [
    'unshare', '--mount', '--propagation', 'private', 'sh', '-c', MOUNT_SCRIPT, 'sh',
    ...mounts.flatMap((m) => [m.source, m.target, m.readOnly ? 'ro' : 'rw']), '--', ...argv,
  ];
}

/** Kubernetes' default TTL of a projected token, and kubelet's rule: refresh at 80% of it. */
const DEFAULT_TOKEN_SECONDS = 3607;

export class PodVolumes {
  private readonly root: string;
  private readonly dirs = new Map<string, string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly kube: Kube,
    private readonly pod: PodRef,
    private readonly field: (fieldPath: string) => string,
    private readonly log: (msg: string) => void,
  ) {
    this.root = join(clusterDir, 'pods', pod.uid, 'volumes');
  }

  /** Writes every supported volume; throws (for a retry) when a non-optional source is missing. */
  async prepare(): Promise<void> {
    for (const v of this.pod.volumes) {
      const dir = join(this.root, v.name);
      mkdirSync(dir, { recursive: true });
      if (v.projected) {
        const mode = v.projected.defaultMode;
        for (const s of v.projected.sources ?? []) {
          if (s.serviceAccountToken) await this.token(dir, s.serviceAccountToken, mode);
          if (s.configMap) await this.keys(dir, 'configmaps', s.configMap.name, s.configMap.items, s.configMap.optional, mode);
          if (s.secret) await this.keys(dir, 'secrets', s.secret.name, s.secret.items, s.secret.optional, mode);
          if (s.downwardAPI) this.downward(dir, s.downwardAPI.items, mode);
        }
      } else if (v.configMap) {
        await this.keys(dir, 'configmaps', v.configMap.name, v.configMap.items, v.configMap.optional, v.configMap.defaultMode);
      } else if (v.secret) {
        await this.keys(dir, 'secrets', v.secret.secretName, v.secret.items, v.secret.optional, v.secret.defaultMode);
      } else if (v.downwardAPI) {
        this.downward(dir, v.downwardAPI.items, v.downwardAPI.defaultMode);
      } else if (!v.emptyDir) {
        this.log(`volume ${v.name}: only projected, configMap, secret, downwardAPI and emptyDir volumes are supported; not mounted`);
        continue;
      }
      this.dirs.set(v.name, dir);
    }
  }

  /** The bind mounts of one container; none where the agent cannot make a mount namespace. */
  mounts(volumeMounts: VolumeMount[] | undefined): Mount[] {
    const out: Mount[] = [];
    for (const m of volumeMounts ?? []) {
      const dir = this.dirs.get(m.name);
      if (!dir) continue;
      if (!canMount) {
        this.log(`volume ${m.name}: not mounted at ${m.mountPath} (a private mount namespace needs root)`);
        continue;
      }
      if (m.subPath?.split('/').includes('..')) {
        this.log(`volume ${m.name}: subPath ${m.subPath} leaves the volume; not mounted`);
        continue;
      }
      const source = m.subPath ? join(dir, m.subPath) : dir;
      ensureMountPoint(m.mountPath, statSync(source).isDirectory());
      out.push({ source, target: m.mountPath, readOnly: m.readOnly ?? false });
    }
    return out;
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    rmSync(join(this.root, '..'), { recursive: true, force: true });
  }

  private async token(dir: string, src: NonNullable<ProjectedSource['serviceAccountToken']>, mode: number | undefined): Promise<void> {
    const { namespace, name, uid, serviceAccountName } = this.pod;
    const res = await this.kube.create<{ status: { token: string; expirationTimestamp: string } }>(
      `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccountName}/token`,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          ...(src.audience ? { audiences: [src.audience] } : {}),
          expirationSeconds: src.expirationSeconds ?? DEFAULT_TOKEN_SECONDS,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid },
        },
      },
    );
    writeAtomic(join(dir, src.path), res.status.token, mode);
    const ttlMs = Date.parse(res.status.expirationTimestamp) - Date.now();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.closed) return;
      this.token(dir, src, mode).catch((err: unknown) => {
        this.log(`token refresh failed: ${err instanceof Error ? err.message : String(err)}`);
      });
    }, Math.max(ttlMs * 0.8, 1000));
    timer.unref();
    this.timers.add(timer);
  }

  private async keys(
    dir: string,
    kind: 'configmaps' | 'secrets',
    objName: string,
    items: KeyToPath[] | undefined,
    optional: boolean | undefined,
    mode: number | undefined,
  ): Promise<void> {
    let data: Record<string, string>;
    try {
      const obj = await this.kube.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${this.pod.namespace}/${kind}/${objName}`);
      data = obj.data ?? {};
    } catch (err) {
      if (optional) return;
      throw err;
    }
    const decode = (v: string): string | Buffer => (kind === 'secrets' ? Buffer.from(v, 'base64') : v);
    const wanted: KeyToPath[] = items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const it of wanted) {
      const value = data[it.key];
      if (value === undefined) {
        if (optional) continue;
        throw new Error(`key ${it.key} not found in ${kind.slice(0, -1)} ${objName}`);
      }
      writeAtomic(join(dir, it.path), decode(value), it.mode ?? mode);
    }
  }

  private downward(dir: string, items: DownwardItem[] | undefined, mode: number | undefined): void {
    for (const it of items ?? []) {
      if (it.fieldRef) writeAtomic(join(dir, it.path), this.field(it.fieldRef.fieldPath), it.mode ?? mode);
    }
  }
}

/** Write-then-rename, so a reader never sees half a token. */
function writeAtomic(path: string, data: string | Buffer, mode: number | undefined): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data);
  chmodSync(tmp, mode ?? 0o644);
  renameSync(tmp, path);
}

/**
 * A bind mount needs its target to exist; what had to be created is recorded, so that
 * cluster:down can take it away again.
 */
function ensureMountPoint(target: string, isDir: boolean): void {
  try {
    statSync(target);
    return;
  } catch {
    // missing: created below
  }
  const created = mkdirSync(isDir ? target : dirname(target), { recursive: true });
  if (!isDir) writeFileSync(target, '');
  appendFileSync(createdMountPointsFile, `${created ?? target}\n`);
}

/** Removes a created mount point tree if it holds nothing but empty directories and empty files. */
export function removeMountPoint(path: string): void {
  const empty = (p: string): boolean => {
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) return true;
    if (!st.isDirectory()) return st.size === 0;
    return readdirSync(p).every((e) => empty(join(p, e)));
  };
  if (empty(path)) rmSync(path, { recursive: true, force: true });
}
