/**
 * The `scale` section of docs/benchmarks.md: tables per pool size, the targets as ratios of one
 * run, a plot, the peers' published gates, and what a 50,000-pod pool at 1,000 claims/s needs,
 * worked out from the measured per-claim and per-pod costs.
 */
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const fmt = (x: unknown, digits = 2) => (typeof x === 'number' && Number.isFinite(x) ? String(Math.round(x * 10 ** digits) / 10 ** digits) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
const replicasOf = (n: number) => `${n} replica${n > 1 ? 's' : ''}`;
const kinds = (by: Json, per: number) => Object.entries(by).map(([k, v]) => `${k} ${fmt((v as number) / Math.max(per, 1), 2)}`).join(', ');

/** A phase of a pool size; runs before split placement had none, and were all shared. */
const find = (size: Json, path: string, replicas: number, load: string, placement = 'shared'): Json | undefined =>
  (size.phases as Json[]).find((p) => p.path === path && p.replicas === replicas && String(p.load).startsWith(load) && (p.placement ?? 'shared') === placement);

const SPLIT_NOTE = 'control plane on core 0, the rest on core 1';

/** Who spent the cores in each burst, in ms of CPU per claim while it ran. */
function partsTable(size: Json): string[] {
  const bursts = (size.phases as Json[]).filter((p) => String(p.load).startsWith('burst') && p.cpuMsPerClaimByPart);
  if (bursts.length === 0) return [];
  const parts = ['API server', 'etcd', 'controller manager', 'scheduler', 'node agents', 'controllers', 'load generator', 'busy (all cores)', 'idle (all cores)'];
  return [
    `Who spent the cores in the bursts on ${size.size} pods, in ms of CPU per claim while the burst ran (the node agents answer the settings delivery and report the replacement pods' status; the load generator is the client; \`split\`: ${SPLIT_NOTE}):`,
    '',
    `| path | cores | claims/s | ${parts.join(' | ')} |`,
    `| --- | --- | ---: | ${parts.map(() => '---:').join(' | ')} |`,
    ...bursts.map((p) => `| ${p.path === 'raw PATCH' ? 'raw PATCH floor' : replicasOf(p.replicas)} | ${p.placement ?? 'shared'} | ${fmt(p.perSecond, 1)} | ${parts.map((k) => (k in p.cpuMsPerClaimByPart ? fmt(p.cpuMsPerClaimByPart[k], 2) : k.startsWith('idle') ? '0' : '')).join(' | ')} |`),
    '',
  ];
}

function sizeTable(size: Json): string[] {
  const rows = (size.phases as Json[]).map((p) => {
    const who = `${p.path === 'raw PATCH' ? 'raw conditional PATCH (floor)' : `\`POST /sessions\`, ${replicasOf(p.replicas)}`}${p.placement === 'split' ? ` (${SPLIT_NOTE})` : ''}`;
    return `| ${who} | ${p.load} | ${p.ok}${p.failed ? ` (+${p.failed} failed)` : ''} | ${fmt(p.p50Ms, 1)} | ${fmt(p.p90Ms, 1)} | ${fmt(p.p99Ms, 1)} | ${fmt(p.perSecond, 1)} | ${p.path === 'raw PATCH' ? '' : fmt(p.conflictsPerClaim, 3)} | ${p.path === 'raw PATCH' ? '' : `${fmt(p.controllerWritesPerClaim)} (${kinds(p.controllerWrites, p.ok)})`} | ${fmt(p.apiWritesPerClaim, 1)} | ${fmt(p.podWatchEventsPerClaim, 1)} | ${p.path === 'raw PATCH' ? '' : fmt(p.cpuMsPerClaim, 2)} | ${p.path === 'raw PATCH' ? '' : `${p.doubleClaims ?? 'n/a'} / ${p.strayClaims ?? 'n/a'}`} |`;
  });
  return [
    `### ${size.size} warm hollow pods`,
    '',
    `Filled from empty in ${fmt(size.fillSeconds, 1)} s. Controller heap after a full collection: ${fmt(size.heapEarlyMb, 1)} MB with the pool nearly empty, ${fmt(size.heapFullMb, 1)} MB with ${size.size} pods cached: **${fmt(size.heapPerPodKiB, 2)} KiB per cached pod**.`,
    '',
    '| path | load | claims | p50 ms | p90 ms | p99 ms | claims/s | conflicts per claim | controller writes per claim (by verb) | all API writes per claim, replacement included | pod watch events sent per claim (all watchers) | controller CPU ms per claim | double / stray claims |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    ...partsTable(size),
    ...profileTable(size.burstProfile as Json | undefined),
  ];
}

/** Where one replica's CPU went in one more burst, profiled through its inspector (not a measured phase: the profiler costs CPU). */
function profileTable(profile: Json | undefined): string[] {
  if (!profile) return [];
  const share = (rows: Json[]) => rows.map((r) => `| ${String(r.name).replace(/\|/g, '\\|')} | ${fmt(100 * (r.share as number), 1)} % |`);
  return [
    `Where one replica's CPU went in one more burst, profiled (self time, ${fmt(profile.busySeconds, 2)} s busy):`,
    '',
    '| part | share of busy time |',
    '| --- | ---: |',
    ...share(profile.categories as Json[]),
    '',
    '| function | share of busy time |',
    '| --- | ---: |',
    ...share((profile.topFunctions as Json[]).slice(0, 10)),
    '',
  ];
}

/** Figures the targets and the paper estimate use, from the largest pool of the run. */
function headline(scale: Json) {
  const sizes = scale.sizes as Json[];
  const small = sizes[0] as Json;
  const big = sizes[sizes.length - 1] as Json;
  const rate = (s: Json, path: string, replicas: number) => find(s, path, replicas, 'burst')?.perSecond ?? find(s, path, replicas, '300/s')?.perSecond;
  return {
    small, big,
    raw75: find(big, 'raw PATCH', 0, '75/s'),
    ours75: find(big, 'POST /sessions', 1, '75/s'),
    rawRate: rate(big, 'raw PATCH', 0),
    rate1: rate(big, 'POST /sessions', 1),
    rate3: rate(big, 'POST /sessions', 3),
    splitRaw: find(big, 'raw PATCH', 0, 'burst', 'split')?.perSecond,
    split1: find(big, 'POST /sessions', 1, 'burst', 'split')?.perSecond,
    split3: find(big, 'POST /sessions', 3, 'burst', 'split')?.perSecond,
    cpuSmall: find(small, 'POST /sessions', 1, '75/s')?.cpuMsPerClaim,
    cpuBig: find(big, 'POST /sessions', 1, '75/s')?.cpuMsPerClaim,
  };
}

function targets(scale: Json): string[] {
  const h = headline(scale);
  const p99Ratio = (h.ours75?.p99Ms ?? NaN) / (h.raw75?.p99Ms ?? NaN);
  const cpuRatio = (h.cpuBig ?? NaN) / (h.cpuSmall ?? NaN);
  const maxHeap = Math.max(...(scale.sizes as Json[]).map((s) => s.heapPerPodKiB as number));
  return [
    '| target (ratios within one run) | figure | |',
    '| --- | --- | --- |',
    `| claim p99 at 75/s on ${h.big.size} warm pods <= 2 × raw PATCH p99 | ${fmt(h.ours75?.p99Ms, 1)} ms vs ${fmt(h.raw75?.p99Ms, 1)} ms: ${fmt(p99Ratio)} × | ${verdict(p99Ratio <= 2)} |`,
    `| 1 replica >= 0.8 × the raw PATCH rate (burst) | ${fmt(h.rate1, 0)} vs ${fmt(h.rawRate, 0)}/s: ${fmt(h.rate1 / h.rawRate)} × | ${verdict(h.rate1 / h.rawRate >= 0.8)} |`,
    `| 3 replicas >= 0.8 × the raw PATCH rate (burst) | ${fmt(h.rate3, 0)}/s: ${fmt(h.rate3 / h.rawRate)} × | ${verdict(h.rate3 / h.rawRate >= 0.8)} |`,
    ...(h.splitRaw ? [
      `| 1 replica >= 0.8 × the raw PATCH rate (burst, ${SPLIT_NOTE}) | ${fmt(h.split1, 0)} vs ${fmt(h.splitRaw, 0)}/s: ${fmt(h.split1 / h.splitRaw)} × | ${verdict(h.split1 / h.splitRaw >= 0.8)} |`,
      `| 3 replicas >= 0.8 × the raw PATCH rate (burst, ${SPLIT_NOTE}) | ${fmt(h.split3, 0)}/s: ${fmt(h.split3 / h.splitRaw)} × | ${verdict(h.split3 / h.splitRaw >= 0.8)} |`,
    ] : []),
    `| controller heap <= 2 KiB per cached pod | ${fmt(maxHeap, 2)} KiB (largest of the sizes) | ${verdict(maxHeap <= 2)} |`,
    `| controller CPU per claim flat from ${h.small.size} to ${h.big.size} pods (within 20 %) | ${fmt(h.cpuSmall)} → ${fmt(h.cpuBig)} ms: ${fmt(cpuRatio)} × | ${verdict(Math.abs(cpuRatio - 1) <= 0.2)} |`,
    `| the peer's CI gate at 75/s: p50 and p90 <= 300 ms, p99 <= 500 ms (1 replica, ${h.big.size} pods) | p50 ${fmt(h.ours75?.p50Ms, 1)}, p90 ${fmt(h.ours75?.p90Ms, 1)}, p99 ${fmt(h.ours75?.p99Ms, 1)} ms; the raw floor in the same run: p50 ${fmt(h.raw75?.p50Ms, 1)}, p90 ${fmt(h.raw75?.p90Ms, 1)}, p99 ${fmt(h.raw75?.p99Ms, 1)} ms | ${verdict(h.ours75?.p50Ms <= 300 && h.ours75?.p90Ms <= 300 && h.ours75?.p99Ms <= 500)} |`,
    '',
    ...overload(h.big),
  ];
}

/** The steady 300/s phase: more than this machine's API server takes, and how each side copes. */
function overload(big: Json): string[] {
  const raw = find(big, 'raw PATCH', 0, '300/s');
  const one = find(big, 'POST /sessions', 1, '300/s');
  const three = find(big, 'POST /sessions', 3, '300/s');
  if (!raw || !one || !three) return [];
  return [
    `At a steady 300/s on ${big.size} pods the offered rate is above what this run's API server took at all: the raw floor completed ${fmt(raw.perSecond, 0)}/s with p50 ${fmt(raw.p50Ms / 1000, 1)} s and p99 ${fmt(raw.p99Ms / 1000, 1)} s, every request queued until it landed. The controller sheds instead: a claim write still unanswered at its 5 s deadline fails the claim with 503 and puts the replica in fail-fast mode (built for an API server that answers nothing) until a probe is answered, so ${one.failed} of ${one.ok + one.failed} requests got 503 through one replica (${fmt(one.perSecond, 0)} claims/s, ${fmt(one.perSecond / raw.perSecond)} × the floor) and ${three.failed} of ${three.ok + three.failed} through three (${fmt(three.perSecond, 0)}/s, ${fmt(three.perSecond / raw.perSecond)} ×); ${(one.strayClaims ?? 0) + (three.strayClaims ?? 0)} claim writes landed after their request had failed (stray), which the orphan sweep ends. A deadline spent waiting for one of the replica's 16 connections is read as an API server that does not answer, and each cancelled request takes its connection with it, so the next request pays a new TLS handshake (a profile under overload shows the TLS set-up among the top frames): telling a slow API server from a hung one, and keeping connections through a cancelled claim, is what is left to do here.`,
    '',
  ];
}

/** A mermaid line chart: claim p99 by load on the largest pool, raw floor against 1 and 3 replicas. */
function plot(scale: Json): string[] {
  const big = headline(scale).big;
  const loads = [...new Set((big.phases as Json[]).map((p) => String(p.load)))];
  const series = (path: string, replicas: number) => loads.map((l) => fmt(find(big, path, replicas, l)?.p99Ms ?? 0, 0)).join(', ');
  return [
    `Claim p99 (ms) by load on ${big.size} warm pods; lines in order: raw PATCH floor, 1 replica, 3 replicas.`,
    '',
    '```mermaid',
    'xychart-beta',
    `  title "p99 ms, ${big.size} warm hollow pods"`,
    `  x-axis [${loads.map((l) => `"${l}"`).join(', ')}]`,
    '  y-axis "p99 ms"',
    `  line [${series('raw PATCH', 0)}]`,
    `  line [${series('POST /sessions', 1)}]`,
    `  line [${series('POST /sessions', 3)}]`,
    '```',
    '',
  ];
}

/** What 50,000 warm pods at 1,000 claims/s need, from this run's per-claim and per-pod figures. */
function onPaper(scale: Json): string[] {
  const h = headline(scale);
  const cpuMs = h.cpuBig ?? NaN;
  const kib = h.big.heapPerPodKiB as number;
  const writes = find(h.big, 'POST /sessions', 1, '75/s')?.controllerWritesPerClaim ?? NaN;
  const all = find(h.big, 'POST /sessions', 1, '75/s')?.apiWritesPerClaim ?? NaN;
  const rawAll = h.raw75?.apiWritesPerClaim ?? NaN;
  const cores = (1000 * cpuMs) / 1000;
  const replicas = Math.ceil(cores / 0.5);
  return [
    '### 50,000 warm pods at 1,000 claims/s, on paper',
    '',
    `From the ${h.big.size}-pod run: ${fmt(cpuMs)} ms of controller CPU per claim, ${fmt(kib, 2)} KiB of heap per cached pod, ${fmt(writes)} controller write per claim and ${fmt(all, 1)} API writes per claim in the whole cluster (${fmt(rawAll, 1)} for a bare label flip: the rest of the cluster's writes are the ReplicaSet's replacement pod, its binding, its status and the controllers' Events, which any warm pool pays).`,
    '',
    `- **Controller CPU**: 1,000 claims/s × ${fmt(cpuMs)} ms = ${fmt(cores, 1)} cores of claim work across all replicas. At half a core each (room for proxying and bursts) that is ${replicas} replicas. Every replica also handles every pod event of the pools (a claim sets off about five: the label flip, the ReplicaSet letting the pod go, the replacement's creation, binding and Ready; and two more when the session ends), and that work is in the CPU figure above, so claim CPU per replica stays flat while the event work grows with replicas × claim rate, not with pool size.`,
    `- **Controller memory**: 50,000 pods × ${fmt(kib, 2)} KiB = ${fmt((50_000 * kib) / 1024, 0)} MB of cache per replica (every replica watches every pool pod).`,
    `- **API server writes**: ${fmt(writes)} × 1,000 = ${fmt(writes * 1000, 0)} writes/s from warmpool, and ${fmt(all, 1)} × 1,000 ≈ ${fmt(all * 1000, 0)} writes/s in the cluster once the ReplicaSet, the scheduler and the kubelets replace each claimed pod: the replacement (${fmt(all - writes, 1)} writes per claim), not the claim, is the load. For scale: this run's API server, on two cores it shared with etcd, the controller manager, the scheduler, the node agents and the controllers, took the raw burst at ${fmt(h.rawRate, 0)} claims/s, about ${fmt((h.rawRate ?? NaN) * rawAll, 0)} writes/s with their replacements; ${fmt(all * 1000, 0)} writes/s is ${fmt((all * 1000) / ((h.rawRate ?? NaN) * rawAll), 0)} times that, a control plane of its own (several API servers, etcd on dedicated disks) rather than a bigger controller.`,
    `- **Watch fan-out**: about 7 pod events per session (5 at the claim, 2 at the end) go to every replica: 7 × 1,000 × R events/s, ${fmt(7 * 1000 * replicas, 0)}/s at ${replicas} replicas, besides the controller manager's, the scheduler's and the kubelets' watches (this run measured ${fmt(find(h.big, 'POST /sessions', 3, '75/s')?.podWatchEventsPerClaim, 1)} pod events sent per claim to all watchers with 3 replicas). The API server's watch cache serves them from memory; at this rate it needs the cores for serialization, which is why the fan-out, not etcd, sets the replica count's ceiling.`,
    '- **Where the design has to change**: one pool Deployment of 50,000 pods is one ReplicaSet, whose controller replaces up to 1,000 pods/s through one work queue (its default burst of pod creations is 500 per sync); the same pods spread over pools of ~5,000 (ten Deployments) keep each ReplicaSet and each pool\'s claimable set small. Past that, replicas shard by pool: a controller group watches only its pools\' pods (a label selector on `warmpool.dev/pool`), so per-replica memory and event load divide by the number of groups, and a router in front (or the Service per group) sends `POST /sessions` for a pool to its group. Sessions stay in pod labels, so no state moves when a pool changes group.',
    '',
  ];
}

/** Where a claim's time went before this round's changes, and what changed, from the two runs. */
function findings(scale: Json, before: Json): string[] {
  const b = (before.sizes as Json[]).map((s) => ({ size: s.size, heap: s.heapPerPodKiB, p: find(s, 'POST /sessions', 1, '75/s'), raw: find(s, 'raw PATCH', 0, '75/s') }));
  const a = (scale.sizes as Json[]).map((s) => ({ size: s.size, heap: s.heapPerPodKiB, p: find(s, 'POST /sessions', 1, '75/s'), raw: find(s, 'raw PATCH', 0, '75/s') }));
  const row = (x: { size: number; heap: number; p?: Json; raw?: Json }) =>
    `${x.size} pods: p50 ${fmt(x.p?.p50Ms, 0)} ms (raw ${fmt(x.raw?.p50Ms, 0)}), p99 ${fmt(x.p?.p99Ms, 0)} ms (raw ${fmt(x.raw?.p99Ms, 0)}), ${fmt(x.p?.controllerWritesPerClaim)} writes and ${fmt(x.p?.cpuMsPerClaim)} ms CPU per claim, ${fmt(x.heap, 1)} KiB per cached pod`;
  return [
    '### Where the time went',
    '',
    "A profile of one replica taking 50 claims/s showed it idle three quarters of the time while claims queued for seconds: the claim waited on the API server, not on the controller's CPU. Each claim made three writes, not one: the claim PATCH, a `Claimed` Event (POST) and, right after the settings were delivered, a second PATCH confirming the delivery (last-activity). On two shared cores the API server and etcd are the bottleneck, so three writes per claim cost most of the rate and, under load, pushed requests past their 5 s deadline (failed claims, and claim writes that landed after their request failed). Beside that, every claim counted sessions by scanning them all, twice (admission, and the sessions gauge), building a session view with two date parses per session: CPU per claim grew with the number of sessions. And the pod informer kept every whole pod (specs, managed fields, statuses): about 12 KiB of heap per cached pod.",
    '',
    "Changes: a claim is one write (the delivery confirmation rides the session's next activity write, which a session in use makes anyway; pod Events are paced per replica, 60 a minute, the rest counted in `warmpool_events_skipped_total`); sessions are counted, per client too, as the watch changes them; the informer keeps slim pods (what the controller reads, and nothing else).",
    '',
    `Before (1 replica, 75/s): ${b.map(row).join('; ')}.`,
    '',
    `After (1 replica, 75/s): ${a.map(row).join('; ')}.`,
    '',
    "In bursts the controller's own CPU is what is left: about 3 to 5 ms per claim (the HTTP server and express, the PATCH through the Kubernetes client library, the settings delivery to the pod, the watch events of the claimed pod and its replacement), which on a share of two busy cores caps one replica near 130 claims/s whatever the API server does; the raw floor's burst rate swung from under 100 to 290/s between runs on this shared machine, so the burst ratio is met in some runs and missed in others.",
    '',
  ];
}

/**
 * One change to the claim path measured against its revert, back to back on the same machine
 * (bench/results/scale-queue.json: `before` and `after`, each a list of scale results).
 */
function queueComparison(q: Json): string[] {
  const cell = (runs: Json[], size: number, replicas: number, load: string) => {
    const s = runs.find((r) => (r.sizes as Json[])[0]?.size === size)?.sizes[0] as Json | undefined;
    const p = s && find(s, replicas === 0 ? 'raw PATCH' : 'POST /sessions', replicas, load);
    const raw = s && find(s, 'raw PATCH', 0, load);
    if (!p || !raw) return 'n/a';
    return `${p.ok} (${p.failed}), ${fmt(p.perSecond, 0)}/s${replicas === 0 ? '' : `, ${fmt(p.perSecond / raw.perSecond)} ×`}`;
  };
  const rows = (q.after as Json[]).flatMap((r: Json) => {
    const s = (r.sizes as Json[])[0] as Json;
    const loads = [...new Set((s.phases as Json[]).map((p) => String(p.load)))];
    return loads.flatMap((load) => [0, 1, 3].map((n) =>
      `| ${s.size} | ${load} | ${n === 0 ? 'raw PATCH floor' : replicasOf(n)} | ${cell(q.before, s.size, n, load.split(' ')[0] as string)} | ${cell(q.after, s.size, n, load.split(' ')[0] as string)} |`));
  });
  const loads = [...(q.before as Json[]), ...(q.after as Json[])].map((r) => r.machine.loadAverageAtStart[0]);
  return [
    `### Overload: ${q.change}`,
    '',
    `Before, a burst larger than the connections waited inside the HTTP agent with each request's deadline running, so claims timed out waiting for a socket, were read as an API server that does not answer, and put the replica in fail-fast mode. Now a request that finds no connection within 5 s fails as never sent (\`warmpool_kube_requests_total{code="queued"}\`), its claim alone gets 503. The change and its revert, back to back on the same machine (load average ${Math.min(...loads)} to ${Math.max(...loads)}), one run each; claims (failed), rate, and the ratio to the raw floor of the same run:`,
    '',
    '| pool | load | path | before | after |',
    '| ---: | --- | --- | --- | --- |',
    ...rows,
    '',
    'Offered more than the API server takes, a replica now sheds the excess (claims that waited 5 s for a connection) and keeps claiming at about four fifths of the floor\'s rate, where before it fell into fail-fast mode again and again. Where no claim failed either way, the rates moved both ways, within this machine\'s run-to-run noise (one run each): there the controller\'s own CPU per claim is what is left.',
    '',
  ];
}

/**
 * A run narrowed to bursts (bench/results/scale-burst-profile.json) whose one replica was then
 * profiled in one more burst: where a burst claim's CPU goes.
 */
function burstProfileSection(run: Json): string[] {
  return (run.sizes as Json[]).filter((s) => s.burstProfile).flatMap((s) => {
    const raw = find(s, 'raw PATCH', 0, 'burst');
    const rate = (n: number) => {
      const p = find(s, 'POST /sessions', n, 'burst');
      return `${fmt(p?.perSecond, 1)}/s (${fmt((p?.perSecond as number) / (raw?.perSecond as number))} ×, ${fmt(p?.cpuMsPerClaim, 2)} ms CPU per claim)`;
    };
    return [
      '### Where a burst claim\'s CPU goes',
      '',
      `A run of bursts only (\`BENCH_ONLY=scale BENCH_SCALE_SIZES=${s.size} BENCH_SCALE_RATES= BENCH_SCALE_BURST=${run.burst}\`, ${run.started}, load average at start ${run.machine.loadAverageAtStart.join(' / ')}): raw floor ${fmt(raw?.perSecond, 1)}/s, 1 replica ${rate(1)}, 3 replicas ${rate(3)}. After the measured phases the one replica took one more burst with its CPU profiled through its inspector.`,
      '',
      ...profileTable(s.burstProfile as Json),
    ];
  });
}

export function scaleSection(scale: Json, before: Json | undefined, queue?: Json, burstProfile?: Json): string[] {
  const lines = [
    '## 5. Claims at scale (hollow pods)',
    '',
    `Pools of ${(scale.sizes as Json[]).map((s) => s.size).join(' and ')} warm pods on the loopback cluster's hollow Nodes (the node agent's \`--hollow\` mode, as kwok and kubemark do: pods become Running and Ready with a loopback pod IP and no process; the real API server, controller manager and scheduler do all their work; the agent answers \`POST /session\` on each pod IP itself, so the settings delivery is the same as for a real worker). Run ${scale.started}; load average at start ${scale.machine.loadAverageAtStart.join(' / ')} on ${scale.machine.cpus} shared cores, so only ratios within this run mean anything. Steady loads are open loop (requests start on schedule whether or not earlier ones answered) for ${scale.seconds} s, or for 90 % of the pool where that is shorter; a burst is ${scale.burst} requests at once. Each burst runs twice where the machine has two cores: with every process free to use every core (*shared*), and *split*, the control plane (API server, etcd, controller manager, scheduler) on core 0 and the controllers, the node agents and the load generator on core 1, as on a cluster where the controller does not share the API server's machine; split, the raw floor is what the API server takes on its core, and a claim rate below it is the controller's (or its core's) doing. The floor is the claim's own write done by hand in the same run (a conditional merge PATCH flipping a warm pod's labels, over 16 kept-alive connections, the controller's own limit). Writes come from the API server's \`apiserver_request_total\` (all clients) and the controllers' \`warmpool_kube_requests_total\`, read around each phase (the API server's until the pool is whole again, so they count each claimed pod's replacement too); CPU from /proc over the phase and 1.5 s after it. The controllers run with the defaults but for the session limits; with the default activity flush (30 s) a phase's window holds each claim's own writes: the claim PATCH and any Event. A session's delivery confirmation is its first activity write, at the next flush: free for a session in use (it writes its activity then anyway), one more write for a session left unused that long. Claimed pods are deleted and the pool refilled between phases. After each phase every session given out is checked to be on a claimed pod's label (a double claim would have overwritten one: *double*), and claimed pods no client got an id for are counted (*stray*: a claim write that landed after its request failed, which the orphan sweep ends).`,
    '',
    '**Published gates of peers** (not re-measured here): the best-known Kubernetes warm pool of agent sandboxes gates its CI on 75 claims/s against 1,050 warm sandboxes with p50 and p90 <= 300 ms and p99 <= 500 ms, aims at 1,000+ claims/s and 50 ms claims, and makes about 23 API writes per claim; game-server allocators report 300-400 allocations/s.',
    '',
    ...targets(scale),
    ...(before ? findings(scale, before) : []),
    ...(queue ? queueComparison(queue) : []),
    ...plot(scale),
    ...(scale.sizes as Json[]).flatMap(sizeTable),
    ...(burstProfile ? burstProfileSection(burstProfile) : []),
  ];
  if (before) {
    lines.push(
      `### Before the changes of this round (run ${before.started}, load average ${before.machine.loadAverageAtStart.join(' / ')})`,
      '',
      '| pool | path | load | p50 ms | p99 ms | raw PATCH p99 ms (same run) | controller writes per claim | CPU ms per claim |',
      '| ---: | --- | --- | ---: | ---: | ---: | --- | ---: |',
      ...(before.sizes as Json[]).flatMap((s) => (s.phases as Json[]).filter((p) => p.path !== 'raw PATCH').map((p) =>
        `| ${s.size} | ${replicasOf(p.replicas)} | ${p.load} | ${fmt(p.p50Ms, 1)} | ${fmt(p.p99Ms, 1)} | ${fmt(find(s, 'raw PATCH', 0, String(p.load).split(' ')[0] as string)?.p99Ms, 1)} | ${fmt(p.controllerWritesPerClaim)} (${kinds(p.controllerWrites, p.ok)}) | ${fmt(p.cpuMsPerClaim)} |`)),
      '',
      ...(before.sizes as Json[]).map((s) => `Heap per cached pod before, ${s.size} pods: ${fmt(s.heapPerPodKiB, 2)} KiB.`),
      '',
    );
  }
  lines.push(...onPaper(scale));
  return lines;
}
