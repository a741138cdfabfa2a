/**
 * The status page's script: polls /status.json and redraws. Every value goes into the page as
 * text (textContent, SVG attributes), never as markup.
 */
import type { PoolStatus, StatusReport } from '../src/status/report.js';
import { drawChart, type Series } from './chart.js';

type Report = StatusReport & { auth: boolean };

const POLL_MS = 2000;

const OUTCOMES: readonly [string, string][] = [
  ['claimed', 'claimed'], ['no_warm_worker', 'timed out'], ['rate_limited', 'rate limited'], ['conflict', 'conflicts'],
  ['client_session_limit', 'over client limit'], ['claim_queue_full', 'queue full'], ['at_capacity', 'at capacity'],
];

const WATCH: Record<string, [string, boolean]> = {
  none: ['none (local backend)', true],
  listing: ['first list pending', false],
  in_sync: ['in sync', true],
  reconnecting: ['reconnecting', false],
  api_silent: ['API server not answering', false],
};

const POOL_CARD = `
<h2></h2>
<dl class="figures">
  <div><dt>warm</dt><dd data-figure="warm"></dd></div>
  <div><dt>starting</dt><dd data-figure="warming"></dd></div>
  <div><dt>claimed</dt><dd data-figure="assigned"></dd></div>
  <div><dt>size</dt><dd data-figure="size"></dd></div>
  <div data-sizing hidden><dt>target</dt><dd data-figure="target"></dd></div>
  <div class="wide" data-problem hidden><dt>problem</dt><dd data-figure="problem"></dd></div>
</dl>
<figure><figcaption>pool over time</figcaption><div data-chart="pool"></div></figure>
<div data-sizing hidden><h3>adaptive sizing</h3><dl class="outcomes" data-list="sizing"></dl></div>
<h3>claim outcomes (this replica, since start)</h3><dl class="outcomes" data-list="claims"></dl>
<h3>session ends by reason (this replica, since start)</h3><dl class="outcomes" data-list="ends"></dl>`;

function setFigure(root: ParentNode, name: string, value: string, cls = ''): void {
  const node = root.querySelector(`[data-figure="${name}"]`);
  if (!node) return;
  node.textContent = value;
  node.className = cls;
}

function duration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const clock = (ms: number) => new Date(ms).toLocaleTimeString();

/** Replaces a <dl>'s rows: one per [key, label, value], the key in data-key for readers and tests. */
function fillList(dl: Element, rows: readonly [string, string, string][]): void {
  dl.replaceChildren(...rows.map(([key, label, value]) => {
    const row = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = label;
    dd.textContent = value;
    dd.dataset.key = key;
    row.append(dt, dd);
    return row;
  }));
}

function fillTable(table: Element, rows: readonly string[][], hashColumn: number): void {
  (table.querySelector('tbody') as HTMLElement).replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    cells.forEach((cell, i) => {
      const td = document.createElement('td');
      td.textContent = cell;
      if (i === hashColumn) td.className = 'hash';
      tr.append(td);
    });
    return tr;
  }));
}

function outcomeRows(claims: Record<string, number>): [string, string, string][] {
  const known = new Set(OUTCOMES.map(([k]) => k));
  const rows = OUTCOMES.map(([k, label]): [string, string, string] => [k, label, String(claims[k] ?? 0)]);
  for (const [k, n] of Object.entries(claims)) if (!known.has(k) && n > 0) rows.push([k, k.replaceAll('_', ' '), String(n)]);
  return rows;
}

function poolCard(name: string): HTMLElement {
  const card = document.createElement('section');
  card.className = 'card pool';
  card.dataset.pool = name;
  card.innerHTML = POOL_CARD;
  (card.querySelector('h2') as HTMLElement).textContent = `Pool ${name}`;
  return card;
}

function renderPool(card: HTMLElement, name: string, pool: PoolStatus, report: Report): void {
  for (const k of ['warm', 'warming', 'assigned', 'size'] as const) setFigure(card, k, String(pool[k]));
  const sizing = pool.sizing;
  for (const node of card.querySelectorAll<HTMLElement>('[data-sizing]')) node.hidden = !sizing;
  if (sizing) {
    setFigure(card, 'target', typeof sizing.target === 'number' ? String(sizing.target) : '–');
    const inputs = Object.entries(sizing).filter(([k, v]) => k !== 'target' && ['number', 'string'].includes(typeof v));
    fillList(card.querySelector('[data-list="sizing"]') as Element, inputs.map(([k, v]) => [k, k, String(v)]));
  }
  (card.querySelector('[data-problem]') as HTMLElement).hidden = !pool.problem;
  setFigure(card, 'problem', pool.problem ?? '', 'bad');
  fillList(card.querySelector('[data-list="claims"]') as Element, outcomeRows(pool.claims));
  fillList(card.querySelector('[data-list="ends"]') as Element, Object.entries(pool.ends).map(([k, n]) => [k, k, String(n)]));
  const points = report.history.map((s) => s.pools[name]);
  const series: Series[] = (['warm', 'warming', 'assigned', 'size'] as const).map((k) => ({
    name: k === 'warming' ? 'starting' : k === 'assigned' ? 'claimed' : k,
    cls: `s-${k}`,
    values: points.map((p) => p?.[k] ?? null),
  }));
  if (points.some((p) => p?.target !== undefined)) series.push({ name: 'target', cls: 's-target', values: points.map((p) => p?.target ?? null) });
  drawChart(card.querySelector('[data-chart="pool"]') as Element, report.history.map((s) => s.at), series);
}

function renderPools(report: Report): void {
  const host = document.getElementById('pools') as HTMLElement;
  const cards = new Map([...host.querySelectorAll<HTMLElement>('[data-pool]')].map((c) => [c.dataset.pool as string, c]));
  for (const [name, pool] of Object.entries(report.pools)) {
    const card = cards.get(name) ?? host.appendChild(poolCard(name));
    cards.delete(name);
    renderPool(card, name, pool, report);
  }
  for (const gone of cards.values()) gone.remove();
}

function renderClaims(report: Report): void {
  setFigure(document, 'queue', String(report.queue));
  setFigure(document, 'waited', String(report.waited));
  const times = report.history.map((s) => s.at);
  const ms = (v: number | null) => (v === null ? null : v * 1000);
  drawChart(document.querySelector('[data-chart="queue"]') as Element, times, [{ name: 'waiting', cls: 's-queue', values: report.history.map((s) => s.queue) }]);
  for (const [chart, key] of [['wait', 'claimWait'], ['latency', 'claimLatency']] as const) {
    drawChart(document.querySelector(`[data-chart="${chart}"]`) as Element, times, [
      { name: 'mean', cls: 's-mean', values: report.history.map((s) => ms(s[key].meanS)) },
      { name: 'p95 (bucket bound)', cls: 's-p95', values: report.history.map((s) => ms(s[key].p95S)) },
    ], ' ms');
  }
}

function renderHealth(report: Report): void {
  document.getElementById('replica')!.textContent = report.replica;
  document.getElementById('backend')!.textContent = report.backend;
  (document.getElementById('logout') as HTMLElement).hidden = !report.auth;
  document.getElementById('scope')!.textContent = report.backend === 'kubernetes'
    ? `Pool figures and live sessions come from the Kubernetes watch and are cluster-wide; claims, the queue and session ends are those of this replica (${report.replica}) only.`
    : 'Local backend: every figure is this process\'s own.';
  const { health } = report;
  setFigure(document, 'ready', health.ready ? 'yes' : 'no', health.ready ? 'good' : 'bad');
  const [watch, ok] = WATCH[health.watch] ?? [health.watch, false];
  setFigure(document, 'watch', watch, ok ? 'good' : 'bad');
  setFigure(document, 'problem', health.problem ?? 'none', health.problem ? 'bad' : '');
  setFigure(document, 'last-problem', health.lastProblem ? `${clock(health.lastProblem.at)}: ${health.lastProblem.line}` : 'none');
}

function render(report: Report): void {
  renderHealth(report);
  renderClaims(report);
  renderPools(report);
  setFigure(document, 'sessions', String(report.sessions.count));
  fillTable(document.querySelector('#sessions table') as Element,
    report.sessions.shown.map((s) => [s.hash, s.pool, duration(s.ageS), duration(s.expiresInS)]), 0);
  fillTable(document.querySelector('#ends table') as Element,
    report.recentEnds.map((e) => [clock(e.at), e.hash, e.pool, e.reason, e.livedS === undefined ? '–' : duration(e.livedS)]), 1);
  document.getElementById('updated')!.textContent = `updated ${clock(report.at)} · charts sample every ${report.sampleEveryMs / 1000} s`;
}

async function refresh(): Promise<void> {
  try {
    const res = await fetch('/status.json', { cache: 'no-store', headers: { accept: 'application/json' } });
    // Logged out (or the replica restarted with a new key): the page itself shows the login form.
    if (res.status === 401) return location.reload();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json() as Report);
  } catch (err) {
    document.getElementById('updated')!.textContent = `cannot reach the controller (${(err as Error).message}); retrying`;
  }
  setTimeout(() => void refresh(), POLL_MS);
}

void refresh();
