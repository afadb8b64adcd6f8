import type { DeepSeekOcr, VllmCoder } from "../stacks/hub-config";
import { CODER_SERVED_NAME, OCR_SERVED_NAME } from "../stacks/hub-config";
import { GPU_SERVICE_PORTS } from "./ports";
import { ADAPTERS_CONTAINER_DIR, LoraAdapter, LoraPlan } from "../stacks/lora";

/** vLLM release whose argument list is in ../shared/reference/vllm/ (args-0.24.0.json). */
export const VLLM_VERSION = "0.24.0";
export const VLLM_PORT = GPU_SERVICE_PORTS.coder;
export const OCR_VLLM_PORT = GPU_SERVICE_PORTS.ocr;

/** The recipe's per-request n-gram logits processor that stops DeepSeek-OCR repeating itself. */
export const DEEPSEEK_OCR_LOGITS_PROCESSOR = "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor";

const share = (fraction: number) => fraction.toFixed(2);

/**
 * Arguments after `vllm serve` for the coder: the model is positional (vLLM 0.11 rejects
 * --model, 0.24 deprecates it); the API key reaches vLLM as VLLM_API_KEY, never as an argument.
 */
export function coderServeArgs(coder: VllmCoder, port = VLLM_PORT): string[] {
  const args = [
    coder.weights.modelId,
    "--served-model-name",
    CODER_SERVED_NAME,
    "--port",
    String(port),
    "--max-model-len",
    String(coder.maxContext),
    "--gpu-memory-utilization",
    share(coder.share),
    "--tensor-parallel-size",
    String(coder.tensorParallel),
    "--enable-prefix-caching",
    ...coder.weights.flags,
    ...coder.loader.flags,
  ];
  // Mixture-of-experts over several GPUs: shard experts instead of splitting every expert.
  if (coder.model.attention.kind === "mla" && coder.tensorParallel > 1) args.push("--enable-expert-parallel");
  if (coder.lora) args.push(...loraArgs(coder.lora));
  return args;
}

/** Where vLLM finds an adapter: a Hugging Face repo id (downloaded into HF_HOME) or its directory on the volume. */
export const adapterPath = (a: LoraAdapter): string =>
  a.source.kind === "hf" ? a.source.repo : `${ADAPTERS_CONTAINER_DIR}/${a.source.path.replace(/^adapters\//, "")}`;

/**
 * The LoRA flags, all in vLLM 0.24.0's argument list. Every adapter goes into one --lora-modules
 * (its parser action replaces the list on each use), as JSON so `base_model_name` makes the
 * models list name `coder` as each adapter's parent (vllm/entrypoints/openai/cli_args.py
 * LoRAParserAction, models/serving.py show_available_models).
 */
export function loraArgs(lora: LoraPlan): string[] {
  return [
    "--enable-lora",
    "--max-loras",
    String(lora.maxLoras),
    "--max-lora-rank",
    String(lora.maxRank),
    "--max-cpu-loras",
    String(lora.maxCpuLoras),
    "--lora-modules",
    ...lora.adapters.map((a) =>
      JSON.stringify({ name: a.servedName, path: adapterPath(a), base_model_name: CODER_SERVED_NAME }),
    ),
  ];
}

/** DeepSeek-OCR with the vllm-project/recipes flags. */
export function ocrServeArgs(ocr: DeepSeekOcr, port = OCR_VLLM_PORT): string[] {
  return [
    ocr.weights.modelId,
    "--served-model-name",
    OCR_SERVED_NAME,
    "--port",
    String(port),
    "--max-model-len",
    String(ocr.maxContext),
    "--gpu-memory-utilization",
    share(ocr.share),
    "--logits-processors",
    DEEPSEEK_OCR_LOGITS_PROCESSOR,
    "--no-enable-prefix-caching",
    "--mm-processor-cache-gb",
    "0",
  ];
}

/**
 * What every DeepSeek-OCR request must carry, from the vLLM recipe's online example
 * (vllm-project/recipes DeepSeek/DeepSeek-OCR.md, read 2026-12-01). NGramPerReqLogitsProcessor
 * acts only on requests whose `vllm_xargs` name `ngram_size`; without them the model may repeat
 * itself to max_tokens. 128821/128822 are `<td>` and `</td>`, which tables legitimately repeat.
 * The gateway cannot add them (it never rewrites bodies): clients send them (docs/api.md, docs/smoke.md).
 */
export const DEEPSEEK_OCR_REQUEST_EXTRAS = {
  skip_special_tokens: false,
  vllm_xargs: { ngram_size: 30, window_size: 90, whitelist_token_ids: [128821, 128822] },
} as const;

/** The recipe's plain prompt: DeepSeek-OCR reads better with it than with instructions. */
export const DEEPSEEK_OCR_PROMPT = "Free OCR.";
