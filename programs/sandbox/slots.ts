import { ApiRefusal } from "./refusal";

/**
 * Executions at once: `total` on the node, `perKey` for one key, and at most `queueLimit` waiting
 * in arrival order. Past those the API refuses at once (a queue that only grows helps nobody).
 */
interface Waiter {
  readonly keyId: string;
  readonly grant: () => void;
  readonly refuse: (error: Error) => void;
}

export class Slots {
  private used = 0;
  private readonly perKeyUsed = new Map<string, number>();
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(
    private readonly total: number,
    private readonly perKey: number,
    private readonly queueLimit: number,
  ) {}

  get inUse(): number {
    return this.used;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves with the release function once the key may run; rejects when it may not wait. */
  acquire(keyId: string): Promise<() => void> {
    if (this.closed)
      return Promise.reject(new ApiRefusal(503, "sandbox_unavailable", "The sandbox is shutting down.", 5));
    const mine = this.perKeyUsed.get(keyId) ?? 0;
    const queuedForKey = this.waiting.filter((w) => w.keyId === keyId).length;
    if (mine + queuedForKey >= this.perKey) {
      return Promise.reject(
        new ApiRefusal(
          429,
          "too_many_executions",
          `this key already runs ${mine} execution${mine === 1 ? "" : "s"} at once, the most one key may (${this.perKey}); wait for one to finish`,
          1,
        ),
      );
    }
    if (this.used < this.total && this.waiting.length === 0) return Promise.resolve(this.take(keyId));
    if (this.waiting.length >= this.queueLimit)
      return Promise.reject(
        new ApiRefusal(
          503,
          "sandbox_busy",
          "Every sandbox is busy and the queue is full; try again in a few seconds.",
          2,
        ),
      );
    return new Promise((resolve, reject) =>
      this.waiting.push({ keyId, grant: () => resolve(this.take(keyId)), refuse: reject }),
    );
  }

  private take(keyId: string): () => void {
    this.used += 1;
    this.perKeyUsed.set(keyId, (this.perKeyUsed.get(keyId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= 1;
      const left = (this.perKeyUsed.get(keyId) ?? 1) - 1;
      if (left > 0) this.perKeyUsed.set(keyId, left);
      else this.perKeyUsed.delete(keyId);
      const next = this.waiting.shift();
      next?.grant();
    };
  }

  close(): void {
    this.closed = true;
    for (const waiter of this.waiting.splice(0))
      waiter.refuse(new ApiRefusal(503, "sandbox_unavailable", "The sandbox is shutting down.", 5));
  }
}
