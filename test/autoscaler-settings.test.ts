import { describe, expect, it } from "vitest";
import { policyConfig, servingModel } from "../programs/autoscaler/serving-model";
import { loadSettings, mustLoad } from "./helpers/load";
import { runProgram, T } from "./helpers/mock-run";

describe("autoscaling settings", () => {
  it("defaults: hybrid scales 0..1 after 10 idle minutes at 80% load; gpu keeps its floor of 1; cpu has nothing to scale", () => {
    const hybrid = mustLoad({ tier: "hybrid" }).settings;
    expect([
      hybrid.gpuMinNodes,
      hybrid.gpuMaxNodes,
      hybrid.gpuIdleMinutes,
      hybrid.gpuTargetLoadPercent,
      hybrid.gpuPredictiveWake,
    ]).toEqual([0, 1, 10, 80, true]);
    const gpu = mustLoad({ tier: "gpu" }).settings;
    expect([gpu.gpuMinNodes, gpu.gpuMaxNodes]).toEqual([1, 1]);
    const cpu = mustLoad({ tier: "cpu" }).settings;
    expect([cpu.gpuMinNodes, cpu.gpuMaxNodes]).toEqual([0, 0]);
  });

  it("refuses every bad range at once, each naming its keys and a fix", () => {
    const r = loadSettings({
      tier: "hybrid",
      gpuMinNodes: 2,
      gpuMaxNodes: 11,
      gpuIdleMinutes: 0,
      gpuTargetLoadPercent: 150,
      budgetUsd: 100000,
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const keys = r.problems.map((p) => p.keys.join(","));
    expect(keys).toEqual(expect.arrayContaining(["gpuIdleMinutes", "gpuTargetLoadPercent"]));
    // The integer ranges fail decoding; the rest is judged on the preset's values, so a second run shows the semantic checks.
    const s = loadSettings({ tier: "hybrid", gpuMinNodes: 2, gpuMaxNodes: 1, budgetUsd: 100000 });
    expect(s.ok).toBe(false);
    if (s.ok) return;
    const messages = s.problems.map((p) => `${p.keys.join(",")}: ${p.message} ${p.fix}`);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^gpuMinNodes,gpuMaxNodes: the floor is above the ceiling\. Set gpuMaxNodes to 2 or more/,
        ),
        expect.stringMatching(/^gpuMinNodes,tier: a floor of always-on GPU nodes is the gpu tier/),
      ]),
    );
  });

  it("a ceiling of 3 nodes keeps 3 model-cache volumes, so scaling down never drops one from the program", async () => {
    const hub = mustLoad({ tier: "hybrid", gpuMaxNodes: 3, budgetUsd: 1000 });
    expect(hub.modelCache.volumes).toBe(3);
    // 3 x 100 GiB + 25 GiB CPU cache at $0.10 per GiB-month.
    expect(hub.cost.lines.find((l) => l.item === "Block storage")?.monthlyUsd).toBe(32.5);
    const run = await runProgram({ tier: "hybrid", gpuMaxNodes: 3, budgetUsd: 1000 });
    const caches = run.byType(T.volume).filter((v) => String(v.inputs.name).includes("model-cache"));
    expect(caches.map((v) => v.inputs.name).sort()).toEqual([
      "ih-hybrid-model-cache-0",
      "ih-hybrid-model-cache-1",
      "ih-hybrid-model-cache-2",
    ]);
    for (const v of caches) expect(v.options.protect).toBe(true);
  });
});

describe("serving model of the hybrid stack (catalogue figures, worked by hand)", () => {
  const hub = mustLoad({ tier: "hybrid" });
  const built = servingModel(hub);
  if (!built.ok) throw new Error(built.reason);
  const m = built.model;

  it("cold start on the GPU base image: the stages add up, and all but the pipeline is billed", () => {
    // Pipeline (GitHub, trimmed) 20 + 35 + 40 = 95; droplet 120; cloud-init 120;
    // image pull 12.64 GB x 8 / 2 Gbit/s = 50.56 s + 28.6 GB / 200 MB/s = 143 s;
    // 34.3 GB of pre-quantized FP8, prefetched: 27 GB in the 60 s burst at 450 MB/s + 7.3 GB / 300 MB/s = 84.33 s;
    // engine 60 (no online FP8 pass); health check 10 = 682.9 s.
    expect(m.coldStart.image).toBe("base");
    expect(m.coldStart.totalSeconds).toBeCloseTo(682.89, 1);
    expect(m.coldStart.billedSeconds).toBeCloseTo(587.89, 1);
    expect(m.coldStart.stages.filter((s) => s.unverified).map((s) => s.name)).toContain("droplet create");
  });

  it("cold start on the baked image: cloud-init keeps only the per-node part and nothing is pulled", () => {
    const baked = servingModel(hub, { image: "baked" });
    if (!baked.ok) throw new Error(baked.reason);
    // 95 + 120 + 20 + 0 + 84.33 + 60 + 10 = 389.3 s.
    expect(baked.model.coldStart.totalSeconds).toBeCloseTo(389.33, 1);
    expect(baked.model.coldStart.stages.find((s) => s.name === "image pull")?.seconds).toBe(0);
    // The workflow before the trim took a modelled 120 s.
    const before = servingModel(hub, { actuator: "github-before" });
    if (!before.ok) throw new Error(before.reason);
    expect(before.model.coldStart.stages[0].seconds).toBe(120);
  });

  it("a measured stage replaces the modelled ones it covers; the pipeline stays unbilled", () => {
    const measured = servingModel(hub, {
      image: "baked",
      measured: [
        { covers: ["pipeline"], seconds: 95, how: "smoke" },
        { covers: ["droplet create", "cloud-init"], seconds: 200, how: "smoke" },
      ],
    });
    if (!measured.ok) throw new Error(measured.reason);
    expect(measured.model.coldStart.stages.map((s) => s.name)).toEqual([
      "pipeline",
      "droplet create + cloud-init",
      "image pull",
      "weights from volume",
      "engine start",
      "first health check",
    ]);
    // 95 + 200 + 0 + 84.33 + 60 + 10.
    expect(measured.model.coldStart.totalSeconds).toBeCloseTo(449.33, 1);
    expect(measured.model.coldStart.pipelineSeconds).toBe(95);
    const wrong = servingModel(hub, { measured: [{ covers: ["cloud-init", "droplet create"], seconds: 1, how: "x" }] });
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.reason).toMatch(/consecutive model stages/);
  });

  it("capacity: KV tokens beside the FP8 weights, in requests of the typical length", () => {
    // 80 GB x 0.70 - 34.3 GB weights - 2.5 GB overhead = 19.2 GB; a token is 2 x 64 layers x 8 KV heads x 128 x 2 bytes = 262,144 B.
    expect(m.replica.kvTokens).toBe(Math.floor(19.2e9 / 262144));
    // 73,242 tokens / (1966 + 131) = 34.9 -> 34 sequences; vLLM's own cap on an 80 GB H100 is 1024.
    expect(m.replica.concurrentSequences).toBe(34);
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
