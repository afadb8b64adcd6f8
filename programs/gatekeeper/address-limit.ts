import { isIPv4 } from "node:net";
import * as ipaddr from "ipaddr.js";

/**
 * The per-address limit, before any key is looked at: a flood of made-up keys from one address is
 * refused here, cheaply, without touching a key's budget or the audit spool.
 *
 * Which address: the rightmost X-Forwarded-For entry. Traefik's forwardAuth (v3.7.13,
 * pkg/middlewares/auth/forward.go `writeHeader`) with `trustForwardHeader: false` deletes every
 * X-Forwarded-* header the client sent and then sets X-Forwarded-For to the IP of the TCP peer
 * (req.RemoteAddr); with `true` it appends that IP to the client's list. Either way the rightmost
 * entry is the connection's address, which a client cannot choose. Without the header (a caller on
 * the Docker network, not Traefik) the socket's own peer address counts.
 *
 * Which bucket: one per IPv4 address, one per IPv6 /64 (the smallest block a subscriber is usually
 * given: counting each IPv6 address apart would hand one client 2^64 budgets). IPv4-mapped IPv6
 * (::ffff:a.b.c.d, how Node reports IPv4 on a dual-stack socket) counts as the IPv4 address.
 *
 * Bounded memory: a table of at most `maxAddresses` buckets, kept in least-recently-seen order (a
 * Map re-inserted on every request). A new address beyond the bound evicts the address seen least
 * recently, which starts again with a full burst if it comes back. Evicting an idle address loses
 * nothing (its bucket had refilled); evicting a busy one needs maxAddresses newer addresses in
 * between, each of which got no more than its own burst.
 */

export interface AddressLimit {
  readonly ratePerMinute: number;
  readonly burst: number;
  /** Most addresses tracked at once. */
  readonly maxAddresses: number;
}

export type AddressDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
  /**
   * Set from an address's first refusal until it has gone a whole quiet period without one, so a
   * spell of overload is logged as two state changes, however many requests it lets through
   * between refusals as tokens trickle back.
   */
  limited: boolean;
  lastRefusedMs: number;
  refused: number;
}

export class AddressLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly capacity: number;
  /** A spell ends after this long without a refusal: a minute, or the time to refill the whole burst if longer. */
  private readonly quietMs: number;
  evictions = 0;

  constructor(private readonly limit: AddressLimit) {
    this.perMs = limit.ratePerMinute / 60_000;
    this.capacity = Math.max(1, limit.burst);
    this.quietMs = Math.max(60_000, this.capacity / this.perMs);
  }

  get size(): number {
    return this.buckets.size;
  }

  /**
   * Takes a token for this address key (addressKey()). `startedLimiting` is true on the first
   * refusal of a spell, `endedLimiting` on the first request after a spell's quiet period (with
   * how many it refused): one log line each.
   */
  take(
    key: string,
    nowMs: number,
  ): AddressDecision & { readonly startedLimiting?: boolean; readonly endedLimiting?: { readonly refused: number } } {
    let bucket = this.buckets.get(key);
    if (bucket) {
      // Move to the most recently seen end.
      this.buckets.delete(key);
    } else {
      bucket = { tokens: this.capacity, updatedMs: nowMs, limited: false, lastRefusedMs: nowMs, refused: 0 };
      if (this.buckets.size >= this.limit.maxAddresses) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
        this.evictions++;
      }
    }
    this.buckets.set(key, bucket);
    bucket.tokens = Math.min(this.capacity, bucket.tokens + Math.max(0, nowMs - bucket.updatedMs) * this.perMs);
    bucket.updatedMs = nowMs;
    let endedLimiting: { refused: number } | undefined;
    if (bucket.limited && nowMs - bucket.lastRefusedMs >= this.quietMs) {
      endedLimiting = { refused: bucket.refused };
      bucket.limited = false;
      bucket.refused = 0;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return endedLimiting ? { allowed: true, endedLimiting } : { allowed: true };
    }
    const startedLimiting = !bucket.limited;
    bucket.limited = true;
    bucket.lastRefusedMs = nowMs;
    bucket.refused += 1;
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000)),
      startedLimiting,
    };
  }

  has(key: string): boolean {
    return this.buckets.has(key);
  }
}

/**
 * The X-Forwarded-For entry Traefik's forwardAuth wrote (see above), else undefined: the rightmost,
 * or, behind `hops` loopback proxies that each appended their peer, that many entries further left.
 */
export function forwardedClientAddress(
  forwardedFor: readonly string[] | string | undefined,
  hops = 0,
): string | undefined {
  const values = forwardedFor === undefined ? [] : typeof forwardedFor === "string" ? [forwardedFor] : forwardedFor;
  const entries = values.flatMap((v) => v.split(","));
  const entry = entries.at(-1 - hops)?.trim();
  // isIPv4 first: the common case, without ipaddr.js's parse.
  return entry && (isIPv4(entry) || ipaddr.isValid(entry)) ? normalise(entry) : undefined;
}

/** The client's address for the audit record and the limit: forwarded by Traefik, else the socket's peer. */
export function clientAddress(
  forwardedFor: readonly string[] | string | undefined,
  socketAddress: string | undefined,
  hops = 0,
): string | null {
  const forwarded = forwardedClientAddress(forwardedFor, hops);
  if (forwarded) return forwarded;
  return socketAddress && ipaddr.isValid(socketAddress) ? normalise(socketAddress) : null;
}

/** The bucket an address counts against: the IPv4 address, or the IPv6 /64 as `<prefix>::/64`. */
export function addressKey(address: string): string {
  // The common case without a parse: a dotted quad is already its own key.
  if (isIPv4(address)) return address;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === "ipv4") return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4);
  return `${new ipaddr.IPv6([...parts, 0, 0, 0, 0]).toString()}/64`;
}

function normalise(address: string): string {
  if (isIPv4(address)) return address;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress())
    return (parsed as ipaddr.IPv6).toIPv4Address().toString();
  return parsed.toString();
}
