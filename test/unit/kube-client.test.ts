import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { createKubeApi } from '../../controller/src/pool/kubernetes/client.js';

/** A fake API server on loopback port 0, with a kubeconfig pointing at it and a way to close it. */
async function apiServer(handler: http.RequestListener) {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'not-a-real-token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
    currentContext: 'fake',
  });
  return { server, kc, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

/** An API server that takes connections and requests and never answers: a hung one. */
async function hungServer() {
  const open = new Set<Socket>();
  const api = await apiServer(() => undefined);
  api.server.on('connection', (socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  return { ...api, open };
}

/** An API server that answers every request after `delayMs` with the same pod, counting requests. */
async function slowServer(delayMs: number) {
  let requests = 0;
  const api = await apiServer((req, res) => {
    requests++;
    req.resume();
    setTimeout(() => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'w1', uid: 'u1', resourceVersion: '8', labels: {}, annotations: {} }, status: { phase: 'Running' } }));
    }, delayMs);
  });
  return { ...api, requests: () => requests };
}

describe('kubernetes client adapter', () => {
  test('when more requests come at once than there are connections, then each one\'s deadline counts from when it is sent, and those that find no connection in time are never sent', async () => {
    // Each answer takes 200 ms; the deadline is 300 ms; 2 connections. Requests 3 and 4 wait
    // 200 ms for a connection and are answered 200 ms after they are sent (400 ms after they were
    // made: past the deadline had it counted from then). Requests 5 and 6 would get one at 400 ms.
    const slow = await slowServer(200);
    const counted: string[] = [];
    const api = createKubeApi(slow.kc, { namespace: 'ns', count: (verb, code) => counted.push(`${verb} ${code}`), requestTimeoutMs: 300, maxSockets: 2 });
    const results = await Promise.all(Array.from({ length: 6 }, () => api.patchPod('w1', '7', { assigned: 'assigned' }, {}).then(() => 'ok', (err: { code?: string }) => err.code)));
    assert.deepEqual(results, ['ok', 'ok', 'ok', 'ok', 'EQUEUED', 'EQUEUED']);
    assert.deepEqual(counted.sort(), ['patch 2xx', 'patch 2xx', 'patch 2xx', 'patch 2xx', 'patch queued', 'patch queued']);
    assert.equal(slow.requests(), 4, 'the queued ones never reached the API server');
    await slow.close();
  });


  test('when the API server does not answer, then a request fails at its deadline with its cause, is counted, and its connection is closed', async () => {
    const hung = await hungServer();
    const counted: string[] = [];
    const api = createKubeApi(hung.kc, { namespace: 'ns', count: (verb, code) => counted.push(`${verb} ${code}`), requestTimeoutMs: 100 });
    await assert.rejects(api.patchPod('w1', '7', { assigned: 'assigned' }, {}), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ETIMEDOUT');
      assert.ok(err.cause, 'the cancelled request is the cause');
      return true;
    });
    assert.deepEqual(counted, ['patch timeout']);
    for (let i = 0; i < 100 && hung.open.size > 0; i++) await sleep(10);
    assert.equal(hung.open.size, 0, 'the cancelled request left no connection open');
    await hung.close();
  });
});
