/**
 * A connection to a controller's inspector (it runs with NODE_OPTIONS=--inspect=127.0.0.1:0
 * and prints where it listens): the leak check and `npm run bench` collect garbage and profile
 * through it.
 */
import { once } from 'node:events';
import WebSocket from 'ws';
import { eventually, type Controller } from './harness.js';

export interface Inspector {
  /** One protocol call; answers are matched to calls by id, so several may be in flight. */
  send<T>(method: string): Promise<T>;
  close(): void;
}

export async function inspect(c: Controller): Promise<Inspector> {
  const url = await eventually('the inspector address (NODE_OPTIONS=--inspect=127.0.0.1:0)', () =>
    c.output.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).find(Boolean), 5_000);
  const socket = new WebSocket(url);
  await once(socket, 'open');
  let next = 0;
  return {
    send<T>(method: string): Promise<T> {
      const id = ++next;
      const answered = new Promise<T>((resolve, reject) => {
        // A controller that exits mid-call closes the socket: the call fails instead of hanging.
        const onClose = () => reject(new Error(`${method}: the inspector closed before answering`));
        const onMessage = (data: Buffer) => {
          const message = JSON.parse(data.toString()) as { id?: number; result: T; error?: { message: string } };
          if (message.id !== id) return;
          socket.off('message', onMessage);
          socket.off('close', onClose);
          if (message.error) reject(new Error(`${method}: ${message.error.message}`));
          else resolve(message.result);
        };
        socket.on('message', onMessage);
        socket.once('close', onClose);
      });
      socket.send(JSON.stringify({ id, method }));
      return answered;
    },
    close: () => socket.close(),
  };
}

/** A full garbage collection in the controller, so heap figures are what it retains. */
export async function collectGarbage(c: Controller): Promise<void> {
  const inspector = await inspect(c);
  try {
    await inspector.send('HeapProfiler.collectGarbage');
  } finally {
    inspector.close();
  }
}
