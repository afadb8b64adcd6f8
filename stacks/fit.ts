import type { Attention } from "./catalogue/models";
import { gbToGiB } from "./catalogue/storage";

/** Bytes per KV-cache element: vLLM's `--kv-cache-dtype auto` keeps K/V in the model's BF16. */
export const KV_BYTES_BF16 = 2;

/**
 * GPU memory a vLLM process needs besides weights and KV cache, per GPU, GB: CUDA context and
 * NCCL buffers (~1 GB), peak activations of the profiling run, and CUDA graphs (~1-1.5 GB).
 * vLLM measures these at start-up inside --gpu-memory-utilization; this is our stated allowance.
 */
export const VLLM_OVERHEAD_GB = 2.5;
/** A vision encoder's activations and image tokens on top (DeepSeek-OCR). */
export const VLLM_VISION_OVERHEAD_GB = 1.5;
/** Two vLLM processes on one GPU: their --gpu-memory-utilization must add up to at most this. */
export const MAX_COMBINED_GPU_SHARE = 0.95;

/** KV-cache bytes one token occupies on one GPU of a tensor-parallel group. */
export function kvBytesPerTokenPerGpu(
  attention: Attention,
  tensorParallel: number,
  elementBytes = KV_BYTES_BF16,
): number {
  if (attention.kind === "mla") {
    // The latent (kv_lora_rank + rope dims) is not split by heads, so every TP rank holds all of it.
    return attention.layers * (attention.kvLoraRank + attention.qkRopeHeadDim) * elementBytes;
  }
  // KV heads are split across TP ranks; with fewer KV heads than ranks, vLLM replicates them.
  const kvHeadsPerGpu = Math.max(1, Math.ceil(attention.kvHeads / tensorParallel));
  return 2 * attention.layers * kvHeadsPerGpu * attention.headDim * elementBytes;
}

export interface GpuFitInput {
  readonly weightsGB: number;
  readonly attention: Attention;
  readonly maxContext: number;
  readonly tensorParallel: number;
  readonly gpuMemoryGBPerGpu: number;
  /** --gpu-memory-utilization. */
  readonly share: number;
  readonly vision?: boolean;
  /**
   * GPU memory of the LoRA slots per GPU, GB (stacks/lora.ts): vLLM allocates them with the model,
   * before it sizes the KV cache.
   * @default - 0: no adapters
   */
  readonly loraGB?: number;
}

export interface GpuFit {
  readonly weightsPerGpuGB: number;
  /** KV cache for one sequence at full context: vLLM refuses to start without it. */
  readonly kvPerGpuGB: number;
  readonly overheadGB: number;
  /** LoRA slots (0 without adapters). */
  readonly loraGB: number;
  readonly neededPerGpuGB: number;
  readonly availablePerGpuGB: number;
  readonly fits: boolean;
  /** Full-length sequences the KV cache holds at once (0 when it does not fit). */
  readonly fullContextSequences: number;
  /** Smallest share of the GPU that would fit, or undefined when even the whole GPU is too small. */
  readonly minimumShare: number | undefined;
}

export function fitOnGpu(input: GpuFitInput): GpuFit {
  const weightsPerGpuGB = input.weightsGB / input.tensorParallel;
  const kvPerTokenGB = kvBytesPerTokenPerGpu(input.attention, input.tensorParallel) / 1e9;
  const kvPerGpuGB = kvPerTokenGB * input.maxContext;
  const overheadGB = VLLM_OVERHEAD_GB + (input.vision ? VLLM_VISION_OVERHEAD_GB : 0);
  const loraGB = input.loraGB ?? 0;
  const neededPerGpuGB = weightsPerGpuGB + kvPerGpuGB + overheadGB + loraGB;
  const availablePerGpuGB = input.gpuMemoryGBPerGpu * input.share;
  const fits = neededPerGpuGB <= availablePerGpuGB;
  const kvRoom = availablePerGpuGB - weightsPerGpuGB - overheadGB - loraGB;
  const fullContextSequences = fits ? Math.floor(kvRoom / kvPerGpuGB) : 0;
  const share = neededPerGpuGB / input.gpuMemoryGBPerGpu;
  return {
    weightsPerGpuGB,
    kvPerGpuGB,
    overheadGB,
    loraGB,
    neededPerGpuGB,
    availablePerGpuGB,
    fits,
    fullContextSequences,
    minimumShare: share <= MAX_COMBINED_GPU_SHARE ? Math.ceil(share * 100) / 100 : undefined,
  };
}

/** Longest context whose KV cache fits beside the weights; 0 when the weights alone do not fit. */
export function maxContextThatFits(input: GpuFitInput): number {
  const room =
    input.gpuMemoryGBPerGpu * input.share -
    input.weightsGB / input.tensorParallel -
    VLLM_OVERHEAD_GB -
    (input.vision ? VLLM_VISION_OVERHEAD_GB : 0) -
    (input.loraGB ?? 0);
  if (room <= 0) return 0;
  return Math.floor((room * 1e9) / kvBytesPerTokenPerGpu(input.attention, input.tensorParallel));
}

/** llama.cpp keeps an f16 KV cache by default. */
export function llamaCppRamGiB(
  ggufGB: number,
  attention: Attention,
  context: number,
  runtimeGiB: number,
): { weightsGiB: number; kvGiB: number; totalGiB: number } {
  const weightsGiB = gbToGiB(ggufGB);
  const kvGiB = (kvBytesPerTokenPerGpu(attention, 1) * context) / 2 ** 30;
  return { weightsGiB, kvGiB, totalGiB: weightsGiB + kvGiB + runtimeGiB };
}
