/** The claims a simulated pool saw, counted per second, as the sizing function reads them. */
import type { Arrivals } from '../../controller/src/pool/sizing.js';

/** Claims counted per second (cumulatively, so any window is two reads). */
class SecondCounts {
  private readonly cumulative: Float64Array;
  private current = 0;

  constructor(seconds: number) {
    this.cumulative = new Float64Array(seconds + 2);
  }

  add(slot: number, n: number): void {
    const s = Math.floor(slot / 1000);
    while (this.current < s) {
      this.current++;
      this.cumulative[this.current + 1] = this.cumulative[this.current] as number;
    }
    this.cumulative[s + 1] = (this.cumulative[s + 1] as number) + n;
  }

  /** Claims before the second of `ms`. */
  before(ms: number): number {
    const s = Math.floor(ms / 1000);
    if (s <= 0) return 0;
    return (s > this.current ? this.cumulative[this.current + 1] : this.cumulative[s]) as number;
  }
}

/** The claims the pool saw, read back as the sizing function's Arrivals. */
export class Claims implements Arrivals {
  private readonly all: SecondCounts;
  private readonly late: SecondCounts;

  constructor(seconds: number) {
    this.all = new SecondCounts(seconds);
    this.late = new SecondCounts(seconds);
  }

  add(slot: number, n: number, waited: boolean): void {
    this.all.add(slot, n);
    if (waited) this.late.add(slot, n);
  }

  count(fromMs: number, toMs: number): number {
    return this.all.before(toMs) - this.all.before(fromMs);
  }

  waited(fromMs: number, toMs: number): number {
    return this.late.before(toMs) - this.late.before(fromMs);
  }
}
