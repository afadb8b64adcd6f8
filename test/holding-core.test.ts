import { describe, expect, it } from "vitest";
import { chooseWait, HoldQueue, parseKeyWait } from "../programs/holding/core";
import { demandThisTick, emptyDemandState } from "../programs/holding/demand";
import { keyWaitHeader } from "../programs/gatekeeper/server";
import type { ApiKey } from "../programs/gatekeeper/keys";
import { autoscalerConfig } from "../services/autoscaler";
import { routeTable } from "../services/routes";
import { mustLoad } from "./helpers/load";

const LIMITS = { maxSeconds: 600, maxRequests: 3, maxPerKey: 2, maxBodyBytes: 1000 };

describe("how long a request may wait for the GPU", () => {
  it("the client's X-Hub-Wait first, else the key's default, else no wait; capped by the key's and the stack's maximum", () => {
    expect(chooseWait("300", {}, LIMITS)).toEqual({ ok: true, seconds: 300, source: "header" });
    expect(chooseWait(undefined, { defaultSeconds: 120 }, LIMITS)).toEqual({ ok: true, seconds: 120, source: "key" });
    // The header wins over the key's default, including a 0 that asks not to wait.
    expect(chooseWait("0", { defaultSeconds: 120 }, LIMITS)).toEqual({ ok: true, seconds: 0, source: "header" });
    expect(chooseWait(undefined, {}, LIMITS)).toEqual({ ok: true, seconds: 0, source: "none" });
    expect(chooseWait("900", {}, LIMITS)).toEqual({ ok: true, seconds: 600, source: "header", cappedFrom: 900 });
    expect(chooseWait("500", { maxSeconds: 200 }, LIMITS)).toEqual({
      ok: true,
      seconds: 200,
      source: "header",
      cappedFrom: 500,
    });
    // Holding off on the stack: nobody waits.
    expect(chooseWait("300", {}, { maxSeconds: 0 })).toMatchObject({ ok: true, seconds: 0 });
  });

  it("refuses a header that is not whole seconds, naming the header, the value and what works", () => {
    for (const bad of ["5m", "-1", "1.5", "abc", "9999999"]) {
      const w = chooseWait(bad, {}, LIMITS);
      expect(w.ok).toBe(false);
      if (!w.ok)
        expect(w.message).toMatch(
          new RegExp(
            `X-Hub-Wait "${bad.replace(".", "\\.")}" is not a whole number of seconds.*X-Hub-Wait: 300.*600 s`,
          ),
        );
    }
  });

  it("reads the key's policy as the gatekeeper writes it", () => {
    const key = (over: Partial<ApiKey>): ApiKey => ({
      id: "k_test",
      name: "t",
      scopes: new Set(["llm"]),
      revoked: false,
      digest: Buffer.alloc(32),
      sandboxLimits: "{}",
      ...over,
    });
    expect(keyWaitHeader(key({}))).toEqual({});
    const both = keyWaitHeader(key({ waitSeconds: 120, maxWaitSeconds: 300 }));
    expect(both).toEqual({ "X-Hub-Key-Wait": "default=120, max=300" });
    expect(parseKeyWait(both["X-Hub-Key-Wait"])).toEqual({ defaultSeconds: 120, maxSeconds: 300 });
    expect(parseKeyWait(keyWaitHeader(key({ maxWaitSeconds: 0 }))["X-Hub-Key-Wait"])).toEqual({ maxSeconds: 0 });
    expect(parseKeyWait(undefined)).toEqual({});
  });
});

describe("the held requests' caps", () => {
  it("refuses above the per-key cap, the total cap and the held bytes with an OpenAI-shaped 429 whose Retry-After is the wake left", () => {
    const q = new HoldQueue(LIMITS);
    const a1 = q.admit("k_a", 60, 100, 0, 250.2);
    const a2 = q.admit("k_a", 60, 100, 0, 250.2);
    expect(a1).toEqual({ kind: "hold", ticket: 1, deadlineMs: 60_000 });
    expect(a2.kind).toBe("hold");
    const a3 = q.admit("k_a", 60, 100, 0, 250.2);
    expect(a3).toMatchObject({
      kind: "refused",
      status: 429,
      retryAfterSeconds: 251,
      body: { error: { type: "requests", code: "rate_limit_exceeded" } },
    });
    if (a3.kind === "refused")
      expect(a3.body.error.message).toMatch(/already has 2 requests waiting.*at most 2 per key/);
    // Another key still fits, up to the total of 3.
    expect(q.admit("k_b", 60, 100, 0, 10).kind).toBe("hold");
    const total = q.admit("k_c", 60, 100, 0, 10);
    expect(total.kind === "refused" && total.body.error.message).toMatch(/3 requests are already waiting.*at most 3/);
    // Releasing frees the key's and the total's slot, once however often it is called.
    if (a1.kind === "hold") {
      q.release(a1.ticket);
      q.release(a1.ticket);
    }
    expect(q.size).toBe(2);
    expect(q.heldBy("k_a")).toBe(1);
    const big = q.admit("k_c", 60, 900, 0, 10);
    expect(big.kind === "refused" && big.body.error.message).toMatch(/request bodies/);
    expect(q.admit("k_c", 60, 700, 0, 10).kind).toBe("hold");
  });
});

describe("a held request counts as demand exactly once", () => {
  it("with a counter that counts at completion (Traefik's): the holder's arrival counts, the counter's later count of the same request is owed back", () => {
    let state = emptyDemandState();
    // Tick 1: a request arrives at the holder and is held; the counter has not seen it.
    let t = demandThisTick("completion", 0, { arrived: 1, finished: 0 }, state);
    expect(t.demand).toBe(1);
    state = t.state;
    // Ticks while held: nothing new.
    t = demandThisTick("completion", 0, { arrived: 0, finished: 0 }, state);
    expect(t.demand).toBe(0);
    // Tick 40: the GPU answered it (the holder finished it) and Traefik counted it, plus 2 other requests served by the GPU.
    t = demandThisTick("completion", 3, { arrived: 0, finished: 1 }, t.state);
    expect(t.demand).toBe(2);
    expect(t.state.owed).toBe(0);
  });

  it("a counter reading that races the holder's finish repays one tick late; an older debt is dropped rather than eat real demand", () => {
    let t = demandThisTick("completion", 0, { arrived: 0, finished: 1 }, emptyDemandState());
    expect(t).toEqual({ demand: 0, state: { owed: 1 } });
    t = demandThisTick("completion", 1, { arrived: 0, finished: 0 }, t.state);
    expect(t).toEqual({ demand: 0, state: { owed: 0 } });
    // Never repaid (the counter missed it): dropped after a tick.
    t = demandThisTick("completion", 0, { arrived: 0, finished: 1 }, emptyDemandState());
    t = demandThisTick("completion", 0, { arrived: 0, finished: 0 }, t.state);
    expect(t.state.owed).toBe(0);
    t = demandThisTick("completion", 1, { arrived: 0, finished: 0 }, t.state);
    expect(t.demand).toBe(1);
  });

  it("with a counter that counts at arrival (the gatekeeper's allowed decisions): the two are the same requests", () => {
    expect(demandThisTick("arrival", 3, { arrived: 1, finished: 1 }, emptyDemandState()).demand).toBe(3);
    expect(demandThisTick("arrival", 0, { arrived: 1, finished: 0 }, emptyDemandState()).demand).toBe(1);
  });

  it("the counter's first reading after a restart is a baseline: the holder's arrivals count, nothing is owed", () => {
    expect(demandThisTick("completion", 0, { arrived: 2, finished: 2 }, emptyDemandState(), true)).toEqual({
      demand: 2,
      state: { owed: 0 },
    });
  });
});

describe("what the deploy tells the holder", () => {
  it("the stack's caps and the CPU stand-in's address in the controller's file; no section with holding off", () => {
    const hub = mustLoad({ tier: "hybrid" });
    const file = autoscalerConfig(hub, routeTable(hub), {
      stack: "hybrid",
      organization: "acme",
      privateIps: {},
      billingCrossCheck: false,
    });
    expect(file.holding).toEqual({
      maxSeconds: 600,
      maxRequests: 64,
      maxPerKey: 8,
      fallbackUrl: "http://coder-fallback:8080",
    });
    const off = mustLoad({ tier: "hybrid", gpuHoldMaxSeconds: 0 });
    expect(
      autoscalerConfig(off, routeTable(off), {
        stack: "hybrid",
        organization: "acme",
        privateIps: {},
        billingCrossCheck: false,
      }).holding,
    ).toBeUndefined();
    const noStandIn = mustLoad({ tier: "hybrid", fallbackModel: "none" });
    expect(
      autoscalerConfig(noStandIn, routeTable(noStandIn), {
        stack: "hybrid",
        organization: "acme",
        privateIps: {},
        billingCrossCheck: false,
      }).holding?.fallbackUrl,
    ).toBeNull();
  });
});
