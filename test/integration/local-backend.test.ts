import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { chat, childPids, createSession, eventually, groupMembers, parseLine, ROOT, startController, waitWarm, type Controller } from './harness.js';

async function readyz(c: Controller): Promise<{ status: number; body: { ready: boolean; problem?: string } }> {
  const res = await fetch(`${c.admin}/readyz`);
  return { status: res.status, body: (await res.json()) as never };
}

async function problem(c: Controller): Promise<string | undefined> {
  return ((await (await fetch(`${c.admin}/pool`)).json()) as { problem?: string }).problem;
}

function logged(c: Controller, msg: string): Promise<Record<string, unknown>> {
  return eventually(`a "${msg}" log line`, () => c.output.map(parseLine).find((l) => l?.msg === msg));
}

describe('local workers and their controller', () => {
  test('when the controller is killed with SIGKILL, then every worker process, and what it started, exits', async () => {
    // Each worker leaves a sleeping child behind in its group: it must go too.
    const c = await startController({ POOL_SIZE: '3', LOCAL_WORKER_CMD: `sh -c 'sleep 300 & exec "$0" "$1"' ${process.execPath} test/integration/fixtures/echo-worker.mjs` });
    try {
      await waitWarm(c, 3);
      const id = await createSession(c);
      await chat(c, id, 'hello');
      const workers = await eventually('four worker processes', () => {
        const pids = childPids(c.proc.pid as number);
        return pids.length === 4 ? pids : undefined;
      });
      for (const pid of workers) assert.ok(groupMembers(pid).length >= 2, `worker ${pid} runs with its sleeping child`);
      process.kill(c.proc.pid as number, 'SIGKILL');
      await c.exited;
      await eventually('every worker group to be gone', () => (workers.every((pid) => groupMembers(pid).length === 0) ? true : undefined), 10_000);
    } finally {
      await c.stop();
    }
  });
});

describe('set-ups that can never serve', () => {
  test('when POOL_SIZE=0 on the local backend, then the controller warns at start, /pool says why and /readyz is false', async () => {
    const c = await startController({ POOL_SIZE: '0' });
    try {
      const warned = await logged(c, 'this pool can never serve a session');
      assert.equal(warned.level, 'warn');
      assert.match(String(warned.problem), /POOL_SIZE=0: no warm workers will ever start; every session will wait CLAIM_TIMEOUT_MS and get 503/);
      assert.match(String(await problem(c)), /POOL_SIZE=0/);
      const r = await readyz(c);
      assert.equal(r.status, 503);
      assert.equal(r.body.ready, false);
      assert.match(String(r.body.problem), /POOL_SIZE=0/);
    } finally {
      await c.stop();
    }
  });

  test('when LOCAL_WORKER_CMD exits at once, then the controller warns with the count and its last stderr line, in the log and /pool, and /readyz is false', async () => {
    const c = await startController({ LOCAL_WORKER_CMD: `${process.execPath} -e "console.error('cannot load the model'); process.exit(3)"` });
    try {
      const warned = await logged(c, 'workers keep dying before they are ready');
      assert.equal(warned.level, 'warn');
      assert.ok(Number(warned.failures) >= 3, 'the count of workers that died');
      assert.equal(warned.lastStderr, 'cannot load the model');
      const said = String(await problem(c));
      assert.match(said, /LOCAL_WORKER_CMD keeps exiting before it answers GET \/healthz: \d+ workers in a row/);
      assert.match(said, /cannot load the model/);
      const r = await readyz(c);
      assert.equal(r.status, 503);
      assert.match(String(r.body.problem), /LOCAL_WORKER_CMD/);
    } finally {
      await c.stop();
    }
  });

  test('when a working pool is up, then /readyz is true and /pool names no problem', async () => {
    const c = await startController();
    try {
      await waitWarm(c, 2);
      assert.deepEqual(await readyz(c), { status: 200, body: { ready: true } });
      assert.equal(await problem(c), undefined);
    } finally {
      await c.stop();
    }
  });
});

describe('BACKEND=auto on a developer machine', () => {
  test('when HOME holds an empty .kube/config and BACKEND is unset, then the controller starts on the local backend, says why, and serves a chat', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'warmpool-home-'));
    mkdirSync(path.join(home, '.kube'));
    writeFileSync(path.join(home, '.kube', 'config'), '');
    const c = await startController({ HOME: home, BACKEND: '' });
    try {
      const chosen = await logged(c, 'backend chosen');
      assert.equal(chosen.backend, 'local');
      assert.match(String(chosen.reason), /\.kube\/config/);
      await waitWarm(c, 1);
      const id = await createSession(c);
      assert.equal((await chat(c, id, 'hello')).turn, 1);
    } finally {
      await c.stop();
    }
  });
});

describe('BACKEND=kubernetes without a usable cluster', () => {
  test('when the kubeconfig names no cluster, then the controller exits 1 with one line that names BACKEND=local, and no stack trace', () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'warmpool-home-'));
    const kubeconfig = path.join(home, 'config');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n');
    const env = { ...process.env, HOME: home, BACKEND: 'kubernetes', KUBECONFIG: kubeconfig, PORT: '0', ADMIN_PORT: '0', LISTEN_HOST: '127.0.0.1' };
    const run = spawnSync(process.execPath, ['controller/dist/main.js'], { cwd: ROOT, env, encoding: 'utf8', timeout: 20_000 });
    assert.equal(run.status, 1);
    const fatal = run.stdout.split('\n').map(parseLine).filter((l) => l?.level === 'fatal');
    assert.equal(fatal.length, 1);
    assert.match(String(fatal[0]?.msg), /set BACKEND=local/);
    assert.doesNotMatch(run.stdout + run.stderr, /\n\s+at /, 'no stack trace');
  });
});

describe('start-up with a bad environment', () => {
  test('when several variables are bad, then the controller names every one of them and exits 1', () => {
    const env = { ...process.env, POOL_SIZE: 'three', PORT: '9090', AUTO_SESSION: 'maybe' };
    const run = spawnSync(process.execPath, ['controller/dist/main.js'], { cwd: ROOT, env, encoding: 'utf8', timeout: 20_000 });
    assert.equal(run.status, 1);
    const lines = run.stderr.trim().split('\n');
    assert.deepEqual(lines.map((l) => /^warmpool: invalid configuration: ([A-Z_]+): /.exec(l)?.[1]).sort(), ['AUTO_SESSION', 'POOL_SIZE', 'PORT']);
    assert.ok(lines.some((l) => l.includes('PORT: must differ from ADMIN_PORT')), 'the port clash names PORT');
  });
});
