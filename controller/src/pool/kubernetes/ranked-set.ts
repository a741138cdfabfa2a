/**
 * A set of names that answers "which member ranks highest" without a scan: a max-heap whose
 * entries for names that left are dropped lazily, when they reach the top (and all at once
 * when they outnumber the members). A rank is computed once, when a name enters.
 */
interface Entry {
  name: string;
  rank: number;
}

export class RankedSet {
  private heap: Entry[] = [];
  private readonly members = new Set<string>();

  constructor(private readonly rank: (name: string) => number) {}

  get size(): number {
    return this.members.size;
  }

  has(name: string): boolean {
    return this.members.has(name);
  }

  add(name: string): void {
    if (this.members.has(name)) return;
    this.members.add(name);
    this.heap.push({ name, rank: this.rank(name) });
    this.up(this.heap.length - 1);
  }

  delete(name: string): void {
    if (!this.members.delete(name)) return;
    if (this.heap.length > 2 * this.members.size + 64) {
      const kept = new Set<string>();
      // Sorted from the highest rank down, the array is a valid heap as it stands.
      this.heap = this.heap.filter((e) => this.members.has(e.name) && !kept.has(e.name) && kept.add(e.name)).sort((a, b) => b.rank - a.rank);
    }
  }

  /** The member with the highest rank. */
  best(): string | undefined {
    while (this.heap.length > 0 && !this.members.has((this.heap[0] as Entry).name)) this.pop();
    return this.heap[0]?.name;
  }

  [Symbol.iterator](): Iterator<string> {
    return this.members[Symbol.iterator]();
  }

  private pop(): void {
    const last = this.heap.pop() as Entry;
    if (this.heap.length === 0) return;
    this.heap[0] = last;
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < this.heap.length && (this.heap[l] as Entry).rank > (this.heap[top] as Entry).rank) top = l;
      if (r < this.heap.length && (this.heap[r] as Entry).rank > (this.heap[top] as Entry).rank) top = r;
      if (top === i) return;
      [this.heap[i], this.heap[top]] = [this.heap[top] as Entry, this.heap[i] as Entry];
      i = top;
    }
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((this.heap[parent] as Entry).rank >= (this.heap[i] as Entry).rank) return;
      [this.heap[i], this.heap[parent]] = [this.heap[parent] as Entry, this.heap[i] as Entry];
      i = parent;
    }
  }
}
