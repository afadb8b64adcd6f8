import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { PRESETS } from "../stacks/presets";
import { OPTIONAL_SETTINGS, PROJECT, SETTING_NAMES, TIERS } from "../stacks/settings";
import { loadText, mustLoad, ROOT } from "./helpers/load";

describe("tier presets", () => {
  for (const tier of TIERS) {
    it(`${tier} passes every check on its own`, () => {
      const hub = mustLoad({ tier });
      expect(hub.tier).toBe(tier);
      expect(hub.cost.monthlyUsd).toBeLessThanOrEqual(hub.budgetUsd);
    });
  }

  it("covers every setting except the optional ones", () => {
    for (const tier of TIERS)
      for (const name of SETTING_NAMES.filter((n) => !(OPTIONAL_SETTINGS as readonly string[]).includes(n)))
        expect(PRESETS[tier][name], `${tier}.${name}`).toBeDefined();
  });

  it("cpu runs no GPU and serves the coder with llama.cpp on the CPU node", () => {
    const hub = mustLoad({ tier: "cpu" });
    expect(hub.gpu).toBeUndefined();
    expect(hub.coder.backend).toBe("llama.cpp");
    expect(hub.nodes.map((n) => n.kind)).toEqual(["cpu"]);
    expect(hub.ocr.engine).toBe("docling");
  });

  it("gpu keeps one GPU on, with the coder and DeepSeek-OCR sharing it", () => {
    const hub = mustLoad({ tier: "gpu" });
    expect(hub.gpu).toMatchObject({ count: 1, on: true, hoursPerMonth: 730 });
    const gpuNode = hub.nodes.find((n) => n.kind === "gpu")!;
    expect(
      gpuNode.workloads
        .filter((w) => w.gpuShare !== undefined)
        .map((w) => w.role)
        .sort(),
    ).toEqual(["coder", "ocr"]);
    const shares = gpuNode.workloads.reduce((s, w) => s + (w.gpuShare ?? 0), 0);
    expect(shares).toBeLessThanOrEqual(0.95);
  });

  it("hybrid plans the GPU node but does not run it until gpuEnabled, with a CPU fallback coder", () => {
    const off = mustLoad({ tier: "hybrid" });
    expect(off.gpu).toMatchObject({ on: false, hoursPerMonth: 40 });
    expect(off.nodes.find((n) => n.kind === "gpu")!.active).toBe(false);
    expect(off.fallbackCoder?.backend).toBe("llama.cpp");
    const on = mustLoad({ tier: "hybrid", gpuEnabled: true });
    expect(on.nodes.find((n) => n.kind === "gpu")!.active).toBe(true);
    // Turning the GPU on changes the burn rate, not the monthly estimate.
    expect(on.cost.monthlyUsd).toBe(off.cost.monthlyUsd);
    expect(on.cost.hourlyNowUsd).toBeGreaterThan(off.cost.hourlyNowUsd + 3);
  });

  it("multigpu serves DeepSeek-V3 on 8xH200 with tensor parallelism 8", () => {
    const hub = mustLoad({ tier: "multigpu" });
    expect(hub.gpu?.size.slug).toBe("gpu-h200x8-1128gb");
    expect(hub.coder.backend === "vllm" && hub.coder.tensorParallel).toBe(8);
    expect(hub.coder.model.id).toBe("deepseek-v3");
  });

  it("keeps cpu, gpu and hybrid in one region, so a stack can move between them", () => {
    expect(new Set([PRESETS.cpu.region, PRESETS.gpu.region, PRESETS.hybrid.region]).size).toBe(1);
  });
});

describe("stack files", () => {
  for (const tier of TIERS) {
    it(`Pulumi.${tier}.yaml names its tier and only declared keys, and plans`, () => {
      const text = readFileSync(path.join(ROOT, `Pulumi.${tier}.yaml`), "utf8");
      const config = (parse(text) as { config: Record<string, unknown> }).config;
      expect(config[`${PROJECT}:tier`]).toBe(tier);
      for (const key of Object.keys(config)) expect(SETTING_NAMES).toContain(key.replace(`${PROJECT}:`, ""));
      // A stack file holds only what it overrides: nothing equal to its preset except the tier.
      for (const [key, value] of Object.entries(config)) {
        const name = key.replace(`${PROJECT}:`, "") as keyof typeof PRESETS.cpu;
        if (name !== "tier" && name !== "gpuEnabled") expect(value, key).not.toEqual(PRESETS[tier][name]);
      }
      expect(loadText(text).ok).toBe(true);
    });
  }
});
