/**
 * The images' build and start, run on this machine as the Dockerfiles say (see
 * dockerfile-runner.ts): a clean copy of the tree as build context, both stages of each
 * Dockerfile, then the image's CMD started from its WORKDIR with nothing but the image's files.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildImage, makeContext, type Stage, type StageCache } from './dockerfile-runner.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the image's CMD from its WORKDIR with the image's ENV plus `env`, and nothing from
 * this checkout: no inherited KUBE* variables, a HOME of its own. `node` is this Node.js.
 */
function start(image: Stage, env: Record<string, string>) {
  const [command, ...args] = image.cmd ?? [];
  assert.equal(command, 'node', 'the image runs node');
  const child = spawn(process.execPath, args, {
    cwd: path.join(image.root, image.workdir),
    env: { PATH: process.env.PATH ?? '', HOME: image.root, ...image.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const stream of [child.stdout, child.stderr]) stream.setEncoding('utf8').on('data', (c: string) => output.push(...c.split('\n').filter(Boolean)));
  const proc = { child, output, exitCode: undefined as number | null | undefined, exited: Promise.resolve<number | null>(null) };
  proc.exited = new Promise((resolve) => child.once('exit', (code) => {
    proc.exitCode = code;
    resolve(code);
  }));
  return proc;
}

/** Polls `check` until it gives a value; fails when the process exits first or after `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, proc: ReturnType<typeof start>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await Promise.resolve().then(check).catch(() => undefined);
    if (value !== undefined) return value;
    if (proc.exitCode !== undefined) throw new Error(`exited (${proc.exitCode}) before ${what}; output:\n${proc.output.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${proc.output.join('\n')}`);
    await sleep(50);
  }
}

describe('images built and started as their Dockerfiles say', { timeout: 300_000 }, () => {
  const cache: StageCache = new Map();
  let context: string;

  before(() => {
    context = makeContext(ROOT);
  });

  after(() => {
    for (const dir of [context, ...[...cache.values()].map((s) => s.root)]) rmSync(dir, { recursive: true, force: true });
  });

  test('when the worker image is built and started on a free port, then it holds only production files and GET /healthz answers 200', async () => {
    const image = await buildImage(path.join(ROOT, 'worker-image/Dockerfile'), context, cache);
    const app = path.join(image.root, image.workdir);
    assert.deepEqual(readdirSync(app).sort(), ['node_modules', 'package-lock.json', 'package.json', 'worker-image']);
    assert.deepEqual(readdirSync(path.join(app, 'worker-image')).sort(), ['corpus.txt', 'dist']);
    for (const dev of ['typescript', 'esbuild', 'playwright-core']) assert.ok(!existsSync(path.join(app, 'node_modules', dev)), `no dev dependency (${dev}) in the image`);
    const port = await freePort();
    const worker = start(image, { HOST: '127.0.0.1', PORT: String(port) });
    try {
      const status = await until('the worker\'s /healthz', async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        return res.status === 200 ? res.status : undefined;
      }, worker);
      assert.equal(status, 200);
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });

  test('when the controller image is built and started with the local backend, then it holds only production files, logs listening, answers /healthz and serves the status page on its admin port, and exits 0 on SIGTERM', async () => {
    const image = await buildImage(path.join(ROOT, 'Dockerfile'), context, cache);
    const app = path.join(image.root, image.workdir);
    assert.deepEqual(readdirSync(app).sort(), ['controller', 'node_modules', 'package-lock.json', 'package.json']);
    assert.deepEqual(readdirSync(path.join(app, 'controller')), ['dist']);
    for (const dev of ['typescript', 'esbuild', 'playwright-core']) assert.ok(!existsSync(path.join(app, 'node_modules', dev)), `no dev dependency (${dev}) in the image`);
    // POOL_SIZE=0: the controller image carries no worker to start, and none is needed to listen.
    const controller = start(image, { BACKEND: 'local', PORT: '0', ADMIN_PORT: '0', LISTEN_HOST: '127.0.0.1', POOL_SIZE: '0', SHUTDOWN_TIMEOUT_S: '2' });
    try {
      const listening = await until('the controller to log listening', () => controller.output
        .map((l) => { try { return JSON.parse(l) as { msg?: string; adminPort?: number }; } catch { return undefined; } })
        .find((l) => l?.msg === 'listening'), controller);
      const res = await fetch(`http://127.0.0.1:${listening.adminPort}/healthz`);
      assert.equal(res.status, 200);
      const page = await fetch(`http://127.0.0.1:${listening.adminPort}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<script type="module" src="\/assets\/app.js">/);
      assert.equal((await fetch(`http://127.0.0.1:${listening.adminPort}/assets/app.js`)).status, 200);
      controller.child.kill('SIGTERM');
      assert.equal(await controller.exited, 0, `exit code 0; output:\n${controller.output.join('\n')}`);
    } finally {
      controller.child.kill('SIGKILL');
    }
  });
});
