import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CPU_SIZES, GPU_SIZES } from "../stacks/catalogue/droplets";
import { MODELS } from "../stacks/catalogue/models";
import { SHARED } from "./helpers/load";

/** The GPU table of ../shared/FACTS.md, parsed: the catalogue must agree with it. */
function factsGpuTable(): Map<string, { mem: number; ram: number; vcpu: number; price: number }> {
  if (!existsSync(path.join(SHARED, "FACTS.md"))) return new Map();
  const text = readFileSync(path.join(SHARED, "FACTS.md"), "utf8");
  const rows = new Map<string, { mem: number; ram: number; vcpu: number; price: number }>();
  for (const line of text.split("\n")) {
    const m = /^\| (gpu-[a-z0-9-]+) \| (\d+) GB \| (\d+) GiB \| (\d+) \| [^|]+ \| [^|]+ \| ([\d.]+)/.exec(line);
    if (m) rows.set(m[1], { mem: Number(m[2]), ram: Number(m[3]), vcpu: Number(m[4]), price: Number(m[5]) });
  }
  return rows;
}

describe("catalogue", () => {
  const facts = factsGpuTable();

  // FACTS.md lives beside the repo in the workplace, not in a plain clone.
  it.skipIf(!existsSync(path.join(SHARED, "FACTS.md")))(
    "has every GPU size of FACTS.md with the same memory, RAM, vCPU and hourly price",
    () => {
      expect(facts.size).toBeGreaterThanOrEqual(9);
      for (const [slug, f] of facts) {
        const size = GPU_SIZES.find((s) => s.slug === slug);
        expect(size, slug).toBeDefined();
        expect(size!.gpuMemoryGBPerGpu * size!.gpuCount, slug).toBe(f.mem);
        expect(size!.ramGiB, slug).toBe(f.ram);
        expect(size!.vcpu, slug).toBe(f.vcpu);
        expect(size!.pricePerHour, slug).toBe(f.price);
      }
    },
  );

  it("uses the GPU image FACTS.md names for each kind of size", () => {
    for (const s of GPU_SIZES) {
      const expected = s.vendor === "amd" ? "gpu-amd-base" : s.gpuCount > 1 ? "gpu-h100x8-base" : "gpu-h100x1-base";
      expect(s.image, s.slug).toBe(expected);
    }
    for (const s of CPU_SIZES) expect(s.image).toBe("ubuntu-24-04-x64");
  });

  it("offers no GPU size in nyc3", () => {
    expect(GPU_SIZES.filter((s) => s.regions.includes("nyc3"))).toEqual([]);
  });

  it("gives every figure a source and an ISO date", () => {
    const sources = [
      ...GPU_SIZES.flatMap((s) => Object.values(s.sources)),
      ...CPU_SIZES.flatMap((s) => Object.values(s.sources)),
      ...MODELS.flatMap((m) => [
        ...Object.values(m.sources),
        ...(m.awq ? [m.awq.source] : []),
        ...(m.gguf ? [m.gguf.source] : []),
      ]),
    ];
    for (const s of sources) {
      expect(s.source.length).toBeGreaterThan(5);
      expect(s.read).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    }
  });

  it("marks the FACTS.md ⚠ prices as unverified", () => {
    for (const slug of ["gpu-h200x1-141gb", "gpu-h200x8-1128gb", "gpu-6000adax1-48gb"]) {
      expect(GPU_SIZES.find((s) => s.slug === slug)!.sources.price.verified, slug).toBe(false);
    }
    expect(CPU_SIZES.find((s) => s.slug === "c-4")!.sources.price.verified).toBe(false);
  });

  it("agrees with FACTS.md on checkpoint sizes", () => {
    expect(MODELS.find((m) => m.id === "qwen2.5-coder-32b")!.weightsGB).toBe(65.5);
    expect(MODELS.find((m) => m.id === "deepseek-v3")!.weightsGB).toBe(690);
    expect(MODELS.find((m) => m.id === "deepseek-v3")!.nativeDtype).toBe("fp8");
    const awq = MODELS.find((m) => m.id === "qwen2.5-coder-32b")!.awq!;
    expect(awq.weightsGB).toBeGreaterThanOrEqual(18);
    expect(awq.weightsGB).toBeLessThanOrEqual(20);
  });

  it("has unique model ids and GQA head counts that divide", () => {
    expect(new Set(MODELS.map((m) => m.id)).size).toBe(MODELS.length);
    for (const m of MODELS)
      if (m.attention.kind === "gqa") expect(m.attention.attentionHeads % m.attention.kvHeads, m.id).toBe(0);
  });
});
