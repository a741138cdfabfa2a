import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { createKubeApi } from '../../controller/src/pool/kubernetes/client.js';

/** An API server that takes connections and requests and never answers: a hung one. */
async function hungServer() {
  const open = new Set<Socket>();
  const server = http.createServer(() => undefined);
  server.on('connection', (socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'hung', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'not-a-real-token' }],
    contexts: [{ name: 'hung', cluster: 'hung', user: 'u' }],
    currentContext: 'hung',
  });
  return { kc, open, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

describe('kubernetes client adapter', () => {
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
