/**
 * `kubectl apply -k k8s/` on a real node, with only the image names changed: the images built
 * from the repository's Dockerfiles run under kubelet and containerd as the manifests say
 * (uid 1000, read-only root, no capabilities), the controller reaches the API server through
 * the `kubernetes` Service with its projected token, a session goes through the `warmpool`
 * Service, NetworkPolicy holds the workers apart, and a pool rollout keeps a claimed pod.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hashOf, isReady, type Pod } from '../fixture.js';
import { waitUntil } from '../wait.js';
import { dialFrom, execNode, imageNamed, kubectl, portForward } from './kubectl.js';
import { KUBERNETES_SERVICE_IP, NODE_IP } from './net.js';
import { nodeDir } from './paths.js';

const NS = 'warmpool';
const overlay = join(nodeDir, 'deploy-overlay');

const pods = (selector: string): Pod[] =>
  (JSON.parse(kubectl('get', 'pods', '-n', NS, '-l', selector, '-o', 'json')) as { items: Pod[] }).items;
const readyPods = (selector: string): Pod[] => pods(selector).filter(isReady);

describe('deploying k8s/ on a real node', () => {
  let forward: { port: number; child: ChildProcess };
  let base: string;

  before(async () => {
    mkdirSync(overlay, { recursive: true });
    const [controller, worker] = [imageNamed('/controller:'), imageNamed('/chatbot-worker:')];
    const split = (ref: string): string => {
      const i = ref.lastIndexOf(':');
      return `newName: ${ref.slice(0, i)}\n    newTag: "${ref.slice(i + 1)}"`;
    };
    writeFileSync(join(overlay, 'kustomization.yaml'), `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../../k8s]
images:
  - name: warmpool/controller
    ${split(controller)}
  - name: warmpool/chatbot-worker
    ${split(worker)}
`);
    kubectl('apply', '-k', overlay);
    kubectl('rollout', 'status', '-n', NS, 'deployment/warmpool-controller', '--timeout=180s');
    kubectl('rollout', 'status', '-n', NS, 'deployment/chatbot-worker', '--timeout=180s');
    await waitUntil('3 warm workers', async () => (readyPods('app.kubernetes.io/name=chatbot-worker,assigned=not_assigned').length >= 3 ? true : undefined), 180_000);
    forward = await portForward(NS, 'service/warmpool', 8080);
    base = `http://127.0.0.1:${forward.port}`;
  });

  after(() => {
    forward?.child.kill();
    kubectl('delete', 'namespace', NS, '--timeout=120s');
  });

  test('when the controller pods run, then as uid 1000 on a read-only root with no capabilities, talking to the API server through the kubernetes Service', () => {
    const controllers = readyPods('app.kubernetes.io/name=warmpool-controller');
    assert.equal(controllers.length, 2);
    for (const pod of controllers) {
      const seen = JSON.parse(execNode(NS, pod.metadata.name, `const fs=require('fs');let ro='writable';try{fs.writeFileSync('/probe','x')}catch(e){ro=e.code}` +
        `;const caps=fs.readFileSync('/proc/self/status','utf8').match(/CapEff:\\s*(\\S+)/)[1];` +
        `console.log(JSON.stringify({uid:process.getuid(),gid:process.getgid(),ro,caps,host:process.env.KUBERNETES_SERVICE_HOST,token:fs.existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token')}))`)) as Record<string, unknown>;
      assert.deepEqual(seen, { uid: 1000, gid: 1000, ro: 'EROFS', caps: '0000000000000000', host: KUBERNETES_SERVICE_IP, token: true });
    }
    const endpoints = JSON.parse(kubectl('get', 'endpoints', '-n', 'default', 'kubernetes', '-o', 'json')) as { subsets: { addresses: { ip: string }[] }[] };
    assert.equal(endpoints.subsets[0]?.addresses[0]?.ip, NODE_IP);
  });

  test('when a client goes through the warmpool Service, then a session is created, chats, streams and ends', async () => {
    const created = await fetch(`${base}/sessions`, { method: 'POST' });
    assert.equal(created.status, 201, await created.clone().text());
    const { id } = (await created.json()) as { id: string };
    const chat = await fetch(`${base}/sessions/${id}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'hello from the node tier' }) });
    assert.equal(chat.status, 200, await chat.clone().text());
    const stream = await fetch(`${base}/sessions/${id}/chat`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ message: 'and now streamed' }) });
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get('content-type') ?? '', /text\/event-stream/);
    assert.match(await stream.text(), /^data: /m);
    const history = (await (await fetch(`${base}/sessions/${id}/history`)).json()) as { turns: { message: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), ['hello from the node tier', 'and now streamed']);
    assert.equal((await fetch(`${base}/sessions/${id}`, { method: 'DELETE' })).status, 204);
  });

  test('when a controller pod asks the warmpool Service\'s ClusterIP, then kube-proxy takes it to a controller', () => {
    const ip = kubectl('get', 'service', '-n', NS, 'warmpool', '-o', 'jsonpath={.spec.clusterIP}');
    const [controller] = readyPods('app.kubernetes.io/name=warmpool-controller');
    const status = execNode(NS, controller?.metadata.name as string, `fetch('http://${ip}:8080/sessions/none').then((r)=>console.log(r.status))`);
    assert.equal(status, '404');
  });

  test('when a worker dials another worker, then NetworkPolicy refuses it, while a controller reaches that worker', () => {
    const [a, b] = readyPods('app.kubernetes.io/name=chatbot-worker,assigned=not_assigned');
    const [controller] = readyPods('app.kubernetes.io/name=warmpool-controller');
    assert.ok(a && b && controller);
    const target = b.status?.podIP as string;
    assert.equal(dialFrom(NS, controller.metadata.name, target, 8080), 'connected');
    assert.notEqual(dialFrom(NS, a.metadata.name, target, 8080), 'connected');
  });

  test('when the pool is rolled out, then the claimed pod and its conversation stay', async () => {
    const created = await fetch(`${base}/sessions`, { method: 'POST' });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: string };
    const say = (message: string): Promise<Response> => fetch(`${base}/sessions/${id}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message }) });
    assert.equal((await say('before the rollout')).status, 200);
    const mine = `warmpool.dev/session=${hashOf(id)}`;
    const [claimed] = pods(mine);
    assert.ok(claimed);
    const warm = 'app.kubernetes.io/name=chatbot-worker,assigned=not_assigned';
    const warmBefore = new Set(readyPods(warm).map((p) => p.metadata.uid));
    kubectl('rollout', 'restart', '-n', NS, 'deployment/chatbot-worker');
    kubectl('rollout', 'status', '-n', NS, 'deployment/chatbot-worker', '--timeout=180s');
    await waitUntil('3 new warm workers and none of the old', async () => {
      const now = pods(warm);
      return now.filter(isReady).length >= 3 && now.every((p) => !warmBefore.has(p.metadata.uid)) ? true : undefined;
    }, 120_000);
    assert.deepEqual(pods(mine).map((p) => [p.metadata.uid, !!p.metadata.deletionTimestamp]), [[claimed.metadata.uid, false]]);
    assert.equal((await say('after the rollout')).status, 200);
    const history = (await (await fetch(`${base}/sessions/${id}/history`)).json()) as { turns: { message: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), ['before the rollout', 'after the rollout']);
    assert.equal((await fetch(`${base}/sessions/${id}`, { method: 'DELETE' })).status, 204);
  });
});
