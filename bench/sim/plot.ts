/**
 * The simulator's pictures: vega-lite specifications compiled to vega and rendered to SVG in Node
 * (vega's headless view needs no browser and no canvas for SVG).
 */
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

export interface CurvePoint {
  trace: string;
  policy: 'fixed' | 'adaptive';
  /** The fixed size, or the adaptive target miss rate. */
  label: string;
  waitedShare: number;
  idlePerSession: number;
}

export interface TimelinePoint {
  trace: string;
  second: number;
  series: string;
  value: number;
}

/** Waited shares of 0 are drawn at this floor, so a log axis can show them. */
export const SHARE_FLOOR = 1e-5;

async function render(spec: vegaLite.TopLevelSpec): Promise<string> {
  const config = { legend: { labelLimit: 400, titleLimit: 400 } };
  const view = new vega.View(vega.parse(vegaLite.compile({ ...spec, config } as vegaLite.TopLevelSpec).spec), { renderer: 'none' });
  return view.toSVG();
}

/** Idle warm pod-seconds per session against the share of sessions that waited: fixed sizes as a line, adaptive as points. */
export function tradeoff(points: CurvePoint[]): Promise<string> {
  const values = points.map((p) => ({ ...p, shown: Math.max(SHARE_FLOOR, p.waitedShare) }));
  const x = { field: 'idlePerSession', type: 'quantitative', title: 'idle warm pod-seconds per session' } as const;
  const y = { field: 'shown', type: 'quantitative', title: 'sessions that waited (share; 1e-5 = none)', scale: { type: 'log', domain: [SHARE_FLOOR, 1] as number[] } } as const;
  return render({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    data: { values },
    facet: { field: 'trace', type: 'nominal', title: null },
    columns: 3,
    resolve: { scale: { x: 'independent' } },
    spec: {
      width: 260,
      height: 200,
      layer: [
        { transform: [{ filter: "datum.policy == 'fixed'" }], mark: { type: 'line', point: true, color: '#888' }, encoding: { x, y, order: { field: 'idlePerSession', type: 'quantitative' } } },
        { transform: [{ filter: "datum.policy == 'adaptive'" }], mark: { type: 'point', filled: true, size: 80 }, encoding: { x, y, color: { field: 'label', type: 'nominal', title: 'adaptive, target miss rate' } } },
      ],
    },
  });
}

/** Pool size over time against the demand it answers (claims per second times the refill time). */
export function timeline(points: TimelinePoint[]): Promise<string> {
  return render({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    data: { values: points },
    facet: { row: { field: 'trace', type: 'nominal', title: null } },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    spec: {
      width: 760,
      height: 180,
      mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1.5 },
      encoding: {
        x: { field: 'second', type: 'quantitative', title: 'seconds' },
        y: { field: 'value', type: 'quantitative', title: 'pods' },
        color: { field: 'series', type: 'nominal', title: null },
      },
    },
  });
}
