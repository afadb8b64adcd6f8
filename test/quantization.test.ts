import { describe, expect, it } from "vitest";
import { findGpuSize, GpuSize } from "../stacks/catalogue/droplets";
import { findModel, ModelEntry } from "../stacks/catalogue/models";
import { mapGgufQuantization, mapVllmQuantization, weightsLoader } from "../stacks/quantization";

const model = (id: string): ModelEntry =>
  findModel(id) ??
  (() => {
    throw new Error(id);
  })();
const size = (slug: string): GpuSize =>
  findGpuSize(slug) ??
  (() => {
    throw new Error(slug);
  })();
/** A GPU without FP8 tensor cores (compute capability 8.6), which the catalogue does not sell. */
const noFp8: GpuSize = { ...size("gpu-l40sx1-48gb"), slug: "test-a10-24gb", gpuModel: "A10", fp8: false };

describe("quantization mapping to what vLLM does", () => {
  it("none keeps the native checkpoint and adds no flag", () => {
    const m = mapVllmQuantization(model("qwen2.5-coder-32b"), "none", size("gpu-h100x1-80gb"));
    expect(m.ok && m.value).toMatchObject({
      modelId: "Qwen/Qwen2.5-Coder-32B-Instruct",
      flags: [],
      gpuWeightsGB: 65.5,
    });
  });

  it("8bit is online FP8 on an FP8-capable GPU when no pre-quantized checkpoint exists: half the weights, BF16 in RAM while loading", () => {
    const m = mapVllmQuantization(model("qwen2.5-coder-14b"), "8bit", size("gpu-h100x1-80gb"));
    expect(m.ok && m.value).toMatchObject({
      modelId: "Qwen/Qwen2.5-Coder-14B-Instruct",
      flags: ["--quantization", "fp8"],
      gpuWeightsGB: 14.75,
      diskGB: 29.5,
      loadRamGB: 29.5,
    });
  });

  it("8bit prefers the pre-quantized FP8 checkpoint on NVIDIA: half the bytes read from the volume, nothing in RAM first", () => {
    const m = mapVllmQuantization(model("qwen2.5-coder-32b"), "8bit", size("gpu-h100x1-80gb"));
    expect(m.ok && m.value).toMatchObject({
      modelId: "RedHatAI/Qwen2.5-Coder-32B-Instruct-FP8-dynamic",
      flags: ["--quantization", "compressed-tensors"],
      diskGB: 34.3,
      gpuWeightsGB: 34.3,
      loadRamGB: 0,
    });
    // 34.3 of 65.5 GB: the wake reads 52 % of what BF16 + online FP8 reads.
    expect(m.ok && m.value.diskGB / model("qwen2.5-coder-32b").weightsGB).toBeLessThan(0.53);
    // ROCm keeps online FP8: the compressed-tensors FP8 build is checked on NVIDIA only.
    const amd = mapVllmQuantization(model("qwen2.5-coder-32b"), "8bit", size("gpu-mi300x1-192gb"));
    expect(amd.ok && amd.value).toMatchObject({
      modelId: "Qwen/Qwen2.5-Coder-32B-Instruct",
      flags: ["--quantization", "fp8"],
    });
  });

  it("prefetches the checkpoint into the page cache when it takes at most half the droplet's RAM, else reads through mmap", () => {
    const h100 = size("gpu-h100x1-80gb");
    const fp8 = mapVllmQuantization(model("qwen2.5-coder-32b"), "8bit", h100);
    if (!fp8.ok) throw new Error("refused");
    // 34.3 GB against 240 GiB (257.7 GB) of RAM.
    expect(weightsLoader(fp8.value, h100)).toMatchObject({
      strategy: "prefetch",
      flags: ["--safetensors-load-strategy", "prefetch"],
    });
    // The 32 GiB RTX 4000 Ada with the 14B in online FP8: 29.5 GB read + 29.5 GB BF16 in RAM = 59 GB > 17.2 GB.
    const ada = size("gpu-4000adax1-20gb");
    const online = mapVllmQuantization(model("qwen2.5-coder-14b"), "8bit", ada);
    if (!online.ok) throw new Error("refused");
    expect(weightsLoader(online.value, ada)).toMatchObject({ strategy: "default", flags: [] });
  });

  it("8bit is refused without FP8 tensor cores, naming the sizes that have them", () => {
    const m = mapVllmQuantization(model("qwen2.5-coder-32b"), "8bit", noFp8);
    expect(m.ok).toBe(false);
    if (!m.ok) {
      expect(m.problem.keys).toEqual(["llmQuantization"]);
      expect(m.problem.message).toContain("8.9");
      expect(m.problem.fix).toContain("gpu-h100x1-80gb");
    }
  });

  it("8bit on a model that is already FP8 keeps its checkpoint", () => {
    const m = mapVllmQuantization(model("deepseek-v3"), "8bit", size("gpu-h200x8-1128gb"));
    expect(m.ok && m.value.flags).toEqual([]);
    expect(m.ok && m.value.modelId).toBe("deepseek-ai/DeepSeek-V3");
  });

  it("4bit picks the AWQ checkpoint with Marlin kernels on NVIDIA and Triton AWQ on AMD", () => {
    const nv = mapVllmQuantization(model("qwen2.5-coder-32b"), "4bit", size("gpu-h100x1-80gb"));
    expect(nv.ok && nv.value).toMatchObject({
      modelId: "Qwen/Qwen2.5-Coder-32B-Instruct-AWQ",
      flags: ["--quantization", "awq_marlin"],
    });
    const amd = mapVllmQuantization(model("qwen2.5-coder-32b"), "4bit", size("gpu-mi300x1-192gb"));
    expect(amd.ok && amd.value.flags).toEqual(["--quantization", "awq"]);
  });

  it("4bit without an AWQ checkpoint falls back to bitsandbytes on NVIDIA", () => {
    const m = mapVllmQuantization(model("qwen2.5-coder-3b"), "4bit", size("gpu-l40sx1-48gb"));
    // 3.1B parameters x 0.55 bytes = 1.705 GB.
    expect(m.ok && m.value).toMatchObject({
      modelId: "Qwen/Qwen2.5-Coder-3B-Instruct",
      flags: ["--quantization", "bitsandbytes"],
    });
    expect(m.ok && m.value.gpuWeightsGB).toBeCloseTo(1.705, 3);
  });

  it("4bit is refused for an FP8-only model with no 4-bit checkpoint", () => {
    const m = mapVllmQuantization(model("deepseek-v3"), "4bit", size("gpu-h200x8-1128gb"));
    expect(!m.ok && m.problem.keys).toEqual(["llmQuantization"]);
  });

  it("DeepSeek-OCR is refused on AMD", () => {
    const m = mapVllmQuantization(model("deepseek-ocr"), "none", size("gpu-mi300x1-192gb"));
    expect(!m.ok && m.problem.keys).toEqual(["gpuSize"]);
  });
});

describe("GGUF mapping for llama.cpp", () => {
  it("4bit → Q4_K_M and 8bit → Q8_0, addressed as repo:quant", () => {
    const q4 = mapGgufQuantization(model("qwen2.5-coder-7b"), "4bit", "llmModel");
    expect(q4.ok && q4.value).toMatchObject({ hfArg: "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M", sizeGB: 4.7 });
    const q8 = mapGgufQuantization(model("qwen2.5-coder-7b"), "8bit", "llmModel");
    expect(q8.ok && q8.value.quantTag).toBe("Q8_0");
  });
  it("none is refused on CPU, and so is a model without GGUF builds", () => {
    expect(mapGgufQuantization(model("qwen2.5-coder-7b"), "none", "llmModel").ok).toBe(false);
    const v3 = mapGgufQuantization(model("deepseek-v3"), "4bit", "fallbackModel");
    expect(!v3.ok && v3.problem.keys).toEqual(["fallbackModel"]);
  });
});
