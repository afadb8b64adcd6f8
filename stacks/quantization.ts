import type { GpuSize } from "./catalogue/droplets";
import { GPU_SIZES } from "./catalogue/droplets";
import type { ModelEntry } from "./catalogue/models";
import { problem, Problem } from "./problems";
import type { Quantization } from "./settings";

/** What vLLM is asked to load: the exact model id and the flags that select its number format. */
export interface VllmWeights {
  readonly quantization: Quantization;
  /** Positional model argument of `vllm serve`. */
  readonly modelId: string;
  readonly flags: readonly string[];
  /** Weights resident in GPU memory, GB, summed over the TP group. */
  readonly gpuWeightsGB: number;
  /** Checkpoint size downloaded into the model cache, GB. */
  readonly diskGB: number;
  /** Host RAM needed while loading, GB: online FP8 loads the BF16 checkpoint first. */
  readonly loadRamGB: number;
  readonly format: string;
}

/** bitsandbytes NF4 stores 4 bits a weight; embeddings, norms and the LM head stay 16-bit. */
export const BNB_4BIT_BYTES_PER_PARAM = 0.55;

export type Mapped<T> = { ok: true; value: T } | { ok: false; problem: Problem };

const refuse = <T>(p: Problem): Mapped<T> => ({ ok: false, problem: p });
const accept = <T>(value: T): Mapped<T> => ({ ok: true, value });

const fp8Sizes = () => GPU_SIZES.filter((s) => s.fp8).map((s) => s.slug);

/**
 * `none` → the native checkpoint; `8bit` → a pre-quantized FP8 checkpoint where the catalogue has one
 * (NVIDIA), else vLLM's online FP8 on FP8-capable GPUs;
 * `4bit` → the model's pre-quantized AWQ checkpoint, else bitsandbytes in-flight (NVIDIA only).
 */
export function mapVllmQuantization(model: ModelEntry, quantization: Quantization, size: GpuSize): Mapped<VllmWeights> {
  const native: VllmWeights = {
    quantization,
    modelId: model.repo,
    flags: [],
    gpuWeightsGB: model.weightsGB,
    diskGB: model.weightsGB,
    loadRamGB: 0,
    format: model.nativeDtype === "fp8" ? "FP8 (native checkpoint)" : "BF16 (native checkpoint)",
  };
  if (model.cudaOnly && size.vendor !== "nvidia") {
    return refuse(
      problem(
        ["gpuSize"],
        size.slug,
        `${model.displayName} is served only with CUDA; ${size.slug} is an ${size.vendor.toUpperCase()} GPU.`,
        "Use an NVIDIA size (gpu-h100x1-80gb, gpu-l40sx1-48gb, ...) or set ocrEngine to docling.",
      ),
    );
  }
  if (quantization === "none") return accept(native);

  if (quantization === "8bit") {
    if (model.nativeDtype === "fp8")
      return accept({ ...native, format: "FP8 (native checkpoint; 8bit is already its format)" });
    if (!size.fp8) {
      return refuse(
        problem(
          "llmQuantization",
          quantization,
          `8bit maps to vLLM's FP8, which needs FP8 tensor cores (compute capability >= 8.9); ${size.slug} (${size.gpuModel}) has none, and vLLM has no 8-bit bitsandbytes mode.`,
          `Use 4bit or none, or an FP8-capable size: ${fp8Sizes().join(", ")}.`,
        ),
      );
    }
    if (model.fp8 && size.vendor === "nvidia") {
      // Pre-quantized: half the bytes read from the volume on every wake, no BF16 copy in host RAM.
      // vLLM reads the scheme from the checkpoint's quantization_config; the flag states it (and is checked against the pinned list).
      return accept({
        quantization,
        modelId: model.fp8.repo,
        flags: ["--quantization", "compressed-tensors"],
        gpuWeightsGB: model.fp8.weightsGB,
        diskGB: model.fp8.weightsGB,
        loadRamGB: 0,
        format: "FP8 (pre-quantized W8A8 checkpoint)",
      });
    }
    return accept({
      quantization,
      modelId: model.repo,
      flags: ["--quantization", "fp8"],
      gpuWeightsGB: model.weightsGB / 2,
      diskGB: model.weightsGB,
      loadRamGB: model.weightsGB,
      format: "FP8 (quantized online from the BF16 checkpoint)",
    });
  }

  if (model.awq) {
    return accept({
      quantization,
      modelId: model.awq.repo,
      // Marlin kernels are the fast AWQ path on NVIDIA; ROCm runs the Triton AWQ kernels.
      flags: ["--quantization", size.vendor === "nvidia" ? "awq_marlin" : "awq"],
      gpuWeightsGB: model.awq.weightsGB,
      diskGB: model.awq.weightsGB,
      loadRamGB: 0,
      format: "AWQ 4-bit (pre-quantized checkpoint)",
    });
  }
  if (model.nativeDtype === "fp8") {
    return refuse(
      problem(
        "llmQuantization",
        quantization,
        `${model.displayName} ships FP8 weights only and the catalogue has no 4-bit checkpoint of it; bitsandbytes cannot re-quantize an FP8 checkpoint.`,
        "Use none (its native FP8).",
      ),
    );
  }
  if (size.vendor !== "nvidia") {
    return refuse(
      problem(
        "llmQuantization",
        quantization,
        `${model.displayName} has no AWQ checkpoint in the catalogue, and bitsandbytes in-flight 4-bit is not supported on ${size.vendor.toUpperCase()} GPUs.`,
        "Use 8bit or none, or a model with an AWQ checkpoint (qwen2.5-coder-7b/14b/32b, codellama-13b/34b).",
      ),
    );
  }
  const bnbGB = model.paramsB * BNB_4BIT_BYTES_PER_PARAM;
  return accept({
    quantization,
    modelId: model.repo,
    flags: ["--quantization", "bitsandbytes"],
    gpuWeightsGB: bnbGB,
    diskGB: model.weightsGB,
    loadRamGB: 0,
    format: "NF4 4-bit (bitsandbytes, quantized while loading)",
  });
}

/**
 * How vLLM reads the checkpoint from the model-cache volume. A DigitalOcean volume is a network
 * block device mounted as ext4, so vLLM's own auto-prefetch (NFS and Lustre only) stays off and it
 * faults the safetensors in through mmap; `--safetensors-load-strategy prefetch` (in the pinned
 * 0.24.0 argument list) reads every shard into the page cache first with parallel reads, which
 * keeps the volume at its throughput limit (and its 60 s burst). It needs the checkpoint in RAM
 * (vLLM warns above 90 % of available RAM), so it is used only when the checkpoint, plus a BF16
 * copy online FP8 holds, takes at most half the droplet's RAM. Source: vllm
 * model_executor/model_loader/weight_utils.py safetensors_weights_iterator (read 2026-12-07 in a
 * public copy, not at the v0.24.0 tag).
 */
export interface WeightsLoader {
  readonly strategy: "prefetch" | "default";
  readonly flags: readonly string[];
  readonly why: string;
}

export const PREFETCH_MAX_RAM_SHARE = 0.5;

export function weightsLoader(weights: VllmWeights, size: GpuSize): WeightsLoader {
  const ramGB = size.ramGiB * 1.073741824;
  const needGB = weights.diskGB + weights.loadRamGB;
  if (needGB <= PREFETCH_MAX_RAM_SHARE * ramGB) {
    return {
      strategy: "prefetch",
      flags: ["--safetensors-load-strategy", "prefetch"],
      why: `${weights.diskGB} GB checkpoint read into the page cache with parallel reads (${size.ramGiB} GiB RAM)`,
    };
  }
  return {
    strategy: "default",
    flags: [],
    why: `${needGB.toFixed(1)} GB would take more than half of ${size.slug}'s ${size.ramGiB} GiB RAM: mmap reads`,
  };
}

/** llama.cpp on the CPU node reads GGUF builds: 4bit → Q4_K_M, 8bit → Q8_0. */
export interface GgufWeights {
  readonly repo: string;
  readonly quantTag: "Q4_K_M" | "Q8_0";
  /** `-hf` argument of llama-server. */
  readonly hfArg: string;
  readonly sizeGB: number;
}

export function mapGgufQuantization(model: ModelEntry, quantization: Quantization, key: string): Mapped<GgufWeights> {
  if (!model.gguf) {
    return refuse(
      problem(
        key,
        model.id,
        `${model.displayName} has no GGUF build in the catalogue, so llama.cpp cannot serve it on a CPU node.`,
        "Choose a model with a GGUF build: qwen2.5-coder-1.5b, -3b, -7b, -14b, codellama-13b.",
      ),
    );
  }
  if (quantization === "none") {
    return refuse(
      problem(
        "llmQuantization",
        quantization,
        "On a CPU node the coder runs llama.cpp from a GGUF build; full precision would need 2 bytes a parameter of RAM and run several times slower.",
        "Use 4bit (Q4_K_M) or 8bit (Q8_0).",
      ),
    );
  }
  const quantTag = quantization === "4bit" ? "Q4_K_M" : "Q8_0";
  return accept({
    repo: model.gguf.repo,
    quantTag,
    hfArg: `${model.gguf.repo}:${quantTag}`,
    sizeGB: quantization === "4bit" ? model.gguf.q4_k_m : model.gguf.q8_0,
  });
}
