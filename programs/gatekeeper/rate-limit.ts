import type { Scope } from "./protocol";

/**
 * One token bucket per (key id, scope): `burst` tokens at most, refilled at `ratePerMinute / 60`
 * per second. The same shape as Traefik's rateLimit middleware (average + burst), so the numbers
 * mean the same. A key gets its whole budget on every service: heavy chat traffic never starves
 * the same key's transcriptions. Only a known, unrevoked key with the route's scope ever takes a
 * token (server.ts `decide`), so keyless, unknown or refused requests cannot spend a key's budget.
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
  /** key id → scope → bucket; at most keys × scopes buckets. */
  private readonly buckets = new Map<string, Map<Scope, Bucket>>();

  /** Takes one token from the key's bucket for this scope if there is one. */
  take(keyId: string, scope: Scope, limit: RateLimit, nowMs: number): RateDecision {
    const perMs = limit.ratePerMinute / 60_000;
    const capacity = Math.max(1, limit.burst);
    let byScope = this.buckets.get(keyId);
    if (!byScope) {
      byScope = new Map();
      this.buckets.set(keyId, byScope);
    }
    let bucket = byScope.get(scope);
    if (!bucket) {
      bucket = { tokens: capacity, updatedMs: nowMs };
      byScope.set(scope, bucket);
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

  /** Gives back a token taken for a request that was then not let through (the audit spool refused it). */
  refund(keyId: string, scope: Scope, limit: RateLimit): void {
    const bucket = this.buckets.get(keyId)?.get(scope);
    if (bucket) bucket.tokens = Math.min(Math.max(1, limit.burst), bucket.tokens + 1);
  }

  /** Forgets the buckets of keys no longer in the keys file, so memory follows the file. */
  retainOnly(keyIds: Iterable<string>): void {
    const keep = new Set(keyIds);
    for (const id of this.buckets.keys()) if (!keep.has(id)) this.buckets.delete(id);
  }
}
