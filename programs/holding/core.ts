import { KEY_WAIT_HEADER } from "../gatekeeper/protocol";

/**
 * Holding a request while the GPU wakes, at the client's choice: the part that decides, with no
 * I/O. A request may wait for the GPU model (`X-Hub-Wait: <seconds>`, or its key's default); it is
 * held, bounded per key and in total, and released when a replica is ready or at its deadline.
 * The HTTP side (./proxy.ts) and the demand bookkeeping (./demand.ts) sit on top of this; a
 * Kubernetes holder can reuse all three with its own view of the GPU.
 */

/** The client's choice, in whole seconds; 0 asks for no wait. */
export const WAIT_HEADER = "X-Hub-Wait";
export { KEY_WAIT_HEADER };

export interface HoldLimits {
  /** Longest hold for any request (the stack's gpuHoldMaxSeconds; 0 turns holding off). */
  readonly maxSeconds: number;
  /** Most requests held at once, all keys together. */
  readonly maxRequests: number;
  /** Most requests one key may have held at once. */
  readonly maxPerKey: number;
  /** Request bodies held at once, bytes: held requests live in the holder's memory. */
  readonly maxBodyBytes: number;
}

/** A key's own policy, as the gatekeeper states it in X-Hub-Key-Wait: `default=120, max=600`. */
export interface KeyWait {
  readonly defaultSeconds?: number;
  readonly maxSeconds?: number;
}

/** The gatekeeper's header; anything unreadable counts as no key policy (the gatekeeper writes it, so this is a bug, not input). */
export function parseKeyWait(text: string | undefined): KeyWait {
  const out: { defaultSeconds?: number; maxSeconds?: number } = {};
  for (const part of (text ?? "").split(",")) {
    const m = /^\s*(default|max)=(\d{1,6})\s*$/.exec(part);
    if (!m) continue;
    if (m[1] === "default") out.defaultSeconds = Number(m[2]);
    else out.maxSeconds = Number(m[2]);
  }
  return out;
}

export type WaitChoice =
  | {
      readonly ok: true;
      readonly seconds: number;
      readonly source: "header" | "key" | "none";
      readonly cappedFrom?: number;
    }
  | { readonly ok: false; readonly message: string };

/**
 * How long this request may wait: the client's header, else its key's default, else none; capped
 * by the key's maximum and the stack's. A header that is not a whole number of seconds is refused
 * (400) rather than guessed at.
 */
export function chooseWait(
  header: string | undefined,
  keyWait: KeyWait,
  limits: Pick<HoldLimits, "maxSeconds">,
): WaitChoice {
  const cap = Math.min(limits.maxSeconds, keyWait.maxSeconds ?? Infinity);
  let asked: number;
  let source: "header" | "key" | "none";
  if (header !== undefined && header.trim() !== "") {
    const text = header.trim();
    if (!/^\d{1,6}$/.test(text))
      return {
        ok: false,
        message: `${WAIT_HEADER} ${JSON.stringify(text.slice(0, 40))} is not a whole number of seconds; send e.g. ${WAIT_HEADER}: 300 to wait up to 5 minutes for the GPU model, or 0 not to wait (this hub holds at most ${limits.maxSeconds} s).`,
      };
    asked = Number(text);
    source = "header";
  } else if (keyWait.defaultSeconds !== undefined) {
    asked = keyWait.defaultSeconds;
    source = "key";
  } else {
    return { ok: true, seconds: 0, source: "none" };
  }
  if (asked > cap) return { ok: true, seconds: cap, source, cappedFrom: asked };
  return { ok: true, seconds: asked, source };
}

interface OpenAiError {
  readonly error: { readonly message: string; readonly type: string; readonly code: string };
}

export type Admission =
  | { readonly kind: "hold"; readonly ticket: number; readonly deadlineMs: number }
  | { readonly kind: "refused"; readonly status: 429; readonly retryAfterSeconds: number; readonly body: OpenAiError };

/**
 * The held requests, by key. Admission is all or nothing: a request over any cap is refused with
 * an OpenAI-shaped 429 (type `requests`, code `rate_limit_exceeded`, as OpenAI's own limits are),
 * whose Retry-After is the wake time left, so a client retrying then finds the GPU up.
 */
export class HoldQueue {
  private readonly tickets = new Map<number, { readonly keyId: string; readonly bytes: number }>();
  private readonly perKey = new Map<string, number>();
  private bytes = 0;
  private next = 1;

  constructor(readonly limits: HoldLimits) {}

  admit(keyId: string, waitSeconds: number, bodyBytes: number, nowMs: number, readyInSeconds: number): Admission {
    const retryAfterSeconds = Math.max(1, Math.min(3600, Math.ceil(readyInSeconds)));
    const refuse = (message: string): Admission => ({
      kind: "refused",
      status: 429,
      retryAfterSeconds,
      body: { error: { message, type: "requests", code: "rate_limit_exceeded" } },
    });
    const mine = this.perKey.get(keyId) ?? 0;
    if (mine >= this.limits.maxPerKey)
      return refuse(
        `This API key already has ${mine} requests waiting for the GPU to wake (at most ${this.limits.maxPerKey} per key). Retry after the Retry-After interval, or send ${WAIT_HEADER}: 0 to be answered now.`,
      );
    if (this.tickets.size >= this.limits.maxRequests)
      return refuse(
        `${this.tickets.size} requests are already waiting for the GPU to wake (at most ${this.limits.maxRequests}). Retry after the Retry-After interval, or send ${WAIT_HEADER}: 0 to be answered now.`,
      );
    if (this.bytes + bodyBytes > this.limits.maxBodyBytes)
      return refuse(
        `The requests waiting for the GPU to wake already hold ${Math.round(this.bytes / 1024)} KiB of request bodies (at most ${Math.round(this.limits.maxBodyBytes / 1024)} KiB). Retry after the Retry-After interval, or send ${WAIT_HEADER}: 0 to be answered now.`,
      );
    const ticket = this.next++;
    this.tickets.set(ticket, { keyId, bytes: bodyBytes });
    this.perKey.set(keyId, mine + 1);
    this.bytes += bodyBytes;
    return { kind: "hold", ticket, deadlineMs: nowMs + waitSeconds * 1000 };
  }

  /** The hold ended (forwarded, deadline, client gone). Idempotent. */
  release(ticket: number): void {
    const held = this.tickets.get(ticket);
    if (!held) return;
    this.tickets.delete(ticket);
    this.bytes -= held.bytes;
    const left = (this.perKey.get(held.keyId) ?? 1) - 1;
    if (left > 0) this.perKey.set(held.keyId, left);
    else this.perKey.delete(held.keyId);
  }

  get size(): number {
    return this.tickets.size;
  }

  heldBy(keyId: string): number {
    return this.perKey.get(keyId) ?? 0;
  }
}
