/**
 * At most `size` requests to the API server at once, first come first served. The request
 * deadline then counts from when a request is sent, not from when it joined the queue for a
 * connection: in a burst of claims larger than the connections, the last ones would otherwise
 * spend their deadline waiting for a socket, fail as if the API server had not answered, and
 * put the replica into fail-fast mode for a server that answers fine. A request that waits
 * too long for a slot fails as never sent (QUEUED).
 */
interface Waiter {
  resolve(got: boolean): void;
  timer: NodeJS.Timeout;
  done: boolean;
}

export class Slots {
  private free: number;
  private readonly waiting: Waiter[] = [];
  private head = 0;

  constructor(size: number) {
    this.free = size;
  }

  /** Resolves true with a slot held (release it), or false when none came free within `waitMs`. */
  acquire(waitMs: number): Promise<boolean> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        resolve,
        done: false,
        timer: setTimeout(() => {
          waiter.done = true;
          resolve(false);
        }, waitMs),
      };
      this.waiting.push(waiter);
    });
  }

  release(): void {
    while (this.head < this.waiting.length) {
      const next = this.waiting[this.head++] as Waiter;
      if (next.done) continue;
      this.compact();
      next.done = true;
      clearTimeout(next.timer);
      next.resolve(true);
      return;
    }
    this.compact();
    this.free++;
  }

  /** Drops the served head of the queue once it is most of it. */
  private compact(): void {
    if (this.head > 64 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }
}
