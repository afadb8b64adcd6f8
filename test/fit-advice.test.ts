import { describe, expect, it } from "vitest";
import { GPU_SIZES, HOURS_PER_MONTH, type GpuSize } from "../stacks/catalogue/droplets";
import { findModel } from "../stacks/catalogue/models";
import { PRESETS } from "../stacks/presets";
import type { Problem } from "../stacks/problems";
import { loadSettings } from "./helpers/load";

// Expectations come from the catalogue's GPU memory and prices, not from the advice code: a size
// cannot hold a model whose weights exceed its memory share, and the advice's own fix must plan.

const usd = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const fitProblem = (settings: Record<string, unknown>): Problem => {
  const result = loadSettings(settings);
  expect(result.ok, "the stack should be refused").toBe(false);
  if (result.ok) throw new Error("unreachable");
  const p = result.problems.find((x) => x.keys.includes("llmModel") && x.keys.includes("gpuSize"));
  expect(p, JSON.stringify(result.problems, null, 1)).toBeDefined();
  return p!;
};
const named = (fix: string) => GPU_SIZES.filter((s) => new RegExp(`\\b${s.slug}\\b`).test(fix));

describe("fit advice points to the tier and size that hold the model", () => {
  const deepseek = findModel("deepseek-v3")!;
  const multigpuShare = PRESETS.multigpu.llmGpuMemoryPercent / 100;
  // The cheapest 8-GPU size whose memory share is at least the weights (DeepSeek-V3 at 690 GB: 8 x 80 GB x 0.9 cannot).
  const cheapestMulti = GPU_SIZES.filter(
    (s) => s.gpuCount > 1 && s.gpuCount * s.gpuMemoryGBPerGpu * multigpuShare > deepseek.weightsGB,
  ).sort((a, b) => a.pricePerHour - b.pricePerHour)[0];
  const biggestSingle = Math.max(...GPU_SIZES.filter((s) => s.gpuCount === 1).map((s) => s.gpuMemoryGBPerGpu));

  it("the catalogue has no single GPU that could hold DeepSeek-V3's weights (the premise)", () => {
    expect(biggestSingle).toBeLessThan(deepseek.weightsGB);
    expect(cheapestMulti).toBeDefined();
  });

  for (const tier of ["gpu", "hybrid"] as const) {
    it(`${tier} tier: DeepSeek-V3 is told to use tier multigpu with the size and its monthly cost`, () => {
      const p = fitProblem({ tier, llmModel: "deepseek-v3" });
      expect(p.fix).toContain("use tier multigpu");
      expect(p.fix).not.toContain("smaller model");
      expect(named(p.fix).map((s) => s.slug)).toEqual([cheapestMulti.slug]);
      expect(p.fix).toContain(`${usd(cheapestMulti.pricePerHour * HOURS_PER_MONTH)}/month`);
      expect(p.fix).toContain(cheapestMulti.regions.join("/"));
    });
  }

  it("following the multigpu advice plans: tier multigpu with the advised size and its region", () => {
    const p = fitProblem({ tier: "gpu", llmModel: "deepseek-v3" });
    const [size] = named(p.fix);
    const followed = loadSettings({ tier: "multigpu", gpuSize: size.slug, region: size.regions[0] });
    expect(followed.ok, followed.ok ? "" : JSON.stringify(followed.problems, null, 1)).toBe(true);
  });

  it("a model that fits a bigger single-GPU size names that size (not multigpu), with its price", () => {
    // Qwen2.5-Coder-32B in BF16 on the hybrid tier's H100 at 70 %.
    const qwen = findModel("qwen2.5-coder-32b")!;
    const share = PRESETS.hybrid.llmGpuMemoryPercent / 100;
    const current = GPU_SIZES.find((s) => s.slug === PRESETS.hybrid.gpuSize)!;
    expect(current.gpuMemoryGBPerGpu * share).toBeLessThan(qwen.weightsGB);
    const p = fitProblem({ tier: "hybrid", llmQuantization: "none" });
    expect(p.fix).not.toContain("multigpu");
    const advised = named(p.fix).filter((s) => s.slug !== current.slug);
    expect(advised.length).toBeGreaterThan(0);
    for (const s of advised) {
      expect(s.gpuCount, s.slug).toBe(1);
      // Each advised size's share of memory holds the weights at least.
      expect(s.gpuMemoryGBPerGpu * share, s.slug).toBeGreaterThan(qwen.weightsGB);
      expect(p.fix).toContain(`${s.slug} (${usd(s.pricePerHour)}/h`);
    }
    // Following it plans.
    const pick: GpuSize = advised[0];
    const followed = loadSettings({
      tier: "hybrid",
      llmQuantization: "none",
      gpuSize: pick.slug,
      region: pick.regions[0],
    });
    expect(followed.ok, followed.ok ? "" : JSON.stringify(followed.problems, null, 1)).toBe(true);
  });
});
