import { describe, expect, it } from "vitest";
import { fitOnGpu, kvBytesPerTokenPerGpu, llamaCppRamGiB, maxContextThatFits, VLLM_OVERHEAD_GB } from "../stacks/fit";

const qwen32b = { kind: "gqa", layers: 64, attentionHeads: 40, kvHeads: 8, headDim: 128 } as const;
const deepseekV3 = { kind: "mla", layers: 61, attentionHeads: 128, kvLoraRank: 512, qkRopeHeadDim: 64 } as const;

describe("KV cache size per token", () => {
  it("GQA: 2 (K and V) x layers x KV heads x head dim x 2 bytes", () => {
    // 2 * 64 * 8 * 128 * 2 = 262,144 bytes = 256 KiB a token.
    expect(kvBytesPerTokenPerGpu(qwen32b, 1)).toBe(262_144);
  });
  it("GQA splits KV heads over tensor-parallel ranks", () => {
    // 8 KV heads over 8 GPUs: 1 head each -> 2 * 64 * 1 * 128 * 2 = 32,768 bytes.
    expect(kvBytesPerTokenPerGpu(qwen32b, 8)).toBe(32_768);
  });
  it("GQA replicates KV heads when there are fewer heads than ranks", () => {
    const twoHeads = { ...qwen32b, kvHeads: 2 };
    // ceil(2 / 8) = 1 head per GPU, not 0.25.
    expect(kvBytesPerTokenPerGpu(twoHeads, 8)).toBe(2 * 64 * 1 * 128 * 2);
  });
  it("MLA keeps one latent per layer on every rank", () => {
    // 61 * (512 + 64) * 2 = 70,272 bytes, whatever the TP size.
    expect(kvBytesPerTokenPerGpu(deepseekV3, 1)).toBe(70_272);
    expect(kvBytesPerTokenPerGpu(deepseekV3, 8)).toBe(70_272);
  });
});

describe("fit on a GPU, hand-worked", () => {
  it("Qwen2.5-Coder-32B in FP8 fits 70% of an H100 with a 32k context", () => {
    const fit = fitOnGpu({
      weightsGB: 32.75,
      attention: qwen32b,
      maxContext: 32_768,
      tensorParallel: 1,
      gpuMemoryGBPerGpu: 80,
      share: 0.7,
    });
    // KV: 262,144 B x 32,768 = 8.590 GB; needed = 32.75 + 8.590 + 2.5 = 43.84 GB; available = 56 GB.
    expect(fit.kvPerGpuGB).toBeCloseTo(8.59, 2);
    expect(fit.neededPerGpuGB).toBeCloseTo(43.84, 2);
    expect(fit.availablePerGpuGB).toBe(56);
    expect(fit.fits).toBe(true);
    // (56 - 32.75 - 2.5) / 8.59 = 2.4 -> 2 full-length sequences at once.
    expect(fit.fullContextSequences).toBe(2);
  });

  it("Qwen2.5-Coder-32B in BF16 does not fit 70% of an H100", () => {
    const fit = fitOnGpu({
      weightsGB: 65.5,
      attention: qwen32b,
      maxContext: 32_768,
      tensorParallel: 1,
      gpuMemoryGBPerGpu: 80,
      share: 0.7,
    });
    // 65.5 + 8.59 + 2.5 = 76.59 GB > 56 GB.
    expect(fit.neededPerGpuGB).toBeCloseTo(76.59, 2);
    expect(fit.fits).toBe(false);
    expect(fit.fullContextSequences).toBe(0);
    // 76.59 / 80 = 0.957 > 0.95: no share of one H100 is enough.
    expect(fit.minimumShare).toBeUndefined();
  });

  it("DeepSeek-V3 (690 GB FP8) fits 8xH200 but not 8xH100", () => {
    const h200 = fitOnGpu({
      weightsGB: 690,
      attention: deepseekV3,
      maxContext: 65_536,
      tensorParallel: 8,
      gpuMemoryGBPerGpu: 141,
      share: 0.9,
    });
    // 690 / 8 = 86.25 GB weights; KV 70,272 x 65,536 = 4.605 GB; + 2.5 = 93.36 GB <= 126.9 GB.
    expect(h200.weightsPerGpuGB).toBe(86.25);
    expect(h200.neededPerGpuGB).toBeCloseTo(93.36, 2);
    expect(h200.fits).toBe(true);
    const h100 = fitOnGpu({
      weightsGB: 690,
      attention: deepseekV3,
      maxContext: 65_536,
      tensorParallel: 8,
      gpuMemoryGBPerGpu: 80,
      share: 0.9,
    });
    // Weights alone (86.25 GB) exceed 72 GB.
    expect(h100.fits).toBe(false);
  });

  it("adds the vision allowance for DeepSeek-OCR", () => {
    const ocr = { kind: "gqa", layers: 12, attentionHeads: 10, kvHeads: 10, headDim: 128 } as const;
    const fit = fitOnGpu({
      weightsGB: 6.7,
      attention: ocr,
      maxContext: 8192,
      tensorParallel: 1,
      gpuMemoryGBPerGpu: 80,
      share: 0.2,
      vision: true,
    });
    // KV: 2*12*10*128*2 = 61,440 B x 8192 = 0.503 GB; 6.7 + 0.503 + 2.5 + 1.5 = 11.2 GB <= 16 GB.
    expect(fit.overheadGB).toBe(VLLM_OVERHEAD_GB + 1.5);
    expect(fit.neededPerGpuGB).toBeCloseTo(11.2, 1);
    expect(fit.fits).toBe(true);
  });

  it("finds the longest context that fits", () => {
    // Room: 56 - 32.75 - 2.5 = 20.75 GB / 262,144 B = 79,155 tokens.
    const longest = maxContextThatFits({
      weightsGB: 32.75,
      attention: qwen32b,
      maxContext: 1,
      tensorParallel: 1,
      gpuMemoryGBPerGpu: 80,
      share: 0.7,
    });
    expect(longest).toBe(Math.floor(20.75e9 / 262_144));
    expect(
      maxContextThatFits({
        weightsGB: 100,
        attention: qwen32b,
        maxContext: 1,
        tensorParallel: 1,
        gpuMemoryGBPerGpu: 80,
        share: 0.9,
      }),
    ).toBe(0);
  });
});

describe("llama.cpp RAM", () => {
  it("GGUF file + f16 KV cache for the context + runtime", () => {
    const qwen1_5b = { kind: "gqa", layers: 28, attentionHeads: 12, kvHeads: 2, headDim: 128 } as const;
    const ram = llamaCppRamGiB(1.1, qwen1_5b, 8192, 0.5);
    // 1.1 GB = 1.0245 GiB; KV 2*28*2*128*2 = 28,672 B x 8192 = 0.21875 GiB; + 0.5.
    expect(ram.weightsGiB).toBeCloseTo(1.0245, 3);
    expect(ram.kvGiB).toBeCloseTo(0.21875, 5);
    expect(ram.totalGiB).toBeCloseTo(1.743, 3);
  });
});
