import type { GpuSize } from "./catalogue/droplets";
import { LORA_MODEL_SHAPES, LORA_UNSUPPORTED_MODELS, LoraModelShape, VLLM_LORA_RANKS } from "./catalogue/lora";
import type { GqaAttention, ModelEntry } from "./catalogue/models";
import { problem, Problem, Warning } from "./problems";
import type { Quantization } from "./settings";

/**
 * LoRA adapters served by the coder's vLLM next to the base model. A stack lists them in
 * `llmLoraAdapters` as `<name>=<source>@<rank>`:
 * - `hf:<owner>/<repo>`: a PEFT adapter on Hugging Face, downloaded by vLLM into the model cache;
 * - `volume:adapters/<dir>`: a PEFT adapter on the model-cache volume (where `hub finetune add` puts one).
 * Clients select one with `model: coder-<name>`; `coder` stays the base model.
 */
export const ADAPTER_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;
const HF_REPO = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const VOLUME_PATH = /^adapters\/[a-z0-9][a-z0-9._-]{0,63}$/;
/** Where the model-cache volume's adapters directory appears inside the coder's container. */
export const ADAPTERS_CONTAINER_DIR = "/adapters";
export const ADAPTERS_VOLUME_DIR = "adapters";

export type AdapterSource =
  | { readonly kind: "hf"; readonly repo: string }
  | { readonly kind: "volume"; readonly path: string };

export interface LoraAdapter {
  readonly name: string;
  /** What clients send as `model`. */
  readonly servedName: string;
  readonly source: AdapterSource;
  readonly rank: number;
}

export const servedAdapterName = (coderName: string, adapter: string): string => `${coderName}-${adapter}`;

export function formatAdapterEntry(a: {
  readonly name: string;
  readonly source: AdapterSource;
  readonly rank: number;
}): string {
  return `${a.name}=${a.source.kind === "hf" ? `hf:${a.source.repo}` : `volume:${a.source.path}`}@${a.rank}`;
}

const ENTRY_HELP =
  "write <name>=hf:<owner>/<repo>@<rank> or <name>=volume:adapters/<dir>@<rank>, e.g. myteam=volume:adapters/myteam@16";

/** One `llmLoraAdapters` item, or why it cannot be one. */
export function parseAdapterEntry(
  text: string,
  coderName: string,
): { ok: true; adapter: LoraAdapter } | { ok: false; why: string } {
  const m = /^([^=]*)=(hf|volume):([^@]*)@(.*)$/.exec(text);
  if (!m) return { ok: false, why: `is not an adapter entry: ${ENTRY_HELP}` };
  const [, name, kind, where, rankText] = m;
  if (!ADAPTER_NAME.test(name))
    return {
      ok: false,
      why: `has the name ${JSON.stringify(name)}: a name is 1-40 lower-case letters, digits and inner hyphens (it becomes the model name ${coderName}-<name>)`,
    };
  if (kind === "hf" && !HF_REPO.test(where))
    return { ok: false, why: `has the source hf:${where}, which is not a Hugging Face repo id (<owner>/<repo>)` };
  if (kind === "volume" && !VOLUME_PATH.test(where))
    return {
      ok: false,
      why: `has the source volume:${where}; a volume adapter lives in one directory under adapters/ (e.g. volume:adapters/${name})`,
    };
  if (!/^\d{1,4}$/.test(rankText) || Number(rankText) < 1)
    return {
      ok: false,
      why: `has the rank ${JSON.stringify(rankText)}; the rank is the adapter's r (adapter_config.json), a whole number such as 8, 16 or 64`,
    };
  const source: AdapterSource = kind === "hf" ? { kind: "hf", repo: where } : { kind: "volume", path: where };
  return {
    ok: true,
    adapter: { name, servedName: servedAdapterName(coderName, name), source, rank: Number(rankText) },
  };
}

/** The smallest --max-lora-rank vLLM accepts that holds `rank`, or undefined above 512. */
export function vllmMaxLoraRank(rank: number): number | undefined {
  return VLLM_LORA_RANKS.find((r) => r >= rank);
}

/**
 * GPU memory the LoRA slots take on one GPU, bytes. vLLM preallocates, for every slot
 * (--max-loras) and every decoder layer, lora_a (max_rank x input) and lora_b (output x max_rank)
 * for each projection it supports, whichever the adapters target (vllm/lora/layers/*.py
 * create_lora_weights). Column-parallel layers (q/k/v, gate/up) keep lora_a whole and split
 * lora_b's output over the tensor-parallel ranks; row-parallel ones (o, down) split lora_a's
 * input and keep lora_b whole. Per layer and per unit of rank, with hidden H, query width Q,
 * key/value width K each and MLP width I:
 *   qkv: 3H + (Q + 2K)/tp,  o: Q/tp + H,  gate_up: 2H + 2I/tp,  down: I/tp + H
 * For Qwen2.5-32B (H 5120, Q 5120, K 1024, I 27648, 64 layers) at tp 1: 131,072 elements x
 * 2 bytes = 256 KiB a layer, 16 MiB per rank per slot (FACTS.md "about 16 MiB"). Models whose
 * lm_head takes LoRA (Llama) add one (H + vocab/tp) row per rank.
 */
export function loraSlotBytesPerGpu(
  shape: LoraModelShape,
  attention: GqaAttention,
  maxLoras: number,
  maxRank: number,
  tensorParallel: number,
  dtypeBytes = 2,
): number {
  const H = shape.hiddenSize;
  const Q = attention.attentionHeads * attention.headDim;
  const K = attention.kvHeads * attention.headDim;
  const I = shape.intermediateSize;
  const tp = tensorParallel;
  const perLayer = 3 * H + (Q + 2 * K) / tp + (Q / tp + H) + (2 * H + (2 * I) / tp) + (I / tp + H);
  const lmHead = shape.lmHeadSlot ? H + shape.vocabSize / tp : 0;
  return maxLoras * maxRank * dtypeBytes * (attention.layers * perLayer + lmHead);
}

export interface LoraPlan {
  readonly adapters: readonly LoraAdapter[];
  /** --max-loras: adapters in one batch. */
  readonly maxLoras: number;
  /** --max-lora-rank: the smallest allowed value that holds every adapter's rank. */
  readonly maxRank: number;
  /** --max-cpu-loras: every adapter stays in host memory once loaded. */
  readonly maxCpuLoras: number;
  /** GPU memory of the slots on each GPU, GB (taken from what the KV cache would get). */
  readonly slotGBPerGpu: number;
}

export interface LoraInput {
  readonly entries: readonly string[];
  readonly maxLoras: number;
  readonly model: ModelEntry;
  readonly quantization: Quantization;
  readonly gpu: GpuSize;
  readonly tensorParallel: number;
  readonly coderName: string;
}

/** The adapters as vLLM will serve them, or every reason it would not. */
export function resolveLora(input: LoraInput): { plan?: LoraPlan; problems: Problem[]; warnings: Warning[] } {
  const problems: Problem[] = [];
  const warnings: Warning[] = [];
  if (input.entries.length === 0) return { problems, warnings };
  const adapters: LoraAdapter[] = [];
  const names = new Set<string>();
  for (const entry of input.entries) {
    const parsed = parseAdapterEntry(entry, input.coderName);
    if (!parsed.ok) {
      problems.push(problem("llmLoraAdapters", entry, parsed.why, "Fix the entry, or remove it."));
      continue;
    }
    if (names.has(parsed.adapter.name)) {
      problems.push(
        problem(
          "llmLoraAdapters",
          entry,
          `names the adapter ${parsed.adapter.name} twice; clients could not tell them apart.`,
          "Give each adapter its own name.",
        ),
      );
      continue;
    }
    names.add(parsed.adapter.name);
    const rank = parsed.adapter.rank;
    if (vllmMaxLoraRank(rank) === undefined)
      problems.push(
        problem(
          "llmLoraAdapters",
          entry,
          `has rank ${rank}; vLLM 0.24 serves ranks up to ${VLLM_LORA_RANKS[VLLM_LORA_RANKS.length - 1]} (--max-lora-rank is one of ${VLLM_LORA_RANKS.join(", ")}).`,
          "Train the adapter with a smaller r (8 to 64 is usual).",
        ),
      );
    else adapters.push(parsed.adapter);
  }
  const unsupported = LORA_UNSUPPORTED_MODELS[input.model.id];
  if (unsupported)
    problems.push(
      problem(
        ["llmLoraAdapters", "llmModel"],
        input.model.id,
        `${unsupported}.`,
        "Serve adapters with a Qwen2.5-Coder or CodeLlama model, or remove llmLoraAdapters.",
      ),
    );
  const shape = Object.hasOwn(LORA_MODEL_SHAPES, input.model.id) ? LORA_MODEL_SHAPES[input.model.id] : undefined;
  if (!unsupported && (!shape || input.model.attention.kind !== "gqa"))
    problems.push(
      problem(
        ["llmLoraAdapters", "llmModel"],
        input.model.id,
        "has no LoRA shape in the catalogue (stacks/catalogue/lora.ts), so the slots' memory cannot be counted.",
        "Use a Qwen2.5-Coder or CodeLlama model, or add the model's shape with its source.",
      ),
    );
  if (input.quantization === "8bit" && input.model.nativeDtype !== "fp8") {
    warnings.push({
      keys: ["llmLoraAdapters", "llmQuantization"],
      message:
        "LoRA on vLLM's online FP8 has no dedicated upstream test (AWQ, GPTQ and bitsandbytes do; nothing in vLLM 0.24 blocks it): try the adapter with `npm run smoke` before relying on it.",
    });
  }
  if (input.quantization === "4bit" && input.model.awq && input.gpu.vendor === "amd") {
    warnings.push({
      keys: ["llmLoraAdapters", "llmQuantization", "gpuSize"],
      message:
        "vLLM's LoRA tests skip AWQ on ROCm ('AWQ quantization is currently not supported in ROCm', tests/lora/test_quant_model.py): the adapter may not load on this AMD GPU; 8bit or none is the tested path.",
    });
  }
  if (input.maxLoras > input.entries.length) {
    warnings.push({
      keys: ["llmMaxLoras"],
      message: `is ${input.maxLoras} but only ${input.entries.length} adapter(s) are listed; the plan reserves slots for ${input.entries.length}.`,
    });
  }
  if (problems.length > 0 || !shape || input.model.attention.kind !== "gqa") return { problems, warnings };
  const maxLoras = Math.max(1, Math.min(input.maxLoras, adapters.length));
  const maxRank = vllmMaxLoraRank(Math.max(...adapters.map((a) => a.rank)))!;
  const slotGBPerGpu = loraSlotBytesPerGpu(shape, input.model.attention, maxLoras, maxRank, input.tensorParallel) / 1e9;
  return {
    plan: { adapters, maxLoras, maxRank, maxCpuLoras: Math.max(maxLoras, adapters.length), slotGBPerGpu },
    problems,
    warnings,
  };
}
