/**
 * One token bucket per key id: `burst` tokens at most, refilled at `ratePerMinute / 60` per second.
 * The same shape as Traefik's rateLimit middleware (average + burst), so the numbers mean the same.
 */

export interface RateLimit {
  readonly ratePerMinute: number;
  readonly burst: number;
}

export type RateDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  /** Takes one token from the key's bucket if there is one. */
  take(keyId: string, limit: RateLimit, nowMs: number): RateDecision {
    const perMs = limit.ratePerMinute / 60_000;
    const capacity = Math.max(1, limit.burst);
    let bucket = this.buckets.get(keyId);
    if (!bucket) {
      bucket = { tokens: capacity, updatedMs: nowMs };
      this.buckets.set(keyId, bucket);
    }
    // Clamped to the capacity: a reload may have lowered the burst.
    bucket.tokens = Math.min(capacity, bucket.tokens + Math.max(0, nowMs - bucket.updatedMs) * perMs);
    bucket.updatedMs = nowMs;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000)) };
  }

  /** Forgets the buckets of keys no longer in the keys file, so memory follows the file. */
  retainOnly(keyIds: Iterable<string>): void {
    const keep = new Set(keyIds);
    for (const id of this.buckets.keys()) if (!keep.has(id)) this.buckets.delete(id);
  }
}
