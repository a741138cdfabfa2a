import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { slimPod } from '../../controller/src/pool/kubernetes/client.js';
import { toPodInfo } from '../../controller/src/pool/kubernetes/convert.js';

const at = (s: string) => new Date(`2026-01-01T00:00:0${s}Z`);

/** A pod as the API server sends it, with the fields the controller reads and many it does not. */
function wholePod(overrides: { deleting?: boolean; restarted?: boolean; ready?: boolean } = {}): V1Pod {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: {
      name: 'chatbot-worker-abc', namespace: 'warmpool', uid: 'u1', resourceVersion: '42', creationTimestamp: at('1'),
      ...(overrides.deleting ? { deletionTimestamp: at('9') } : {}),
      labels: { 'warmpool.dev/pool': 'chatbot', assigned: 'assigned', 'warmpool.dev/session': 'a'.repeat(40) },
      annotations: { 'warmpool.dev/claimed-at': '2026-01-01T00:00:05.000Z' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u2', controller: true }],
      managedFields: [{ manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: at('1'), fieldsType: 'FieldsV1', fieldsV1: {} }],
    },
    spec: { containers: [{ name: 'worker', image: 'warmpool/chatbot-worker:dev', env: [{ name: 'PORT', value: '8080' }] }], nodeName: 'n1' },
    status: {
      phase: 'Running', podIP: '127.1.0.2', podIPs: [{ ip: '127.1.0.2' }], hostIP: '127.1.0.1', startTime: at('2'),
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: at('2') },
        { type: 'Ready', status: overrides.ready === false ? 'False' : 'True', lastTransitionTime: at('3') },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: at('1') },
      ],
      containerStatuses: [{
        name: 'worker', image: 'x', imageID: 'y', ready: true, restartCount: overrides.restarted ? 1 : 0, state: { running: { startedAt: at('4') } },
        lastState: overrides.restarted ? { terminated: { exitCode: 1, finishedAt: at('6'), startedAt: at('2') } } : {},
      }],
    },
  };
}

describe('kubernetes informer pods', () => {
  for (const variant of [{}, { deleting: true }, { restarted: true }, { ready: false }]) {
    test(`when a pod (${JSON.stringify(variant)}) is kept slim, then the controller's view of it is the same as of the whole pod, and its spec is gone`, () => {
      const whole = wholePod(variant);
      const slim = slimPod(whole);
      assert.deepEqual(toPodInfo(slim), toPodInfo(whole));
      assert.equal((slim as { spec?: unknown }).spec, undefined);
      assert.equal(slim.metadata?.namespace, 'warmpool');
    });
  }
});
