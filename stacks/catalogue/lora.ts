import { HF, Source, src, unverified } from "./sources";

/**
 * What vLLM v0.24.0 (commit ee0da84a, read 2026-12-07 in the neuralmagic/vllm snapshot that holds
 * it) does with LoRA adapters, as the plan-time checks and the adapter check rely on it. Every
 * flag below is also in ../shared/reference/vllm/args-0.24.0.json; test/lora-serving.test.ts
 * checks the rendered command against that list.
 */
export const VLLM_LORA_SOURCE = "vllm-project/vllm v0.24.0 (ee0da84a)";
const READ = "2026-12-07";
const at = (file: string, what: string): Source => src(`${VLLM_LORA_SOURCE} ${file} (${what})`, READ);

/** `MaxLoRARanks` in vllm/config/lora.py; argparse refuses any other --max-lora-rank. */
export const VLLM_LORA_RANKS = [1, 8, 16, 32, 64, 128, 256, 320, 512] as const;
/** --max-loras: `Field(default=1, ge=1)`; --max-cpu-loras must be >= it (`_validate_lora_config`). */
export const VLLM_LORA_SOURCES = {
  ranks: at("vllm/config/lora.py", "MaxLoRARanks, max_loras ge=1, max_cpu_loras >= max_loras"),
  peft: at(
    "vllm/lora/peft_helper.py",
    "PEFTHelper.from_dict requires r, lora_alpha, target_modules; validate_legal refuses r > max_lora_rank, bias != none, modules_to_save, use_dora",
  ),
  modules: at(
    "vllm/lora/lora_model.py + vllm/lora/worker_manager.py",
    "check_unexpected_modules: every tensor's module suffix must be a supported (packed modules expanded) module",
  ),
  names: at(
    "vllm/lora/utils.py",
    "parse_fine_tuned_lora_name: <prefix>.<module>.lora_A.weight / lora_B.weight, base_model.model. stripped",
  ),
  slots: at(
    "vllm/lora/layers/base_linear.py + column_parallel_linear.py + row_parallel_linear.py",
    "create_lora_weights: per slot and layer, lora_a (max_rank x input) and lora_b (output x max_rank) for every slice, in lora_dtype",
  ),
  shapes: at(
    "vllm/lora/layers/base_linear.py",
    "set_lora copies lora_a into [:r, :input] and lora_b into [:output, :r] of the slot: a larger tensor fails there, a smaller one is silently padded",
  ),
  modulesFlag: at(
    "vllm/entrypoints/openai/cli_args.py",
    "LoRAParserAction: name=path, or JSON {name, path, base_model_name}; one --lora-modules with every adapter, since the action replaces the list",
  ),
  models: at(
    "vllm/entrypoints/openai/models/serving.py",
    "show_available_models lists each adapter as a model card with parent = base_model_name",
  ),
  quantTested: at(
    "tests/lora/test_quant_model.py",
    "AWQ and GPTQ with LoRA on CUDA; GPTQ only on ROCm ('AWQ quantization is currently not supported in ROCm')",
  ),
  bnbExample: at("examples/features/lora/lora_with_quantization_offline.py", "bitsandbytes, AWQ and GPTQ with LoRA"),
  moe: at(
    "vllm/lora/layers/fused_moe.py",
    "'Monolithic kernels are not supported for Fused MoE LoRA'; fused_moe/experts/flashinfer_cutlass_moe.py raises 'LoRA is not supported'",
  ),
};

/** The projections PEFT targets in Qwen2 and Llama decoder layers (vLLM packs q/k/v and gate/up: `packed_modules_mapping`). */
export const LORA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type LoraProjection = (typeof LORA_PROJECTIONS)[number];

/**
 * The dense shapes a LoRA adapter must match, from each checkpoint's config.json. Hidden size is
 * attention heads x head dim for every coder here; the MLP width is not derivable.
 */
export interface LoraModelShape {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly vocabSize: number;
  /** `embedding_modules` names lm_head (LlamaForCausalLM): vLLM also keeps a LoRA slot on the logits. */
  readonly lmHeadSlot: boolean;
  readonly source: Source;
}

const CONFIG = (repo: string, note?: string) => (note ? unverified(HF(repo), READ, note) : src(HF(repo), READ));
const REMEMBERED = "not re-read this session: the figure as commonly published; check config.json";

export const LORA_MODEL_SHAPES: Readonly<Record<string, LoraModelShape>> = {
  "qwen2.5-coder-32b": {
    hiddenSize: 5120,
    intermediateSize: 27648,
    vocabSize: 152064,
    lmHeadSlot: false,
    source: CONFIG("Qwen/Qwen2.5-Coder-32B-Instruct"),
  },
  "qwen2.5-coder-14b": {
    hiddenSize: 5120,
    intermediateSize: 13824,
    vocabSize: 152064,
    lmHeadSlot: false,
    source: CONFIG("Qwen/Qwen2.5-Coder-14B-Instruct", REMEMBERED),
  },
  "qwen2.5-coder-7b": {
    hiddenSize: 3584,
    intermediateSize: 18944,
    vocabSize: 152064,
    lmHeadSlot: false,
    source: CONFIG("Qwen/Qwen2.5-Coder-7B-Instruct"),
  },
  "qwen2.5-coder-3b": {
    hiddenSize: 2048,
    intermediateSize: 11008,
    vocabSize: 151936,
    lmHeadSlot: false,
    source: CONFIG("Qwen/Qwen2.5-Coder-3B-Instruct"),
  },
  "qwen2.5-coder-1.5b": {
    hiddenSize: 1536,
    intermediateSize: 8960,
    vocabSize: 151936,
    lmHeadSlot: false,
    source: CONFIG("Qwen/Qwen2.5-Coder-1.5B-Instruct", REMEMBERED),
  },
  "codellama-34b": {
    hiddenSize: 8192,
    intermediateSize: 22016,
    vocabSize: 32000,
    lmHeadSlot: true,
    source: CONFIG("codellama/CodeLlama-34b-Instruct-hf", REMEMBERED),
  },
  "codellama-13b": {
    hiddenSize: 5120,
    intermediateSize: 13824,
    vocabSize: 32016,
    lmHeadSlot: true,
    source: CONFIG("codellama/CodeLlama-13b-Instruct-hf", REMEMBERED),
  },
};

/**
 * Models the hub refuses to serve adapters for, with the reason. DeepSeek-V3's LoRA goes through
 * its fused-MoE experts, whose FP8 kernel vLLM picks at start-up; several of those kernels refuse
 * LoRA, and no configuration of it has been tried here.
 */
export const LORA_UNSUPPORTED_MODELS: Readonly<Record<string, string>> = {
  "deepseek-v3": `vLLM 0.24 applies LoRA to DeepSeek-V3's mixture-of-experts layers only through fused-MoE kernels that support it (vllm/lora/layers/fused_moe.py refuses monolithic kernels; the FlashInfer CUTLASS MoE raises 'LoRA is not supported'), and which kernel its FP8 experts get is decided at start-up; the hub has no tested configuration for it`,
};
