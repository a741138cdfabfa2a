import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alive, chat, childPids, createSession, eventually, parseLine, pool, startController, waitWarm, workerPid, type Controller } from './harness.js';

async function statusOf(c: Controller, id: string): Promise<{ status: number; error?: string }> {
  const res = await fetch(`${c.base}/sessions/${id}/history`);
  const body = (await res.json()) as { error?: string };
  return { status: res.status, ...(body.error ? { error: body.error } : {}) };
}

function stopped(pid: number): Promise<true> {
  return eventually(`worker ${pid} to stop`, () => (alive(pid) ? undefined : true));
}

describe('how sessions end', () => {
  test('when a client deletes its session, then the worker process stops and the id answers 410 session_ended', async () => {
    const c = await startController();
    try {
      await waitWarm(c, 2);
      const id = await createSession(c);
      const pid = await workerPid(c, id);
      const res = await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' });
      assert.equal(res.status, 204);
      await stopped(pid);
      assert.deepEqual(await statusOf(c, id), { status: 410, error: 'session_ended' });
      const again = await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' });
      assert.equal(again.status, 410);
    } finally {
      await c.stop();
    }
  });

  test('when a session stays idle past SESSION_IDLE_TIMEOUT_S, then its worker is stopped and the id answers 410 session_ended', async () => {
    const c = await startController({ SESSION_IDLE_TIMEOUT_S: '0.8' });
    try {
      await waitWarm(c, 2);
      const id = await createSession(c);
      const pid = await workerPid(c, id);
      await stopped(pid);
      assert.deepEqual(await statusOf(c, id), { status: 410, error: 'session_ended' });
      await eventually('an idle end to be logged', () => c.output.find((l) => l.includes('"session ended"') && l.includes('"idle"')));
    } finally {
      await c.stop();
    }
  });

  test('when a session is busy past SESSION_MAX_LIFETIME_S, then it is ended all the same', async () => {
    const c = await startController({ SESSION_MAX_LIFETIME_S: '1.5', SESSION_IDLE_TIMEOUT_S: '60' });
    try {
      await waitWarm(c, 2);
      const id = await createSession(c);
      const pid = await workerPid(c, id);
      await eventually('the session to end while chatting', async () => {
        const res = await fetch(`${c.base}/sessions/${id}/chat`, { method: 'POST', body: JSON.stringify({ message: 'still here' }) });
        await res.arrayBuffer();
        return res.status === 410 ? true : undefined;
      });
      await stopped(pid);
      assert.deepEqual(await statusOf(c, id), { status: 410, error: 'session_ended' });
      await eventually('a lifetime end to be logged', () => c.output.find((l) => l.includes('"session ended"') && l.includes('"lifetime"')));
    } finally {
      await c.stop();
    }
  });

  test('when a worker crashes mid-session, then the id answers 410 session_lost and the pool refills', async () => {
    const c = await startController();
    try {
      await waitWarm(c, 2);
      const id = await createSession(c);
      await chat(c, id, 'before the crash');
      process.kill(await workerPid(c, id), 'SIGKILL');
      await eventually('the session to be lost', async () => ((await statusOf(c, id)).status === 410 ? true : undefined));
      assert.deepEqual(await statusOf(c, id), { status: 410, error: 'session_lost' });
      await waitWarm(c, 2);
      assert.equal((await pool(c)).assigned, 0);
    } finally {
      await c.stop();
    }
  });
});

/** A long reply streaming from the session's worker, its first token already read. */
async function streamReply(c: Controller, id: string): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  const res = await fetch(`${c.base}/sessions/${id}/chat`, {
    method: 'POST',
    headers: { accept: 'text/event-stream' },
    body: JSON.stringify({ message: 'a long answer about pools and labels and workers' }),
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  return reader;
}

/** A controller with one slow reply streaming to a client. */
async function midStream(shutdownTimeoutS: string): Promise<{ c: Controller; reader: ReadableStreamDefaultReader<Uint8Array> }> {
  const c = await startController({ TOKEN_DELAY_MS: '400', SHUTDOWN_TIMEOUT_S: shutdownTimeoutS, POOL_SIZE: '1' });
  await waitWarm(c, 1);
  return { c, reader: await streamReply(c, await createSession(c)) };
}

describe('shutdown', () => {
  test('when SIGTERM arrives during a stream, then the stream finishes, new requests are refused and no worker is left', async () => {
    const c = await startController({ TOKEN_DELAY_MS: '60' });
    await waitWarm(c, 2);
    const id = await createSession(c);
    // Two warm and the session's; the replacement starts once its port is chosen.
    const workers = await eventually('three worker processes', () => {
      const pids = childPids(c.proc.pid as number);
      return pids.length === 3 ? pids : undefined;
    });
    const reader = await streamReply(c, id);
    const exited = c.stop();
    let body = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += new TextDecoder().decode(value);
    }
    assert.ok(body.includes('[DONE]'), 'the in-flight stream completed');
    await assert.rejects(fetch(`${c.base}/sessions`, { method: 'POST' }));
    assert.equal(await exited, 0);
    for (const pid of workers) await stopped(pid);
  });

  test('when a stream outlives the shutdown deadline, then it ends cleanly for its client and the log counts what was cut', async () => {
    const { c, reader } = await midStream('1');
    process.kill(c.proc.pid as number, 'SIGTERM');
    // A stream cut at the network level rejects this read loop ("terminated"); a clean end finishes it.
    for (;;) if ((await reader.read()).done) break;
    assert.equal(await c.exited, 0);
    const deadline = c.output.map(parseLine).find((l) => l?.msg?.toString().startsWith('shutdown deadline'));
    assert.equal(deadline?.streamsEnded, 1);
    assert.equal(deadline?.exchangesCut, 0);
  });

  test('when a second signal arrives during the drain, then the controller exits at once', async () => {
    const { c } = await midStream('60');
    process.kill(c.proc.pid as number, 'SIGTERM');
    await eventually('the drain to start', () => c.output.some((l) => l.includes('shutting down')) || undefined);
    process.kill(c.proc.pid as number, 'SIGINT');
    const code = await Promise.race([c.exited, new Promise((resolve) => setTimeout(() => resolve('still running after 5 s'), 5000))]);
    assert.equal(code, 1);
    assert.ok(c.output.some((l) => l.includes('second signal')));
  });
});

