import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { chat, createSession, eventually, parseLine, pool, startController, waitWarm, workerPid, type Controller } from './harness.js';

describe('a fresh clone', () => {
  test('when started with `npm start` and no cluster around, then it picks the local backend, keeps POOL_SIZE warm and serves chat', async () => {
    const c = await startController({ POOL_SIZE: '' }, 'npm');
    try {
      const chosen = c.output.map(parseLine).find((l) => l?.msg === 'backend chosen');
      assert.equal(chosen?.backend, 'local');
      await waitWarm(c, 3);
      const id = await createSession(c);
      const { reply, turn } = await chat(c, id, 'hello warm pool');
      assert.ok(reply.length > 0, 'reply.length > 0');
      assert.equal(turn, 1);
    } finally {
      await c.stop();
    }
  });
});

describe('sessions on the local backend', () => {
  let c: Controller;
  before(async () => {
    c = await startController({ POOL_SIZE: '2', TOKEN_DELAY_MS: '40', MODEL_LOAD_DELAY_MS: '200' });
    await waitWarm(c, 2);
  });
  after(async () => {
    await c.stop();
  });

  test('when two sessions chat, then each reaches its own worker and its history holds only its own turns', async () => {
    const a = await createSession(c);
    const b = await createSession(c);
    assert.notEqual(await workerPid(c, a), await workerPid(c, b));
    await chat(c, a, 'first for a');
    await chat(c, b, 'first for b');
    await chat(c, a, 'second for a');
    const history = async (id: string) => ((await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: { message: string }[] }).turns.map((t) => t.message);
    assert.deepEqual(await history(a), ['first for a', 'second for a']);
    assert.deepEqual(await history(b), ['first for b']);
  });

  test('when workers are claimed, then the pool refills to POOL_SIZE warm', async () => {
    await createSession(c);
    await waitWarm(c, 2);
    const p = await pool(c);
    assert.equal(p.warm, 2);
  });

  test('when a client asks for a stream, then tokens arrive one by one as the worker sends them', async () => {
    const id = await createSession(c);
    const res = await fetch(`${c.base}/sessions/${id}/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ message: 'tell me about the pool and the labels' }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const reads: string[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      reads.push(decoder.decode(value));
    }
    const all = reads.join('');
    const tokens = [...all.matchAll(/data: (\{"token".*?\})\n\n/g)].map((m) => (JSON.parse(m[1] as string) as { token: string }).token);
    assert.ok(tokens.length >= 3, `expected several tokens, got ${tokens.length}`);
    // Each token was its own read: nothing between the worker and the client held them back.
    const readsWithToken = reads.filter((r) => r.includes('"token"'));
    assert.equal(readsWithToken.length, tokens.length);
    assert.ok(reads.at(-1)?.includes('[DONE]'), 'reads.at(-1)?.includes(\'[DONE]\')');
    const final = /data: (\{"reply".*?\})\n\n/.exec(all);
    assert.equal((JSON.parse(final?.[1] as string) as { reply: string }).reply, tokens.join(''));
  });

  test('when a client opens a WebSocket on /sessions/{id}/ws, then it chats with its worker', async () => {
    const id = await createSession(c);
    const ws = new WebSocket(`${c.base.replace('http', 'ws')}/sessions/${id}/ws`);
    const frames: { type: string; token?: string; reply?: string; turn?: number }[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.once('error', reject);
      ws.once('open', () => ws.send(JSON.stringify({ message: 'hello over a socket' })));
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as (typeof frames)[number];
        frames.push(frame);
        if (frame.type === 'reply') resolve();
      });
    });
    ws.close();
    const tokens = frames.filter((f) => f.type === 'token').map((f) => f.token).join('');
    const reply = frames.at(-1);
    assert.equal(reply?.turn, 1);
    assert.equal(reply?.reply, tokens);
    const history = (await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: { message: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), ['hello over a socket']);
  });

  test('when a WebSocket client resets its connection mid-reply, then only that socket goes and the controller keeps serving', async () => {
    const id = await createSession(c);
    const ws = new WebSocket(`${c.base.replace('http', 'ws')}/sessions/${id}/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once('error', reject);
      ws.once('open', () => ws.send(JSON.stringify({ message: 'tell me a long story about the pool' })));
      ws.once('message', () => resolve());
    });
    // A TCP reset, as from a closed tab or a dropped network, not a WebSocket close.
    (ws as unknown as { _socket: Socket })._socket.resetAndDestroy();
    await sleep(500);
    assert.equal(c.proc.exitCode, null, 'the controller is still running');
    const { turn } = await chat(c, id, 'still there?');
    assert.ok(turn >= 1, 'the session still answers');
  });

  test('when a request has no session and AUTO_SESSION is on, then one is claimed and the cookie or header keeps the client on it', async () => {
    const first = await fetch(`${c.base}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'one' }) });
    assert.equal(first.status, 200);
    const id = first.headers.get('x-session-id');
    assert.ok(id, 'id');
    const cookie = first.headers.getSetCookie().find((v) => v.startsWith('warmpool_session='));
    assert.ok(cookie?.includes(id), 'cookie?.includes(id)');
    assert.equal(((await first.json()) as { turn: number }).turn, 1);

    const byCookie = await fetch(`${c.base}/chat`, { method: 'POST', headers: { cookie: `other=1; warmpool_session=${id}` }, body: JSON.stringify({ message: 'two' }) });
    assert.equal(((await byCookie.json()) as { turn: number }).turn, 2);
    assert.equal(byCookie.headers.get('x-session-id'), null);
    const byHeader = await fetch(`${c.base}/chat`, { method: 'POST', headers: { 'x-session-id': id }, body: JSON.stringify({ message: 'three' }) });
    assert.equal(((await byHeader.json()) as { turn: number }).turn, 3);
    const history = await eventually('history', async () => (await (await fetch(`${c.base}/history`, { headers: { 'x-session-id': id } })).json()) as { turns: unknown[] });
    assert.equal(history.turns.length, 3);
  });
});
