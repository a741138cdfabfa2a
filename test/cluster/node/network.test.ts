/**
 * The node tier keeps every pod packet on the machine: the drop rules stand before kubelet
 * starts, and a pod that dials an address behind another interface (a namespace the tier made,
 * with a listener the host itself reaches) gets nothing through.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { waitUntil } from '../wait.js';
import { dialFrom, imageNamed, kubectl, nodeState } from './kubectl.js';
import { chainRules, DROP_RULES, OUTSIDE_IP, OUTSIDE_NS, sh } from './net.js';

const NS = 'node-network';
const PORT = 7000;

/** Packets the tier's mangle chain dropped so far. */
function dropped(): number {
  return sh('iptables', ['-t', 'mangle', '-L', 'WARMPOOL-NODE', '-v', '-n', '-x']).split('\n')
    .filter((l) => l.includes('DROP')).reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0);
}

function hostDial(host: string, port: number): Promise<string> {
  return new Promise((res) => {
    const s = connect(port, host);
    s.setTimeout(3000, () => { s.destroy(); res('ETIMEDOUT'); });
    s.on('connect', () => { s.destroy(); res('connected'); });
    s.on('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
  });
}

describe('the node tier\'s network', () => {
  let listener: ChildProcess;

  before(async () => {
    listener = spawn('ip', ['netns', 'exec', OUTSIDE_NS, process.execPath, '-e', `require('net').createServer((s)=>s.end('hi')).listen(${PORT},'${OUTSIDE_IP}')`], { stdio: 'ignore' });
    await waitUntil('the outside listener', async () => ((await hostDial(OUTSIDE_IP, PORT)) === 'connected' ? true : undefined), 30_000);
    kubectl('create', 'namespace', NS);
    kubectl('run', 'prober', '-n', NS, `--image=${imageNamed('/chatbot-worker:')}`, '--image-pull-policy=Never', '--restart=Never',
      '--overrides', JSON.stringify({ spec: { securityContext: { runAsUser: 1000, runAsNonRoot: true } } }), '--command', '--', 'sleep', 'infinity');
    kubectl('wait', '-n', NS, '--for=condition=Ready', 'pod/prober', '--timeout=120s');
  });

  after(() => {
    listener.kill();
    kubectl('delete', 'namespace', NS, '--timeout=120s');
  });

  test('when kubelet started, then the drop rules were already in place, first in FORWARD, in mangle and filter', () => {
    const state = nodeState();
    assert.ok(state.dropRulesAt > 0 && state.dropRulesAt < state.kubeletStartedAt, JSON.stringify(state));
    for (const table of ['mangle', 'filter'] as const) {
      assert.deepEqual(chainRules(table), DROP_RULES, table);
      const forward = sh('iptables', ['-t', table, '-S', 'FORWARD']).split('\n').filter((l) => l.startsWith('-A'));
      if (table === 'mangle') assert.equal(forward[0], '-A FORWARD -j WARMPOOL-NODE');
      else assert.ok(forward.includes('-A FORWARD -j WARMPOOL-NODE'), forward.join('\n'));
    }
    assert.equal(sh('iptables', ['-t', 'nat', '-S']).split('\n').filter((l) => /MASQUERADE/.test(l) && !/KUBE-/.test(l)).length, 0, 'no masquerade rule besides kube-proxy\'s marked-packet one');
  });

  test('when a pod dials a listener behind another interface, then the host drops it, while the host reaches that listener', async () => {
    assert.equal(await hostDial(OUTSIDE_IP, PORT), 'connected');
    const droppedBefore = dropped();
    assert.equal(dialFrom(NS, 'prober', OUTSIDE_IP, PORT), 'ETIMEDOUT');
    assert.ok(dropped() > droppedBefore, 'the drop rule counted the pod\'s packets');
  });

  test('when a pod dials an address of the benchmark range that nothing owns, then it is blackholed', () => {
    assert.notEqual(dialFrom(NS, 'prober', '198.19.255.254', 80), 'connected');
  });
});
