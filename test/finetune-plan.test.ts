import { describe, expect, it } from "vitest";
import { findGpuSize } from "../stacks/catalogue/droplets";
import { LORA_MODEL_SHAPES } from "../stacks/catalogue/lora";
import { findModel } from "../stacks/catalogue/models";
import { UNSLOTH_REQUIREMENTS } from "../stacks/catalogue/training";
import { FinetuneRequest, loraParameters, planFinetune, trainingMemory } from "../stacks/finetune";

const request = (over: Partial<FinetuneRequest> = {}): FinetuneRequest => ({
  model: findModel("qwen2.5-coder-7b")!,
  gpu: findGpuSize("gpu-h100x1-80gb")!,
  rank: 16,
  epochs: 3,
  sequenceLen: 4096,
  microBatch: 1,
  datasetTokens: 2_000_000,
  projectedMonthUsd: 200,
  budgetUsd: 400,
  ...over,
});

describe("the job's time and cost, worked out by hand", () => {
  it("Qwen2.5-Coder-7B, LoRA on one H100, 2M tokens x 3 epochs", () => {
    const r = planFinetune(request());
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    const p = r.plan;
    expect(p.method).toBe("lora"); // 7B in BF16 fits an 80 GB GPU
    // Throughput: 0.35 MFU x 989e12 FLOP/s / (6 x 7.6e9 FLOP per token) = 7,590.57 tokens/s.
    expect(p.tokensPerSecond).toBeCloseTo((0.35 * 989e12) / (6 * 7.6e9), 6);
    // Training: 6,000,000 tokens / 7,590.57 = 790.41 s.
    expect(p.trainSeconds).toBeCloseTo(6_000_000 / 7590.5702, 1);
    // Around it: droplet 600 + image 300 + data 300 s, and 15.2 GB of weights at 100 MB/s = 152 s.
    expect(p.downloadSeconds).toBeCloseTo(152, 9);
    expect(p.totalSeconds).toBeCloseTo(790.41 + 152 + 1200, 1);
    // GPU: 2,142.41 s = 0.59511 h x $3.39/h = $2.0174.
    expect(p.gpuUsd).toBeCloseTo((2142.41 / 3600) * 3.39, 3);
    // Job volume: ceil(15.2 GB / 1.073741824 + 30) = 45 GiB at $0.10/GiB-month, for 0.595 h of a 730-h month.
    expect(p.volumeGiB).toBe(45);
    expect(p.volumeUsd).toBeCloseTo(((45 * 0.1) / 730) * (2142.41 / 3600), 5);
    expect(p.totalUsd).toBeCloseTo(2.0174 + 0.00367, 3);
    // Every figure is printed, the estimated ones marked.
    expect(p.lines.join("\n")).toMatch(/7591 tokens\/s = 0\.35 MFU ⚠ x 989 TFLOPS/);
    expect(p.lines.join("\n")).toMatch(/cost: 0\.60 h x \$3\.39\/h \(gpu-h100x1-80gb\) = \$2\.02/);
  });

  it("Qwen2.5-Coder-32B does not fit BF16 LoRA on an H100, so QLoRA is chosen, at QLoRA's MFU", () => {
    const r = planFinetune(request({ model: findModel("qwen2.5-coder-32b")! }));
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.plan.method).toBe("qlora");
    // 0.25 x 989e12 / (6 x 32.8e9) = 1,256.35 tokens/s.
    expect(r.plan.tokensPerSecond).toBeCloseTo((0.25 * 989e12) / (6 * 32.8e9), 6);
    // Weights 32.8e9 parameters x 0.55 bytes (NF4 plus the 16-bit embeddings and norms).
    expect(r.plan.memory.weightsGB).toBeCloseTo(18.04, 9);
  });
});

describe("the training-memory model against Unsloth's published requirements", () => {
  const model = findModel("qwen2.5-coder-32b")!;
  const attention = model.attention.kind === "gqa" ? model.attention : undefined;
  if (!attention) throw new Error("gqa");
  const shape = LORA_MODEL_SHAPES[model.id];
  it("LoRA parameters: rank x (in + out) over the seven projections of 64 layers", () => {
    // q 5120+5120, k 5120+1024, v 5120+1024, o 5120+5120, gate 5120+27648, up 5120+27648, down 27648+5120 = 131,072.
    expect(loraParameters(shape, attention, 16)).toBe(16 * 131_072 * 64);
  });
  it("within 15% of 26 GB (QLoRA) and 76 GB (16-bit LoRA) for a 32B model at 2k tokens", () => {
    const qlora = trainingMemory(model, shape, attention, "qlora", 16, 2048, 1).totalGB;
    const lora = trainingMemory(model, shape, attention, "lora", 16, 2048, 1).totalGB;
    expect(Math.abs(qlora - UNSLOTH_REQUIREMENTS.qlora32bGB) / UNSLOTH_REQUIREMENTS.qlora32bGB).toBeLessThan(0.15);
    expect(Math.abs(lora - UNSLOTH_REQUIREMENTS.lora32bGB) / UNSLOTH_REQUIREMENTS.lora32bGB).toBeLessThan(0.15);
  });
});

describe("refused before anything is created, with the reason", () => {
  const problems = (over: Partial<FinetuneRequest>) => {
    const r = planFinetune(request(over));
    expect(r.ok).toBe(false);
    return r.ok ? [] : r.problems;
  };
  it("above the budget: the projected month plus the job", () => {
    const [p] = problems({ projectedMonthUsd: 399, budgetUsd: 400 });
    expect(p.keys).toEqual(["budgetUsd"]);
    expect(p.message).toMatch(
      /projected month is \$399\.00; with this job's \$2\.02 it would be \$401\.02, above the budget of \$400\.00/,
    );
    expect(p.fix).toMatch(/Raise budgetUsd to 402/);
  });
  it("an AMD or 8-GPU size, DeepSeek-V3, a rank vLLM cannot serve, a sequence over the context", () => {
    expect(problems({ gpu: findGpuSize("gpu-mi300x1-192gb")! })[0].message).toMatch(/CUDA builds/);
    expect(problems({ gpu: findGpuSize("gpu-h100x8-640gb")! })[0].message).toMatch(/trains on one/);
    expect(problems({ model: findModel("deepseek-v3")! })[0].message).toMatch(/fused-MoE/);
    expect(problems({ rank: 1024 })[0].keys).toEqual(["--rank"]);
    expect(problems({ sequenceLen: 65536 })[0].message).toMatch(/context of 32768/);
  });
  it("16-bit LoRA of a 32B model on an H100, with the QLoRA fix", () => {
    const [p] = problems({ model: findModel("qwen2.5-coder-32b")!, method: "lora" });
    expect(p.message).toMatch(/needs about \d+\.\d GB to train with lora/);
    expect(p.fix).toBe("Use --method qlora (4-bit base weights).");
  });
});
