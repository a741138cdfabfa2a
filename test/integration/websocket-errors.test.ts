import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ROOT, createSession, eventually, startController, waitWarm } from './harness.js';

const RESET_WORKER = `'${process.execPath}' '${path.join(ROOT, 'test/integration/fixtures/ws-reset-worker.mjs')}'`;

/** Sends a WebSocket handshake and collects every byte until the router closes the socket. */
function upgradeAndRead(base: string, target: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    });
    let got = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => { got += chunk; });
    socket.once('close', () => resolve(got));
    socket.once('error', () => { /* a reset is one way the router may close it */ });
    setTimeout(() => reject(new Error(`socket still open after 10 s; got ${JSON.stringify(got)}`)), 10_000).unref();
  });
}

describe('WebSocket errors', () => {
  test('when the worker fails after the upgrade, then the client socket is closed with no HTTP written into the WebSocket stream', async () => {
    const c = await startController({ POOL_SIZE: '1', LOCAL_WORKER_CMD: RESET_WORKER });
    try {
      await waitWarm(c, 1);
      const id = await createSession(c);
      const got = await upgradeAndRead(c.base, `/sessions/${id}/ws`);
      assert.match(got, /^HTTP\/1\.1 101 /);
      assert.equal(got.match(/HTTP\/1\.[01] /g)?.length, 1, `one status line only, got ${JSON.stringify(got)}`);
      await eventually('the access log line of the exchange', () => c.output.some((l) => l.includes('"kind":"websocket"') && l.includes('"status":101')) || undefined);
      const metrics = await (await fetch(`${c.admin}/metrics`)).text();
      assert.match(metrics, /^warmpool_websockets_active 0$/m);
    } finally {
      await c.stop();
    }
  });

  test('when an upgrade names no session, then it is refused with 404 session_not_found and counted as a refused WebSocket', async () => {
    const c = await startController({ POOL_SIZE: '1', LOCAL_WORKER_CMD: RESET_WORKER });
    try {
      const got = await upgradeAndRead(c.base, '/ws');
      assert.match(got, /^HTTP\/1\.1 404 /);
      assert.match(got, /"error":"session_not_found"/);
      const metrics = await (await fetch(`${c.admin}/metrics`)).text();
      assert.match(metrics, /^warmpool_websockets_refused_total\{code="404"\} 1$/m);
    } finally {
      await c.stop();
    }
  });
});
