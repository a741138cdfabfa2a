import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { localEngine, openAiEngine, UpstreamModelError, type ChatEngine } from '../../worker-image/src/engines.js';
import { trainModel } from '../../worker-image/src/model.js';
import { createWorker } from '../../worker-image/src/worker.js';

const CORPUS = 'the pool keeps workers warm.\nlabels flip when a pod is claimed.\nthe worker answers at once.\n';

async function listen(engine: Promise<ChatEngine>, log?: (fields: Record<string, unknown>) => void): Promise<{ server: http.Server; base: string }> {
  const server = createWorker({ engine, log });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const post = (url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

async function openAiError(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.status, status);
  const body = (await res.json()) as { error: { message: string; type: string; param: unknown; code: string } };
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.code, code);
}

describe('the reference worker\'s settings and OpenAI routes', () => {
  const lines: Record<string, unknown>[] = [];
  let w: { server: http.Server; base: string };
  before(async () => {
    w = await listen(Promise.resolve(localEngine(trainModel(CORPUS), 0)), (l) => lines.push(l));
  });
  after(() => w.server.close());

  test('when settings are delivered, then 204, a second delivery 409, and the user shows in the log lines', async () => {
    const bad = await post(`${w.base}/session`, { settings: { sytem: 'x' } });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: string }).error, 'invalid_settings');
    const wrongModel = await post(`${w.base}/session`, { settings: { model: 'gpt-4o' } });
    assert.equal(wrongModel.status, 400);
    const ok = await post(`${w.base}/session`, { settings: { system: 'always talk about labels', user: 'alice' } });
    assert.equal(ok.status, 204);
    const again = await post(`${w.base}/session`, { settings: {} });
    assert.equal(again.status, 409);
    assert.deepEqual(Object.keys((await again.json()) as object), ['error', 'message']);
    const chat = (await (await post(`${w.base}/chat`, { message: 'tell me about the pool' })).json()) as { reply: string; turn: number };
    assert.match(chat.reply, /^Labels/, 'the system setting steers /chat');
    assert.ok(lines.some((l) => l.msg === 'turn' && l.route === '/chat' && l.user === 'alice'), JSON.stringify(lines));
  });

  test('when a completion names no system message, then the session\'s system setting steers it; when a client resends the history, then nothing is recorded twice', async () => {
    const before = ((await (await fetch(`${w.base}/history`)).json()) as { turns: { message: string; reply: string }[] }).turns;
    const res = await post(`${w.base}/v1/chat/completions`, {
      model: 'warmpool-bigram',
      messages: [...before.flatMap((t) => [{ role: 'user', content: t.message }, { role: 'assistant', content: t.reply }]), { role: 'user', content: 'and the pool?' }],
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { object: string; choices: { message: { content: string }; finish_reason: string }[]; usage: { completion_tokens: number; total_tokens: number } };
    assert.equal(body.object, 'chat.completion');
    assert.match(body.choices[0]?.message.content ?? '', /^Labels/);
    assert.ok(body.usage.completion_tokens > 0 && body.usage.total_tokens > body.usage.completion_tokens, JSON.stringify(body.usage));
    const turns = ((await (await fetch(`${w.base}/history`)).json()) as { turns: { message: string }[] }).turns;
    assert.deepEqual(turns.map((t) => t.message), [...before.map((t) => t.message), 'and the pool?']);
  });

  test('when a completion is streamed with include_usage and max_tokens, then chunks carry the deltas, a length finish, the usage and [DONE]', async () => {
    const res = await post(`${w.base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'workers' }], stream: true, max_tokens: 2, stream_options: { include_usage: true } });
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const events = (await res.text()).split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[]; usage?: { completion_tokens: number } });
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.equal(chunks[0]?.choices[0]?.delta.role, 'assistant');
    assert.equal(chunks.filter((c) => c.choices[0]?.delta.content).length, 2);
    assert.equal(chunks.at(-2)?.choices[0]?.finish_reason, 'length');
    assert.deepEqual(chunks.at(-1)?.choices, []);
    assert.equal(chunks.at(-1)?.usage?.completion_tokens, 2);
  });

  test('when a request is wrong, then the answer is an OpenAI error object with the fitting status', async () => {
    await openAiError(await post(`${w.base}/v1/chat/completions`, '{"messages": ['), 400, 'invalid_json');
    await openAiError(await post(`${w.base}/v1/chat/completions`, { messages: [] }), 400, 'invalid_value');
    await openAiError(await post(`${w.base}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }), 404, 'model_not_found');
    await openAiError(await post(`${w.base}/v1/chat/completions`, 'message=x', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
    const get = await fetch(`${w.base}/v1/chat/completions`);
    assert.equal(get.headers.get('allow'), 'POST');
    await openAiError(get, 405, 'method_not_allowed');
    await openAiError(await fetch(`${w.base}/v1/embeddings`), 404, 'unknown_url');
    await openAiError(await fetch(`${w.base}/v1/models/gpt-4o`), 404, 'model_not_found');
    const models = (await (await fetch(`${w.base}/v1/models`)).json()) as { object: string; data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['warmpool-bigram']);
  });
});

describe('the reference worker when the model is not there', () => {
  test('when the model is still loading, then completions get 503 in the OpenAI shape and settings wait too', async () => {
    const w = await listen(new Promise<ChatEngine>(() => undefined));
    try {
      await openAiError(await post(`${w.base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }] }), 503, 'model_loading');
      assert.equal((await post(`${w.base}/session`, { settings: {} })).status, 503);
    } finally {
      w.server.close();
    }
  });

  test('when the model server fails before the first token, then 502; after it, then an error event ends the stream', async () => {
    const failing: ChatEngine = {
      model: 'up', forwards: true,
      async *stream(messages) {
        if (messages.at(-1)?.content === 'late') yield 'one';
        throw new UpstreamModelError('model server answered 500');
      },
    };
    const w = await listen(Promise.resolve(failing));
    try {
      await openAiError(await post(`${w.base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'now' }] }), 502, 'model_unavailable');
      const res = await post(`${w.base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'late' }], stream: true });
      const text = await res.text();
      assert.match(text, /"content":"one"/);
      assert.match(text, /data: \{"error":\{"message":"model server answered 500"/);
      assert.doesNotMatch(text, /\[DONE\]/);
    } finally {
      w.server.close();
    }
  });
});

describe('the reference worker forwarding to a model server', () => {
  test('when OPENAI_BASE_URL is set, then the session\'s system prompt, model and temperature and the request\'s max_tokens reach the model server', async () => {
    const seen: Record<string, unknown>[] = [];
    const upstream = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => {
        seen.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const t of ['Hello', ' there']) res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: t } }] })}\n\n`);
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const w = await listen(Promise.resolve(openAiEngine(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`, 'default-model', undefined)));
    try {
      assert.equal((await post(`${w.base}/session`, { settings: { system: 'be kind', model: 'qwen', temperature: 0.3 } })).status, 204);
      const chat = (await (await post(`${w.base}/chat`, { message: 'hi' })).json()) as { reply: string };
      assert.equal(chat.reply, 'Hello there');
      const completion = (await (await post(`${w.base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'again' }], max_tokens: 5 })).json()) as { model: string };
      assert.equal(completion.model, 'qwen');
      assert.deepEqual(seen[0], { model: 'qwen', messages: [{ role: 'system', content: 'be kind' }, { role: 'user', content: 'hi' }], stream: true, temperature: 0.3 });
      assert.deepEqual(seen[1], {
        model: 'qwen',
        messages: [{ role: 'system', content: 'be kind' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello there' }, { role: 'user', content: 'again' }],
        stream: true, temperature: 0.3, max_tokens: 5,
      });
    } finally {
      w.server.close();
      upstream.close();
    }
  });
});
