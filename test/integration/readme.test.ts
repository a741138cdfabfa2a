import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, startController, waitWarm } from './harness.js';

const run = promisify(execFile);

/** The README's curl walk-through, as a newcomer would paste it, pointed at a test controller. */
function curlExample(port: number): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /## A session with curl[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'the README has the curl example');
  return block.replaceAll('localhost:8080', `127.0.0.1:${port}`);
}

describe('the README', () => {
  test('when its curl walk-through is run as written, then every command succeeds and the session ends with 204', async () => {
    const c = await startController({ POOL_SIZE: '2' });
    try {
      await waitWarm(c, 2);
      const cwd = mkdtempSync(path.join(os.tmpdir(), 'warmpool-readme-'));
      const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', curlExample(Number(new URL(c.base).port))], { cwd, timeout: 60_000 });
      assert.match(stdout, /"turn":1/);
      assert.match(stdout, /data: \[DONE\]/);
      assert.match(stdout, /204$/m);
      assert.match(stdout, /"turns":\[\{"message":"hello"/);
    } finally {
      await c.stop();
    }
  });

  test('when the controller is not up, then the walk-through stops at its first command with curl\'s error', async () => {
    const script = curlExample(1);
    await assert.rejects(run('bash', ['-euo', 'pipefail', '-c', script], { timeout: 30_000 }), (err: Error & { stderr?: string }) => /curl: \(7\)/.test(err.stderr ?? ''));
  });
});
