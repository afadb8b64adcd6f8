import { describe, expect, it } from "vitest";
import { decisionController } from "../simulator/policies";
import { Controller, replay, ReplayModel, willWait } from "../simulator/replay";
import { MODEL, POLICY, trace } from "./helpers/simulate";

/** Holding in the simulator, on traces small enough to work out by hand (the model: test/helpers/simulate.ts). */
const two = trace([
  [0, 1000, 0],
  [100, 1000, 0],
]);
const held = (seconds: number, maxRequests = 64, share = 1): ReplayModel => ({
  ...MODEL,
  hold: { share, seconds, maxRequests, seed: 1 },
});

describe("holding while the GPU wakes, in the replay", () => {
  it("both requests wait for the wake and are served by the GPU; the node costs what it cost without holding", () => {
    const run = replay("reactive", two, held(600), decisionController(POLICY));
    // Woken at the 0 s tick, ready at 300: the 0 s request starts at 300 (held 300 s), the 100 s one
    // joins at 300 (held 200 s) and queues behind the first until 301 (a 201 s wait).
    expect(run.servedByGpu).toBe(2);
    expect(run.servedByGpuAfterHold).toBe(2);
    expect(run.servedByFallback).toBe(0);
    expect([run.holdP50s, run.holdP95s]).toEqual([200, 300]);
    expect([run.waitP50s, run.waitP95s]).toEqual([201, 300]);
    // Billed from creation at 60 to the teardown: idle 600 s after the 105 s tick -> out of the routes at 765, gone at 825.
    expect(run.costUsd).toBeCloseTo(0.765, 9);
    // Neither arrived outside a cold start served directly: the share outside cold starts counts direct service only.
    expect(run.gpuShareOutsideColdStarts).toBe(0);
  });

  it("at its deadline a held request gets the fallback; one whose deadline the wake meets is served", () => {
    const run = replay("reactive", two, held(200), decisionController(POLICY));
    // The 0 s request's deadline (200) passes before the node is ready (300): the 210 s tick answers it from the fallback.
    // The 100 s request's deadline is 300, the node is ready at 300: served, held 200 s.
    expect(run.heldThenFallback).toBe(1);
    expect(run.servedByFallback).toBe(1);
    expect(run.servedByGpuAfterHold).toBe(1);
    expect([run.holdP50s, run.holdP95s]).toEqual([200, 200]);
  });

  it("above the hold cap a request is answered at once, and counted as refused by the cap", () => {
    const run = replay("reactive", two, held(600, 1), decisionController(POLICY));
    expect(run.holdCapRefused).toBe(1);
    expect(run.servedByFallback).toBe(1);
    expect(run.servedByGpuAfterHold).toBe(1);
  });

  it("a wake the budget refuses ends the holds at once: nothing waits for a GPU that will not come", () => {
    const run = replay("reactive", two, held(600), decisionController({ ...POLICY, gpuBudgetUsd: 0.01 }));
    expect(run.servedByGpu).toBe(0);
    expect(run.heldThenFallback).toBe(2);
    expect(run.servedByFallback).toBe(2);
    // Let go at the tick that saw each one: held 0 s and 5 s (the 100 s request, at the 105 s tick).
    expect([run.holdP50s, run.holdP95s]).toEqual([0, 5]);
    expect(run.costUsd).toBe(0);
  });

  it("a held request is demand once, at its arrival, as in the controller", () => {
    let seen = 0;
    const inner = decisionController(POLICY);
    const counting: Controller = (view) => {
      seen += view.coderRequests;
      return inner(view);
    };
    const run = replay("reactive", two, held(600), counting);
    expect(run.servedByGpuAfterHold).toBe(2);
    expect(seen).toBe(2);
  });

  it("who waits is drawn per request, seeded: the same requests under every policy, about the share asked", () => {
    const picks = Array.from({ length: 10_000 }, (_, k) => willWait(k, 0.3, 7));
    const share = picks.filter(Boolean).length / picks.length;
    expect(share).toBeGreaterThan(0.28);
    expect(share).toBeLessThan(0.32);
    expect(Array.from({ length: 10_000 }, (_, k) => willWait(k, 0.3, 7))).toEqual(picks);
    expect(willWait(3, 0, 7)).toBe(false);
    expect(willWait(3, 1, 7)).toBe(true);
  });
});
