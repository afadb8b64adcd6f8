import { describe, expect, it } from "vitest";
import { kedaController, KedaRule } from "../simulator/policies";
import type { TickView } from "../simulator/replay";
import type { PolicyConfig } from "../programs/autoscaler/types";

/** KEDA's rule as the simulator replays it for the k8s tier: what it wants, tick by tick. */

const RULE: KedaRule = {
  demandWindowSeconds: 600,
  perReplica: 29.6,
  cooldownSeconds: 720,
  downWindowSeconds: 720,
  upWindowSeconds: 60,
};
const POLICY: PolicyConfig = {
  minNodes: 0,
  maxNodes: 4,
  idleSeconds: 600,
  targetLoad: 0.8,
  predictive: false,
  windows: [],
  replicaCapacity: 37,
  coldStartSeconds: 632,
  restartCostSeconds: 700,
  nodeHourlyUsd: 3.39,
  gpuBudgetUsd: 500,
};
const T0 = Date.parse("2026-12-10T10:00:00Z");

function run(ticks: number, at: (i: number) => Partial<TickView>, policy = POLICY): number[] {
  const keda = kedaController(RULE, policy);
  return Array.from({ length: ticks }, (_, i) =>
    keda({
      t: i * 15,
      nowMs: T0 + i * 15_000,
      ready: 0,
      starting: 0,
      draining: 0,
      changeInFlight: false,
      coderRequests: 0,
      replicas: [],
      monthToDateUsd: 0,
      ...at(i),
    }),
  );
}

describe("KEDA in the simulator", () => {
  it("wakes on the first request and lets the replica go only after the demand window and the cooldown, longer than a cold start", () => {
    const wanted = run(200, (i) => ({ coderRequests: i === 0 ? 1 : 0 }));
    expect(wanted[0]).toBe(1);
    const off = wanted.indexOf(0);
    // 600 s of demand window, then 720 s of cooldown: off at 1320 s, never within the 632 s cold start.
    expect(off * 15).toBeGreaterThanOrEqual(600 + 720);
    expect(off * 15).toBeLessThanOrEqual(600 + 720 + 15);
    expect(wanted.slice(off).every((w) => w === 0)).toBe(true);
  });

  it("adds a replica once the load stays above one replica's share for the scale-up window, one at a time, up to gpuMaxNodes", () => {
    const wanted = run(40, () => ({ coderRequests: 5, ready: 1, replicas: [{ running: 37, waiting: 100 }] }));
    expect(wanted[0]).toBe(1);
    expect(wanted.slice(0, 3).every((w) => w === 1)).toBe(true);
    for (let i = 1; i < wanted.length; i++) expect(wanted[i] - wanted[i - 1]).toBeLessThanOrEqual(1);
    expect(Math.max(...wanted)).toBe(4);
  });

  it("keeps to the budget ceiling: nothing wakes on a spent month", () => {
    const wanted = run(10, () => ({ coderRequests: 3, monthToDateUsd: 499 }));
    expect(wanted.every((w) => w === 0)).toBe(true);
  });
});
