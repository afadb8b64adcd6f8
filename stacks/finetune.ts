import { GpuSize, HOURS_PER_MONTH } from "./catalogue/droplets";
import {
  LORA_MODEL_SHAPES,
  LORA_PROJECTIONS,
  LORA_UNSUPPORTED_MODELS,
  LoraModelShape,
  VLLM_LORA_RANKS,
} from "./catalogue/lora";
import type { GqaAttention, ModelEntry } from "./catalogue/models";
import { gbToGiB, VOLUME_PRICE_PER_GIB_MONTH } from "./catalogue/storage";
import { FLOPS_PER_TOKEN_PER_PARAM, JOB_OVERHEAD, TRAINING_GPUS, TRAINING_MFU } from "./catalogue/training";
import { problem, Problem } from "./problems";
import { BNB_4BIT_BYTES_PER_PARAM } from "./quantization";

/**
 * A LoRA fine-tuning job's plan, before anything is created: does it fit the GPU, how long and
 * how much. Pure arithmetic over the catalogue; `hub finetune` prints every line of it.
 */
export const FINETUNE_METHODS = ["lora", "qlora"] as const;
export type FinetuneMethod = (typeof FINETUNE_METHODS)[number];

export interface FinetuneRequest {
  readonly model: ModelEntry;
  readonly gpu: GpuSize;
  /** @default - lora when it fits the GPU with 10% to spare, else qlora */
  readonly method?: FinetuneMethod;
  readonly rank: number;
  readonly epochs: number;
  readonly sequenceLen: number;
  readonly microBatch: number;
  /** Tokens of the whole dataset once (prompts and answers, as the chat template renders them). */
  readonly datasetTokens: number;
  /** The serving stack's projected month and budget: the job must fit under it. */
  readonly projectedMonthUsd: number;
  readonly budgetUsd: number;
}

export interface TrainingMemory {
  readonly weightsGB: number;
  /** LoRA weights in BF16, their FP32 gradients and Adam's two FP32 moments: 14 bytes a parameter. */
  readonly adapterStateGB: number;
  /** Gradient checkpointing keeps one hidden state per layer, plus one layer's working set. */
  readonly activationsGB: number;
  /** FP32 logits over the vocabulary for one micro-batch. */
  readonly logitsGB: number;
  readonly overheadGB: number;
  readonly totalGB: number;
}

/** CUDA context, allocator fragmentation, NCCL-free single-GPU runtime (our planning figure). */
export const TRAINING_OVERHEAD_GB = 3;
/** Leave this share of the GPU free: the allocator needs room and the estimate is rough. */
export const TRAINING_HEADROOM = 0.9;

/** LoRA parameters for rank r over the seven projections of every layer (= slot elements per rank at tp 1). */
export function loraParameters(shape: LoraModelShape, attention: GqaAttention, rank: number): number {
  const H = shape.hiddenSize;
  const Q = attention.attentionHeads * attention.headDim;
  const K = attention.kvHeads * attention.headDim;
  const I = shape.intermediateSize;
  // (in + out) per projection: q, k, v, o, gate, up, down.
  const perLayer = H + Q + (H + K) * 2 + (Q + H) + (H + I) * 2 + (I + H);
  return rank * perLayer * attention.layers;
}

export function trainingMemory(
  model: ModelEntry,
  shape: LoraModelShape,
  attention: GqaAttention,
  method: FinetuneMethod,
  rank: number,
  sequenceLen: number,
  microBatch: number,
): TrainingMemory {
  const weightsGB = method === "qlora" ? model.paramsB * BNB_4BIT_BYTES_PER_PARAM : model.weightsGB;
  const adapterStateGB = (loraParameters(shape, attention, rank) * 14) / 1e9;
  const tokens = sequenceLen * microBatch;
  const H = shape.hiddenSize;
  const checkpointsGB = (attention.layers * tokens * H * 2) / 1e9;
  // One layer recomputed: attention projections, MLP intermediates (gate, up, act) and norms, BF16.
  const workingGB = (tokens * (10 * H + 4 * shape.intermediateSize) * 2) / 1e9;
  const logitsGB = (tokens * shape.vocabSize * 4) / 1e9;
  const activationsGB = checkpointsGB + workingGB;
  const totalGB = weightsGB + adapterStateGB + activationsGB + logitsGB + TRAINING_OVERHEAD_GB;
  return { weightsGB, adapterStateGB, activationsGB, logitsGB, overheadGB: TRAINING_OVERHEAD_GB, totalGB };
}

/** Trained tokens per second on one GPU: MFU x peak / (6 x parameters). */
export function tokensPerSecond(model: ModelEntry, gpu: GpuSize, method: FinetuneMethod): number | undefined {
  const g = TRAINING_GPUS[gpu.gpuModel];
  if (!g) return undefined;
  return (TRAINING_MFU[method].value * g.bf16DenseTflops * 1e12) / (FLOPS_PER_TOKEN_PER_PARAM * model.paramsB * 1e9);
}

/** Assumed download rate for the base checkpoint (the same planning figure as services/coder.ts). */
export const JOB_DOWNLOAD_MB_PER_S = 100;

export interface FinetunePlan {
  readonly method: FinetuneMethod;
  readonly memory: TrainingMemory;
  readonly tokensPerSecond: number;
  readonly trainedTokens: number;
  readonly trainSeconds: number;
  readonly downloadSeconds: number;
  readonly overheadSeconds: number;
  readonly totalSeconds: number;
  /** The job's own volume (dataset, base weights, checkpoints), GiB. */
  readonly volumeGiB: number;
  readonly gpuUsd: number;
  readonly volumeUsd: number;
  readonly totalUsd: number;
  /** Every figure and where it comes from, ⚠ where estimated: printed before anything is created. */
  readonly lines: readonly string[];
}

const usd = (n: number) => `$${n.toFixed(2)}`;
const minutes = (s: number) => `${Math.round(s / 60)} min`;

/** The job's plan, or every reason it is refused. */
export function planFinetune(
  r: FinetuneRequest,
): { ok: true; plan: FinetunePlan } | { ok: false; problems: Problem[] } {
  const problems: Problem[] = [];
  const { model, gpu } = r;
  const unsupported = LORA_UNSUPPORTED_MODELS[model.id];
  if (unsupported)
    problems.push(
      problem(
        "llmModel",
        model.id,
        `cannot be fine-tuned here: ${unsupported}.`,
        "Fine-tune a Qwen2.5-Coder or CodeLlama model.",
      ),
    );
  const shape = Object.hasOwn(LORA_MODEL_SHAPES, model.id) ? LORA_MODEL_SHAPES[model.id] : undefined;
  if (!unsupported && (!shape || model.attention.kind !== "gqa"))
    problems.push(
      problem(
        "llmModel",
        model.id,
        "has no LoRA shape in the catalogue (stacks/catalogue/lora.ts).",
        "Fine-tune a Qwen2.5-Coder or CodeLlama model.",
      ),
    );
  if (gpu.vendor !== "nvidia")
    problems.push(
      problem(
        "--gpu-size",
        gpu.slug,
        `is an ${gpu.vendor.toUpperCase()} GPU; axolotl's images are CUDA builds.`,
        "Use an NVIDIA size such as gpu-h100x1-80gb or gpu-l40sx1-48gb.",
      ),
    );
  if (gpu.gpuCount > 1)
    problems.push(
      problem(
        "--gpu-size",
        gpu.slug,
        `has ${gpu.gpuCount} GPUs; the job trains on one.`,
        "Use a single-GPU size such as gpu-h100x1-80gb or gpu-h200x1-141gb.",
      ),
    );
  if (!Number.isInteger(r.rank) || r.rank < 1 || r.rank > VLLM_LORA_RANKS[VLLM_LORA_RANKS.length - 1])
    problems.push(
      problem(
        "--rank",
        r.rank,
        `must be a whole number from 1 to ${VLLM_LORA_RANKS[VLLM_LORA_RANKS.length - 1]}: vLLM 0.24 serves ranks up to that.`,
        "Use 8, 16, 32 or 64.",
      ),
    );
  if (r.sequenceLen > model.maxContext)
    problems.push(
      problem(
        "--sequence-len",
        r.sequenceLen,
        `exceeds ${model.displayName}'s context of ${model.maxContext} tokens.`,
        `Use ${model.maxContext} or less.`,
      ),
    );
  if (r.datasetTokens <= 0)
    problems.push(
      problem("--dataset", r.datasetTokens, "has no tokens to train on.", "Give a dataset with at least one example."),
    );
  if (problems.length > 0 || !shape || model.attention.kind !== "gqa")
    return {
      ok: false,
      problems: problems.length
        ? problems
        : [problem("llmModel", model.id, "cannot be fine-tuned here.", "Use a Qwen2.5-Coder or CodeLlama model.")],
    };
  const attention = model.attention;

  const room = gpu.gpuMemoryGBPerGpu * TRAINING_HEADROOM;
  const memoryOf = (m: FinetuneMethod) =>
    trainingMemory(model, shape, attention, m, r.rank, r.sequenceLen, r.microBatch);
  const method: FinetuneMethod = r.method ?? (memoryOf("lora").totalGB <= room ? "lora" : "qlora");
  const memory = memoryOf(method);
  if (memory.totalGB > room) {
    const other: FinetuneMethod = method === "lora" ? "qlora" : "lora";
    const otherFits = memoryOf(other).totalGB <= room && other === "qlora";
    problems.push(
      problem(
        ["--method", "--gpu-size"],
        `${method} on ${gpu.slug}`,
        `${model.displayName} needs about ${memory.totalGB.toFixed(1)} GB to train with ${method} (weights ${memory.weightsGB.toFixed(1)} + adapter and optimizer ${memory.adapterStateGB.toFixed(1)} + activations ${memory.activationsGB.toFixed(1)} + logits ${memory.logitsGB.toFixed(1)} + overhead ${memory.overheadGB}); ${gpu.slug} has ${gpu.gpuMemoryGBPerGpu} GB, of which the plan uses ${Math.round(TRAINING_HEADROOM * 100)}%.`,
        otherFits
          ? "Use --method qlora (4-bit base weights)."
          : "Use a bigger GPU (--gpu-size gpu-h100x1-80gb or gpu-h200x1-141gb), a shorter --sequence-len, or a smaller model.",
      ),
    );
    return { ok: false, problems };
  }

  const tps = tokensPerSecond(model, gpu, method)!;
  const trainedTokens = r.datasetTokens * r.epochs;
  const trainSeconds = trainedTokens / tps;
  const downloadSeconds = (model.weightsGB * 1000) / JOB_DOWNLOAD_MB_PER_S;
  const overheadSeconds =
    JOB_OVERHEAD.dropletSeconds.value + JOB_OVERHEAD.imageSeconds.value + JOB_OVERHEAD.prepareSeconds.value;
  const totalSeconds = trainSeconds + downloadSeconds + overheadSeconds;
  const gpuUsd = (totalSeconds / 3600) * gpu.pricePerHour;
  const volumeGiB = Math.ceil(gbToGiB(model.weightsGB) + 30);
  const volumeUsd = ((volumeGiB * VOLUME_PRICE_PER_GIB_MONTH) / HOURS_PER_MONTH) * (totalSeconds / 3600);
  const totalUsd = gpuUsd + volumeUsd;
  const g = TRAINING_GPUS[gpu.gpuModel]!;
  const lines = [
    `method: ${method} (${method === "qlora" ? "4-bit base weights, bitsandbytes NF4" : "BF16 base weights"}), rank ${r.rank}, ${r.epochs} epoch(s), sequence length ${r.sequenceLen}, micro-batch ${r.microBatch}`,
    `memory: ${memory.totalGB.toFixed(1)} GB of ${gpu.gpuMemoryGBPerGpu} GB (weights ${memory.weightsGB.toFixed(1)} + adapter and optimizer ${memory.adapterStateGB.toFixed(1)} + activations ${memory.activationsGB.toFixed(1)} + logits ${memory.logitsGB.toFixed(1)} + overhead ${memory.overheadGB}) ⚠ estimate`,
    `throughput: ${Math.round(tps)} tokens/s = ${TRAINING_MFU[method].value} MFU ⚠ x ${g.bf16DenseTflops} TFLOPS (${gpu.gpuModel} BF16 dense, ${g.source.source}${g.source.verified ? "" : " ⚠"}) / (${FLOPS_PER_TOKEN_PER_PARAM} x ${model.paramsB}B parameters)`,
    `training: ${trainedTokens.toLocaleString("en-US")} tokens (${r.datasetTokens.toLocaleString("en-US")} x ${r.epochs}) / ${Math.round(tps)} tokens/s = ${minutes(trainSeconds)}`,
    `around it: droplet ${minutes(JOB_OVERHEAD.dropletSeconds.value)} ⚠ + image ${minutes(JOB_OVERHEAD.imageSeconds.value)} ⚠ + base weights ${model.weightsGB} GB at ${JOB_DOWNLOAD_MB_PER_S} MB/s ${minutes(downloadSeconds)} ⚠ + data and upload ${minutes(JOB_OVERHEAD.prepareSeconds.value)} ⚠`,
    `cost: ${(totalSeconds / 3600).toFixed(2)} h x $${gpu.pricePerHour}/h (${gpu.slug}) = ${usd(gpuUsd)} + job volume ${volumeGiB} GiB ${usd(volumeUsd)} = ${usd(totalUsd)}`,
  ];
  if (r.projectedMonthUsd + totalUsd > r.budgetUsd) {
    problems.push(
      problem(
        "budgetUsd",
        r.budgetUsd,
        `the stack's projected month is ${usd(r.projectedMonthUsd)}; with this job's ${usd(totalUsd)} it would be ${usd(r.projectedMonthUsd + totalUsd)}, above the budget of ${usd(r.budgetUsd)}.`,
        `Raise budgetUsd to ${Math.ceil(r.projectedMonthUsd + totalUsd)}, train fewer epochs or on less data, or use a cheaper --gpu-size.`,
      ),
    );
    return { ok: false, problems };
  }
  return {
    ok: true,
    plan: {
      method,
      memory,
      tokensPerSecond: tps,
      trainedTokens,
      trainSeconds,
      downloadSeconds,
      overheadSeconds,
      totalSeconds,
      volumeGiB,
      gpuUsd,
      volumeUsd,
      totalUsd,
      lines,
    },
  };
}

/** The projections axolotl targets: every linear layer vLLM gives a LoRA slot. */
export const FINETUNE_TARGET_MODULES: readonly string[] = LORA_PROJECTIONS;
