import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../../controller/src/log.js';
import { createMetrics } from '../../controller/src/metrics.js';
import { ClaimQueue } from '../../controller/src/pool/claim-queue.js';
import { LocalPools } from '../../controller/src/pool/local/pools.js';
import { LocalPool, type Clock, type Exit, type WorkerProcess } from '../../controller/src/pool/local/index.js';
import { processLauncher } from '../../controller/src/pool/local/process.js';
import { systemClock } from '../../controller/src/pool/local/clock.js';
import { eventually, groupMembers } from '../integration/harness.js';

/** Lets every pending promise chain and I/O callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Time that moves only when a test says so. */
class FakeClock implements Clock {
  private t = 0;
  private sleepers: { at: number; wake: () => void }[] = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const sleeper = { at: this.t + ms, wake: resolve };
      this.sleepers.push(sleeper);
      signal?.addEventListener('abort', () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        resolve();
      }, { once: true });
    });
  }

  /** Moves time forward by `ms`, waking each sleeper at its own instant, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const next = this.sleepers.filter((s) => s.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.sleepers = this.sleepers.filter((s) => s !== next);
      this.t = next.at;
      next.wake();
    }
    this.t = end;
    await settle();
  }
}

/** A worker that answers its probe while `up`, and exits when told or stopped. */
class FakeWorker implements WorkerProcess {
  readonly pid = undefined;
  up = true;
  stops = 0;
  stderr: string | undefined;
  readonly exited: Promise<Exit>;
  private dead = false;
  private resolveExit!: (exit: Exit) => void;

  constructor(readonly name: string, readonly port: number, readonly launchedAt: number) {
    this.exited = new Promise((resolve) => { this.resolveExit = resolve; });
  }

  lastStderr(): string | undefined {
    return this.stderr;
  }

  async healthy(): Promise<boolean> {
    return this.up && !this.dead;
  }

  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.dead) return;
    this.dead = true;
    this.resolveExit({ code, signal });
  }

  async stop(): Promise<void> {
    this.stops++;
    this.exit(null, 'SIGTERM');
    await this.exited;
  }
}

/** Local pools by name and size (one `chatbot` pool of `sizes` workers when a number). */
function fakePool(sizes: number | Record<string, number>, behave: (w: FakeWorker) => void = () => undefined) {
  const clock = new FakeClock();
  const launched: FakeWorker[] = [];
  const queue = new ClaimQueue({ timeoutMs: 1000, maxPending: 10, retryAfterS: () => 1 });
  const pools = Object.entries(typeof sizes === 'number' ? { chatbot: sizes } : sizes).map(([name, size]) => new LocalPool({
    name,
    size,
    command: 'unused',
    env: {},
    host: '127.0.0.1',
    queue,
    logger: createLogger('silent'),
    metrics: createMetrics(),
    clock,
    launcher: async (name) => {
      const worker = new FakeWorker(name, 20_000 + launched.length, clock.now());
      launched.push(worker);
      behave(worker);
      return worker;
    },
  }));
  return { pool: new LocalPools(pools, queue), clock, launched };
}

const request = (hash: string) => ({ hash, client: 'c', pools: ['chatbot'] });

describe('local pool', () => {
  test('when the pool starts, then it keeps `size` workers warm, replacing one that exits', async () => {
    const { pool, clock, launched } = fakePool(3);
    await pool.start();
    await clock.advance(0);
    assert.equal(launched.length, 3);
    assert.deepEqual(pool.snapshot(), { backend: 'local', warm: 3, warming: 0, assigned: 0, pendingClaims: 0, pools: { chatbot: { warm: 3, warming: 0, assigned: 0, size: 3 } } });
    assert.equal(pool.isReady(), true);
    launched[1]?.exit(1);
    await clock.advance(0);
    assert.equal(launched.length, 4);
    assert.equal(pool.snapshot().warm, 3);
    await pool.stop();
  });

  test('when a worker is claimed, then the oldest warm one is assigned and a replacement starts', async () => {
    const { pool, clock, launched } = fakePool(2);
    await pool.start();
    await clock.advance(0);
    const session = await pool.claim(request('h1'));
    assert.equal(session.endpoint.port, launched[0]?.port);
    assert.equal(session.worker, launched[0]?.name);
    assert.equal(pool.lookup('h1'), session);
    await clock.advance(0);
    assert.equal(launched.length, 3);
    assert.equal(pool.snapshot().warm, 2);
    assert.equal(pool.snapshot().assigned, 1);
    await pool.stop();
  });

  test('when a session is released, then its worker is stopped and the session is gone', async () => {
    const { pool, clock, launched } = fakePool(1);
    await pool.start();
    await clock.advance(0);
    const session = await pool.claim(request('h1'));
    assert.equal(await pool.release(session, 'deleted'), true);
    assert.equal(launched[0]?.stops, 1);
    assert.equal(pool.lookup('h1'), undefined);
    assert.equal(await pool.release(session, 'deleted'), false);
    await clock.advance(0);
    assert.equal(launched.length, 2, 'the claim started one replacement; the release none');
    await pool.stop();
  });

  test('when an assigned worker exits, then its session is reported lost', async () => {
    const { pool, clock, launched } = fakePool(1);
    const gone: unknown[] = [];
    pool.onGone(({ hash, worker }, kind, why) => gone.push([hash, worker, kind, why]));
    await pool.start();
    await clock.advance(0);
    await pool.claim(request('h1'));
    launched[0]?.exit(137);
    await clock.advance(0);
    assert.deepEqual(gone, [['h1', launched[0]?.name, 'lost', 'exited with code 137']]);
    assert.equal(pool.lookup('h1'), undefined);
    await pool.stop();
  });

  test('when the command dies at once, then restarts back off 250 ms, 500 ms, 1 s, 2 s and the pool says why it cannot serve', async () => {
    let healthyFrom = Infinity;
    const { pool, clock, launched } = fakePool(1, (w) => {
      if (w.launchedAt >= healthyFrom) return;
      w.stderr = 'cannot load the model';
      w.exit(3);
    });
    await pool.start();
    await clock.advance(4000);
    assert.deepEqual(launched.map((w) => w.launchedAt), [0, 250, 750, 1750, 3750]);
    assert.equal(pool.isReady(), false);
    const problem = String(pool.snapshot().problem);
    assert.match(problem, /LOCAL_WORKER_CMD keeps exiting before it answers GET \/healthz: 5 workers in a row/);
    assert.match(problem, /cannot load the model/);
    healthyFrom = clock.now();
    await clock.advance(4000);
    assert.equal(launched.at(-1)?.launchedAt, 7750);
    assert.equal(pool.snapshot().warm, 1);
    assert.equal(pool.snapshot().problem, undefined);
    assert.equal(pool.isReady(), true);
    await pool.stop();
  });

  test('when a warm worker stopped answering its probe, then a claim stops it and hands out the next one', async () => {
    const { pool, clock, launched } = fakePool(2);
    await pool.start();
    await clock.advance(0);
    const [hung, good] = launched;
    assert.ok(hung && good);
    hung.up = false;
    const session = await pool.claim(request('h1'));
    assert.equal(session.worker, good.name);
    assert.equal(hung.stops, 1);
    await clock.advance(0);
    assert.equal(launched.length, 4, 'one replacement for the hung worker, one for the claimed');
    assert.equal(pool.snapshot().warm, 2);
    await pool.stop();
  });

  test('when POOL_SIZE is 0, then no worker starts, the pool says why and it is not ready', async () => {
    const { pool, clock, launched } = fakePool(0);
    await pool.start();
    await clock.advance(1000);
    assert.equal(launched.length, 0);
    assert.equal(pool.isReady(), false);
    assert.match(String(pool.snapshot().problem), /POOL_SIZE=0: no warm workers will ever start/);
    await pool.stop();
  });

  test('when the pool stops, then every worker is stopped and none is started again', async () => {
    const { pool, clock, launched } = fakePool(2);
    await pool.start();
    await clock.advance(0);
    await pool.claim(request('h1'));
    await pool.stop();
    await clock.advance(1000);
    assert.ok(launched.every((w) => w.stops > 0), 'every worker stopped');
    assert.equal(launched.length, 3);
    assert.equal(pool.isReady(), false);
  });
});

describe('local worker processes', () => {
  const launch = (command: string, stopGraceMs = 5000) => processLauncher({
    command,
    env: process.env,
    host: '127.0.0.1',
    logger: createLogger('silent'),
    clock: systemClock,
    stopGraceMs,
    probeTimeoutMs: 500,
  })('test-worker');

  test('when a worker is stopped, then its whole process group is gone, what it started included', async () => {
    const worker = await launch(`sh -c 'sleep 300 & sleep 300 & wait'`);
    const pgid = worker.pid as number;
    await eventually('the worker and its children', () => (groupMembers(pgid).length >= 3 ? true : undefined));
    await worker.stop();
    await eventually('the group to be gone', () => (groupMembers(pgid).length === 0 ? true : undefined), 5000);
  });

  test('when a worker ignores SIGTERM, then SIGKILL follows after the grace period', async () => {
    const worker = await launch(`sh -c 'trap "" TERM; sleep 300 & wait'`, 200);
    const pgid = worker.pid as number;
    // The watchdog, the worker's shell and its sleep: the sleep starts after the trap is set
    // (the watchdog and the shell alone are two members before it is).
    await eventually('the worker and its child', () => (groupMembers(pgid).length >= 3 ? true : undefined));
    await worker.stop();
    assert.deepEqual(await worker.exited, { code: null, signal: 'SIGKILL' });
    await eventually('the group to be gone', () => (groupMembers(pgid).length === 0 ? true : undefined), 5000);
  });

  test('when a worker writes to stderr and exits, then its last line and exit code are kept', async () => {
    const worker = await launch(`sh -c 'echo first >&2; echo last >&2; exit 4'`);
    assert.deepEqual(await worker.exited, { code: 4, signal: null });
    assert.equal(worker.lastStderr(), 'last');
    assert.equal(await worker.healthy(), false);
  });
});

describe('several local pools', () => {
  const inPools = (hash: string, pools: string[]) => ({ hash, client: 'c', pools });

  test('when a claim lists pools, then it takes from the first with a warm worker, and the session carries that pool', async () => {
    let started = 0;
    // Replacements never turn warm: what the first two claims take is all there is.
    const { pool, clock } = fakePool({ big: 1, small: 1 }, (w) => { w.up = ++started <= 2; });
    await pool.start();
    await clock.advance(0);
    assert.equal((await pool.claim(inPools('h1', ['small', 'big']))).pool, 'small');
    assert.equal((await pool.claim(inPools('h2', ['small', 'big']))).pool, 'big', 'small has none warm now: the next in the list');
    assert.deepEqual(Object.keys(pool.snapshot().pools).sort(), ['big', 'small']);
    assert.equal(pool.snapshot().pools.small?.assigned, 1);
    await pool.stop();
  });

  test('when no listed pool has a warm worker, then the claim waits and takes whichever turns warm first', async () => {
    const { pool, clock, launched } = fakePool({ a: 1, b: 1 }, (w) => { w.up = false; });
    await pool.start();
    await clock.advance(0);
    const waiting = pool.claim(inPools('h1', ['a', 'b']));
    await settle();
    const b = launched.find((w) => w.name.startsWith('b-worker')) as FakeWorker;
    b.up = true;
    await clock.advance(200);
    const got = await waiting;
    assert.deepEqual([got.pool, got.worker], ['b', b.name]);
    await pool.stop();
  });

  test('when one pool cannot serve and another can, then the backend is ready and /pool names the broken one', async () => {
    const { pool, clock } = fakePool({ broken: 0, fine: 1 });
    await pool.start();
    await clock.advance(0);
    assert.equal(pool.isReady(), true);
    assert.match(String(pool.snapshot().pools.broken?.problem), /POOL_SIZE=0/);
    assert.equal(pool.snapshot().problem, undefined);
    await pool.stop();
  });
});

