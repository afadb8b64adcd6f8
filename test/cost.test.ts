import { describe, expect, it } from "vitest";
import { findCpuSize, findGpuSize } from "../stacks/catalogue/droplets";
import { estimateCost } from "../stacks/cost";
import { loadSettings, mustLoad } from "./helpers/load";

const c4 = findCpuSize("c-4")!;
const h100 = findGpuSize("gpu-h100x1-80gb")!;

describe("monthly cost", () => {
  it("hybrid: c-4 + 40 H100 hours + 125 GiB of volumes", () => {
    const cost = estimateCost({
      cpuSize: c4,
      cpuCacheGiB: 25,
      gpu: { size: h100, count: 1, hoursPerMonth: 40, on: false },
      modelCacheGiB: 100,
      modelCacheVolumes: 1,
    });
    // 84 + 3.39 * 40 (135.60) + 125 * 0.10 (12.50) = 232.10
    expect(cost.monthlyUsd).toBe(232.1);
    // GPU off: 84 / 672 h (0.125) + 12.50 / 730 h (0.0171) = 0.14 $/h
    expect(cost.hourlyNowUsd).toBe(0.14);
    // GPU on: + 3.39 = 3.53 $/h
    expect(cost.hourlyGpuOnUsd).toBe(3.53);
  });

  it("always on is 730 hours", () => {
    const cost = estimateCost({
      cpuSize: c4,
      cpuCacheGiB: 25,
      gpu: { size: h100, count: 1, hoursPerMonth: 730, on: true },
      modelCacheGiB: 100,
      modelCacheVolumes: 1,
    });
    // 84 + 3.39 * 730 (2474.70) + 12.50 = 2571.20
    expect(cost.monthlyUsd).toBe(2571.2);
  });

  it("shows the seed design's c-4 and H100 figures beside ours", () => {
    const cost = estimateCost({
      cpuSize: c4,
      cpuCacheGiB: 25,
      gpu: { size: h100, count: 1, hoursPerMonth: 40, on: false },
      modelCacheGiB: 100,
      modelCacheVolumes: 1,
    });
    expect(cost.seedComparison.map((s) => [s.seed, s.ours])).toEqual([
      ["$24", "$84"],
      ["$4.49", "$3.39"],
    ]);
  });

  it("counts one model-cache volume per GPU node", () => {
    const hub = mustLoad({ tier: "gpu", gpuCount: 2, budgetUsd: 6000 });
    // 84 + 2 * 3.39 * 730 (4949.40) + (2 * 100 + 25) * 0.10 (22.50) = 5055.90
    expect(hub.cost.monthlyUsd).toBe(5055.9);
    expect(hub.modelCache.volumes).toBe(2);
  });
});

describe("budget", () => {
  it("refuses a projected month above the budget, with the breakdown", () => {
    const r = loadSettings({ tier: "hybrid", gpuHoursPerMonth: 200, budgetUsd: 500 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const p = r.problems.find((x) => x.keys.includes("budgetUsd"));
    // s-8vcpu-16gb 96 + 3.39 * 200 (678) + 12.50 = 786.50
    expect(p?.message).toContain("$786.50");
    expect(p?.message).toContain("GPU nodes $678.00");
    expect(p?.fix).toContain("787");
  });
  it("accepts exactly the budget", () => {
    // 96 + 3.39 x 40 (135.60) + 12.50 = 244.10
    expect(loadSettings({ tier: "hybrid", budgetUsd: 245 }).ok).toBe(true);
    expect(loadSettings({ tier: "hybrid", budgetUsd: 244 }).ok).toBe(false);
  });
});
