import type { DeepSeekOcr, VllmCoder } from "../stacks/hub-config";
import { CODER_SERVED_NAME, OCR_SERVED_NAME } from "../stacks/hub-config";
import { GPU_SERVICE_PORTS } from "./ports";

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
    "--served-model-name", CODER_SERVED_NAME,
    "--port", String(port),
    "--max-model-len", String(coder.maxContext),
    "--gpu-memory-utilization", share(coder.share),
    "--tensor-parallel-size", String(coder.tensorParallel),
    "--enable-prefix-caching",
    ...coder.weights.flags,
  ];
  // Mixture-of-experts over several GPUs: shard experts instead of splitting every expert.
  if (coder.model.attention.kind === "mla" && coder.tensorParallel > 1) args.push("--enable-expert-parallel");
  return args;
}

/** DeepSeek-OCR with the vllm-project/recipes flags. */
export function ocrServeArgs(ocr: DeepSeekOcr, port = OCR_VLLM_PORT): string[] {
  return [
    ocr.weights.modelId,
    "--served-model-name", OCR_SERVED_NAME,
    "--port", String(port),
    "--max-model-len", String(ocr.maxContext),
    "--gpu-memory-utilization", share(ocr.share),
    "--logits-processors", DEEPSEEK_OCR_LOGITS_PROCESSOR,
    "--no-enable-prefix-caching",
    "--mm-processor-cache-gb", "0",
  ];
}
