/**
 * Sessions held across replicas: three controller replicas share one pool with a short idle
 * timeout. A reply streamed (SSE) or a WebSocket chat held through one replica for three times
 * the idle timeout must not be ended by another replica's reaper, and clients that give up while
 * waiting for a warm worker must leave no claimed pod behind.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { trainModel } from '../../worker-image/src/model.js';
import { createSession, eventually, metric, type Controller } from '../integration/harness.js';
import { poolFixture, type PoolFixture } from './fixture.js';
import { repoRoot } from './paths.js';

const TOKEN_DELAY_MS = 1000;
/** How long each held exchange lasts, against the replicas' idle timeout. */
const HOLD_MS = 12_000;
const IDLE_TIMEOUT_S = 4;

/** Messages whose replies at the given turns are at least `tokens` long: the worker's own model decides. */
function longMessages(turns: number[], tokens: number): string[] {
  const model = trainModel(readFileSync(join(repoRoot, 'worker-image/corpus.txt'), 'utf8'));
  return turns.map((turn) => {
    for (let i = 0; ; i++) {
      const message = `tell me more ${i}`;
      if (model.reply(message, turn).length >= tokens) return message;
    }
  });
}

describe('sessions held across replicas', () => {
  let f: PoolFixture;
  let replicas: Controller[];

  before(async () => {
    f = await poolFixture('warmpool-replicas', { TOKEN_DELAY_MS: String(TOKEN_DELAY_MS) });
    const env = { POOL_SIZE: '2', SESSION_IDLE_TIMEOUT_S: String(IDLE_TIMEOUT_S), ACTIVITY_FLUSH_S: '1' };
    replicas = await Promise.all(['replica-a', 'replica-b', 'replica-c'].map((name) => f.controller(name, env)));
    await eventually('two warm pods', () => f.warmReady(2), 60_000);
  });

  after(async () => {
    await f.teardown();
  });

  test('when a reply streams through one replica for three idle timeouts, then no replica ends the session and the turn is in its history', async () => {
    const [a, b] = replicas as [Controller, Controller];
    const id = await createSession(a);
    const [message] = longMessages([1], Math.ceil(HOLD_MS / TOKEN_DELAY_MS) + 1);
    const started = Date.now();
    const res = await fetch(`${b.base}/sessions/${id}/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ message }),
    });
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.ok(Date.now() - started >= HOLD_MS, `the stream lasted ${Date.now() - started} ms`);
    assert.match(body, /data: \[DONE\]\n\n$/);
    const history = await (await fetch(`${a.base}/sessions/${id}/history`)).json() as { turns: { message: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), [message]);
    for (const r of replicas) assert.equal(await metric(r, 'warmpool_sessions_ended_total', 'reason="idle"'), 0);
    await fetch(`${a.base}/sessions/${id}`, { method: 'DELETE' });
  });

  test('when a WebSocket chat through one replica lasts three idle timeouts, then every reply arrives and the session lives on', async () => {
    const [a, , c] = replicas as [Controller, Controller, Controller];
    const id = await createSession(a);
    const messages = longMessages([1, 2, 3], Math.ceil(HOLD_MS / 3 / TOKEN_DELAY_MS) + 1);
    const ws = new WebSocket(`${c.base.replace('http', 'ws')}/sessions/${id}/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const started = Date.now();
    const turns: number[] = [];
    for (const message of messages) {
      ws.send(JSON.stringify({ message }));
      turns.push(await new Promise<number>((resolve, reject) => {
        const onFrame = (data: WebSocket.RawData) => {
          const frame = JSON.parse(data.toString()) as { type: string; turn?: number };
          if (frame.type !== 'reply') return;
          ws.off('message', onFrame);
          resolve(frame.turn as number);
        };
        ws.on('message', onFrame);
        ws.once('close', () => reject(new Error('the WebSocket closed mid-chat')));
      }));
    }
    assert.ok(Date.now() - started >= HOLD_MS, `the chat lasted ${Date.now() - started} ms`);
    assert.deepEqual(turns, [1, 2, 3]);
    ws.close();
    const history = await (await fetch(`${a.base}/sessions/${id}/history`)).json() as { turns: unknown[] };
    assert.equal(history.turns.length, 3);
    await fetch(`${a.base}/sessions/${id}`, { method: 'DELETE' });
  });

  test('when six clients give up waiting for a warm worker, then no pod stays claimed beyond the live sessions', async () => {
    await eventually('two warm pods', () => f.warmReady(2), 60_000);
    const held = await Promise.all([createSession(replicas[0] as Controller), createSession(replicas[1] as Controller)]);
    // The pool is empty now: these wait in the claim queues, then their clients leave.
    const gaveUp = await Promise.all(Array.from({ length: 6 }, (_, i) => {
      const r = replicas[i % 3] as Controller;
      return fetch(`${r.base}/sessions`, { method: 'POST', signal: AbortSignal.timeout(300) }).then((res) => res.status, (err: Error) => err.name);
    }));
    assert.deepEqual(gaveUp, Array(6).fill('TimeoutError'));
    await eventually('two warm replacement pods', () => f.warmReady(2), 60_000);
    // Let any claim that was still under way land and be released.
    await eventually('no claim queued on any replica', async () => {
      const queued = await Promise.all(replicas.map((r) => metric(r, 'warmpool_claim_queue_length')));
      return queued.every((n) => n === 0) ? true : undefined;
    });
    const claimed = (await f.claimed()).map((p) => p.metadata.labels?.['warmpool.dev/session']);
    assert.equal(claimed.length, held.length, `claimed pods: ${claimed.length}`);
    let closed = 0;
    for (const r of replicas) closed += await metric(r, 'warmpool_claims_total', 'result="client_closed"') + await metric(r, 'warmpool_claims_total', 'result="abandoned"');
    assert.equal(closed, 6);
    await Promise.all(held.map((id) => fetch(`${(replicas[0] as Controller).base}/sessions/${id}`, { method: 'DELETE' })));
  });
});
