/**
 * Pods and Deployments as the API server sends them, turned into the small shapes the pool logic
 * reads. The input types name only the fields read, so the library's V1Pod and V1Deployment fit
 * them and this module needs no import of the library.
 */
import type { DeploymentInfo, PodInfo } from './api.js';

type Time = Date | string;

interface Meta {
  name?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: Time;
  deletionTimestamp?: Time;
}

export interface PodObject {
  metadata?: Meta;
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string; lastTransitionTime?: Time }[];
    containerStatuses?: { lastState?: { terminated?: { finishedAt?: Time } } }[];
  };
}

export interface DeploymentObject {
  metadata?: Meta;
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> };
    template?: { metadata?: { labels?: Record<string, string> } };
  };
}

const ms = (at: Time | undefined): number | undefined => (at ? new Date(at).getTime() : undefined);

export function toPodInfo(pod: PodObject): PodInfo {
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  const isReady = ready?.status === 'True';
  return {
    name: pod.metadata?.name ?? '',
    uid: pod.metadata?.uid ?? '',
    resourceVersion: pod.metadata?.resourceVersion ?? '',
    labels: pod.metadata?.labels ?? {},
    annotations: pod.metadata?.annotations ?? {},
    phase: pod.status?.phase ?? 'Unknown',
    ready: isReady,
    readySince: isReady ? ms(ready.lastTransitionTime) : undefined,
    createdAt: ms(pod.metadata?.creationTimestamp) ?? 0,
    podIP: pod.status?.podIP || undefined,
    deleting: Boolean(pod.metadata?.deletionTimestamp),
    restartedAt: Math.max(0, ...(pod.status?.containerStatuses ?? []).map((c) => ms(c.lastState?.terminated?.finishedAt) ?? 0)) || undefined,
  };
}

export function toDeploymentInfo(deployment: DeploymentObject): DeploymentInfo {
  return {
    name: deployment.metadata?.name ?? '',
    uid: deployment.metadata?.uid ?? '',
    resourceVersion: deployment.metadata?.resourceVersion ?? '',
    labels: deployment.metadata?.labels ?? {},
    annotations: deployment.metadata?.annotations ?? {},
    // The API server defaults an absent spec.replicas to 1.
    replicas: deployment.spec?.replicas ?? 1,
    selector: deployment.spec?.selector?.matchLabels ?? {},
    templateLabels: deployment.spec?.template?.metadata?.labels ?? {},
    deleting: Boolean(deployment.metadata?.deletionTimestamp),
  };
}
