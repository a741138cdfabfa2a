import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { deliverSettings } from '../../controller/src/sessions/delivery.js';

test('when settings are delivered, then the worker gets them and the connection closes at once (it is never used again)', async () => {
  const got: { body: string; connection?: string }[] = [];
  const closed: Promise<unknown>[] = [];
  const worker = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      got.push({ body, connection: req.headers.connection });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  // A worker that would keep an idle connection for a minute: only the controller can close it.
  worker.keepAliveTimeout = 60_000;
  worker.on('connection', (socket) => closed.push(once(socket, 'close')));
  worker.listen(0, '127.0.0.1');
  await once(worker, 'listening');
  try {
    const { port } = worker.address() as AddressInfo;
    const delivery = await deliverSettings({ host: '127.0.0.1', port }, { model: 'small' }, 2000);
    assert.deepEqual(delivery, { outcome: 'accepted' });
    assert.deepEqual(got, [{ body: '{"settings":{"model":"small"}}', connection: 'close' }]);
    assert.equal(closed.length, 1);
    const gone = await Promise.race([closed[0]?.then(() => true), new Promise((resolve) => setTimeout(resolve, 1000, false))]);
    assert.equal(gone, true, 'the connection to the worker is still open a second after the delivery');
  } finally {
    worker.closeAllConnections();
    worker.close();
  }
});
