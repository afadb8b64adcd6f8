import { describe, expect, it } from "vitest";
import { policyConfig, servingModel } from "../programs/autoscaler/serving-model";
import { loadSettings, mustLoad } from "./helpers/load";
import { runProgram, T } from "./helpers/mock-run";

describe("autoscaling settings", () => {
  it("defaults: hybrid scales 0..1 after 10 idle minutes at 80% load; gpu keeps its floor of 1; cpu has nothing to scale", () => {
    const hybrid = mustLoad({ tier: "hybrid" }).settings;
    expect([hybrid.gpuMinNodes, hybrid.gpuMaxNodes, hybrid.gpuIdleMinutes, hybrid.gpuTargetLoadPercent, hybrid.gpuPredictiveWake]).toEqual([0, 1, 10, 80, true]);
    const gpu = mustLoad({ tier: "gpu" }).settings;
    expect([gpu.gpuMinNodes, gpu.gpuMaxNodes]).toEqual([1, 1]);
    const cpu = mustLoad({ tier: "cpu" }).settings;
    expect([cpu.gpuMinNodes, cpu.gpuMaxNodes]).toEqual([0, 0]);
  });

  it("refuses every bad range at once, each naming its keys and a fix", () => {
    const r = loadSettings({ tier: "hybrid", gpuMinNodes: 2, gpuMaxNodes: 11, gpuIdleMinutes: 0, gpuTargetLoadPercent: 150, budgetUsd: 100000 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const keys = r.problems.map((p) => p.keys.join(","));
    expect(keys).toEqual(expect.arrayContaining(["gpuIdleMinutes", "gpuTargetLoadPercent"]));
    // The integer ranges fail decoding; the rest is judged on the preset's values, so a second run shows the semantic checks.
    const s = loadSettings({ tier: "hybrid", gpuMinNodes: 2, gpuMaxNodes: 1, budgetUsd: 100000 });
    expect(s.ok).toBe(false);
    if (s.ok) return;
    const messages = s.problems.map((p) => `${p.keys.join(",")}: ${p.message} ${p.fix}`);
    expect(messages).toEqual(expect.arrayContaining([expect.stringMatching(/^gpuMinNodes,gpuMaxNodes: the floor is above the ceiling\. Set gpuMaxNodes to 2 or more/), expect.stringMatching(/^gpuMinNodes,tier: a floor of always-on GPU nodes is the gpu tier/)]));
  });

  it("a ceiling of 3 nodes keeps 3 model-cache volumes, so scaling down never drops one from the program", async () => {
    const hub = mustLoad({ tier: "hybrid", gpuMaxNodes: 3, budgetUsd: 1000 });
    expect(hub.modelCache.volumes).toBe(3);
    // 3 x 100 GiB + 25 GiB CPU cache at $0.10 per GiB-month.
    expect(hub.cost.lines.find((l) => l.item === "Block storage")?.monthlyUsd).toBe(32.5);
    const run = await runProgram({ tier: "hybrid", gpuMaxNodes: 3, budgetUsd: 1000 });
    const caches = run.byType(T.volume).filter((v) => String(v.inputs.name).includes("model-cache"));
    expect(caches.map((v) => v.inputs.name).sort()).toEqual(["ih-hybrid-model-cache-0", "ih-hybrid-model-cache-1", "ih-hybrid-model-cache-2"]);
    for (const v of caches) expect(v.options.protect).toBe(true);
  });
});

describe("serving model of the hybrid stack (catalogue figures, worked by hand)", () => {
  const hub = mustLoad({ tier: "hybrid" });
  const built = servingModel(hub);
  if (!built.ok) throw new Error(built.reason);
  const m = built.model;

  it("cold start: the stages add up, and all but the pipeline is billed", () => {
    // 120 pipeline + 120 droplet + 120 cloud-init + (12.64 GB x 8 / 2 Gbit/s = 50.56 s + 28.6 GB / 200 MB/s = 143 s)
    // + 65.5 GB of BF16 weights / 300 MB/s = 218.33 s + 90 engine + 10 health check = 871.9 s.
    expect(m.coldStart.totalSeconds).toBeCloseTo(871.89, 1);
    expect(m.coldStart.billedSeconds).toBeCloseTo(751.89, 1);
    expect(m.coldStart.stages.filter((s) => s.unverified).map((s) => s.name)).toContain("droplet create");
  });

  it("capacity: KV tokens beside the FP8 weights, in requests of the typical length", () => {
    // 80 GB x 0.70 - 32.75 GB weights - 2.5 GB overhead = 20.75 GB; a token is 2 x 64 layers x 8 KV heads x 128 x 2 bytes = 262,144 B.
    expect(m.replica.kvTokens).toBe(Math.floor(20.75e9 / 262144));
    // 79,154 tokens / (1966 + 131) = 37.7 -> 37 sequences; vLLM's own cap on an 80 GB H100 is 1024.
    expect(m.replica.concurrentSequences).toBe(37);
    expect(m.replica.maxNumSeqs).toBe(1024);
  });

  it("the GPU budget is what the month leaves after the always-on costs", () => {
    // $400 - s-8vcpu-16gb $96 - block storage (100 + 25 GiB) $12.50 = $291.50.
    expect(policyConfig(hub, m).gpuBudgetUsd).toBeCloseTo(291.5, 6);
  });

  it("refuses a tier without a GPU coder", () => {
    const r = servingModel(mustLoad({ tier: "cpu" }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/cpu tier runs no GPU coder/);
  });
});
