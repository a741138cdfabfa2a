/** Small line charts drawn as SVG by hand: a few series over the last minutes, no library. */

const SVG = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 100;
/** Room on the left for the scale's labels. */
const LEFT = 28;

export interface Series {
  name: string;
  /** CSS class that gives the line its colour (`s-warm`, ...). */
  cls: string;
  /** One value per sample; null where there is none (no claims in that interval). */
  values: readonly (number | null)[];
}

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function text(x: number, y: number, content: string, anchor = 'end'): SVGTextElement {
  const t = el('text', { x, y, 'text-anchor': anchor });
  t.textContent = content;
  return t;
}

function ago(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

/** A scale's top: the smallest of 1, 2, 5 times a power of ten at or above `max`. */
export function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max) as number;
}

/**
 * Redraws `host` with the series over `times` (epoch ms, oldest first): a line per series,
 * broken where a value is missing, the scale's top on the left, the time span below.
 */
export function drawChart(host: Element, times: readonly number[], series: readonly Series[], unit = ''): void {
  const values = series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const top = niceMax(Math.max(0, ...values));
  const span = times.length > 1 ? (times[times.length - 1] as number) - (times[0] as number) : 0;
  const x = (i: number) => LEFT + (span > 0 ? (((times[i] as number) - (times[0] as number)) / span) * (W - LEFT) : W - LEFT);
  const y = (v: number) => H - (v / top) * H;
  const svg = el('svg', { class: 'chart', viewBox: `0 -8 ${W} ${H + 22}`, role: 'img' });
  svg.append(
    el('line', { class: 'axis', x1: LEFT, y1: H, x2: W, y2: H }),
    el('line', { class: 'axis', x1: LEFT, y1: 0, x2: W, y2: 0 }),
    text(LEFT - 3, 4, `${+top.toPrecision(3)}${unit}`),
    text(LEFT - 3, H, '0'),
    text(LEFT, H + 13, span > 0 ? `−${ago(span)}` : '', 'start'),
    text(W, H + 13, 'now'),
  );
  for (const s of series) {
    let run: string[] = [];
    // A value alone between gaps (one interval with claims) is a dot: a line needs two.
    const flush = () => {
      if (run.length > 1) svg.append(el('polyline', { class: s.cls, points: run.join(' ') }));
      if (run.length === 1) {
        const [cx, cy] = (run[0] as string).split(',');
        svg.append(el('circle', { class: s.cls, cx: cx as string, cy: cy as string, r: 2.5 }));
      }
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === null) flush();
      else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const s of series) {
    const item = document.createElement('li');
    item.className = s.cls;
    item.textContent = s.name;
    legend.append(item);
  }
  svg.setAttribute('aria-label', series.map((s) => s.name).join(', '));
  host.replaceChildren(svg, legend);
}
