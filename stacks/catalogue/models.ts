import { HF, Source, src, unverified } from "./sources";

/** Grouped-query (or multi-head) attention: K and V per KV head per layer. */
export interface GqaAttention {
  readonly kind: "gqa";
  readonly layers: number;
  readonly attentionHeads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** DeepSeek multi-head latent attention: one compressed latent per layer, replicated on every TP rank. */
export interface MlaAttention {
  readonly kind: "mla";
  readonly layers: number;
  readonly attentionHeads: number;
  readonly kvLoraRank: number;
  readonly qkRopeHeadDim: number;
}

export type Attention = GqaAttention | MlaAttention;

export interface PrequantizedCheckpoint {
  readonly repo: string;
  readonly weightsGB: number;
  readonly source: Source;
}

/** llama.cpp GGUF builds, addressed as `-hf <repo>:<quant>` so split files are handled by llama.cpp. */
export interface GgufBuilds {
  readonly repo: string;
  /** File size in GB per quant tag. */
  readonly q4_k_m: number;
  readonly q8_0: number;
  readonly source: Source;
}

export interface ModelEntry {
  /** Catalogue id used in stack config (`llmModel`). */
  readonly id: string;
  readonly displayName: string;
  readonly role: "coder" | "ocr";
  /** Hugging Face repo of the full-precision (native) checkpoint. */
  readonly repo: string;
  readonly paramsB: number;
  readonly nativeDtype: "bfloat16" | "fp8";
  /** Native checkpoint size on disk and in GPU memory, GB. */
  readonly weightsGB: number;
  /** `max_position_embeddings` of the checkpoint's config. */
  readonly maxContext: number;
  readonly attention: Attention;
  readonly awq?: PrequantizedCheckpoint;
  /**
   * A pre-quantized FP8 (W8A8, compressed-tensors) checkpoint: what `8bit` loads on NVIDIA instead
   * of the BF16 one quantized online, so a wake reads half the bytes from the volume.
   */
  readonly fp8?: PrequantizedCheckpoint;
  readonly gguf?: GgufBuilds;
  /** Serving needs NVIDIA CUDA (no ROCm or CPU path known). */
  readonly cudaOnly?: boolean;
  /** Image tokens and a vision encoder: more activation memory. */
  readonly vision?: boolean;
  readonly sources: { readonly shape: Source; readonly weights: Source };
}

const READ = "2026-11-26";
const QWEN_BLOG = "qwenlm.github.io/blog/qwen2.5-coder-family (sizes, GQA layout)";

const qwen = (
  size: string,
  paramsB: number,
  weightsGB: number,
  layers: number,
  attentionHeads: number,
  kvHeads: number,
  awqGB: number | undefined,
  q4: number,
  q8: number,
  fp8?: PrequantizedCheckpoint,
): ModelEntry => {
  const repo = `Qwen/Qwen2.5-Coder-${size}-Instruct`;
  return {
    id: `qwen2.5-coder-${size.toLowerCase()}`,
    displayName: `Qwen2.5-Coder-${size}-Instruct`,
    role: "coder",
    repo,
    paramsB,
    nativeDtype: "bfloat16",
    weightsGB,
    maxContext: 32768,
    attention: { kind: "gqa", layers, attentionHeads, kvHeads, headDim: 128 },
    awq:
      awqGB === undefined
        ? undefined
        : {
            repo: `${repo}-AWQ`,
            weightsGB: awqGB,
            source: unverified(HF(`${repo}-AWQ`, "model.safetensors.index.json"), READ, "size rounded"),
          },
    gguf: {
      repo: `${repo}-GGUF`,
      q4_k_m: q4,
      q8_0: q8,
      source: unverified(HF(`${repo}-GGUF`, ""), READ, "file sizes rounded"),
    },
    ...(fp8 ? { fp8 } : {}),
    sources: {
      shape: src(`${HF(repo)}; ${QWEN_BLOG}`, READ),
      weights: unverified(HF(repo, "model.safetensors.index.json"), READ, "BF16 = 2 bytes x parameters"),
    },
  };
};

export const MODELS: readonly ModelEntry[] = [
  qwen("32B", 32.8, 65.5, 64, 40, 8, 19.3, 19.9, 34.8, {
    repo: "RedHatAI/Qwen2.5-Coder-32B-Instruct-FP8-dynamic",
    weightsGB: 34.3,
    // Red Hat's llm-compressor FP8_DYNAMIC builds keep embeddings and lm_head in BF16, hence above half of 65.5 GB.
    source: unverified(
      "repo id as pinned by third-party deployments (RHOAI-Toolkit download-model.sh and model tables, read 2026-12-07); size from the sibling RedHatAI/Qwen2.5-Coder-32B-FP8-dynamic tree (34.3 GB, 7 safetensors shards)",
      "2026-12-07",
      "the Instruct repo's own file list was not read",
    ),
  }),
  qwen("14B", 14.7, 29.5, 48, 40, 8, 10.0, 9.0, 15.7),
  qwen("7B", 7.6, 15.2, 28, 28, 4, 5.6, 4.7, 8.1),
  qwen("3B", 3.1, 6.2, 36, 16, 2, undefined, 2.1, 3.6),
  qwen("1.5B", 1.5, 3.1, 28, 12, 2, undefined, 1.1, 1.9),
  {
    id: "codellama-34b",
    displayName: "CodeLlama-34b-Instruct",
    role: "coder",
    repo: "codellama/CodeLlama-34b-Instruct-hf",
    paramsB: 33.7,
    nativeDtype: "bfloat16",
    weightsGB: 67.5,
    maxContext: 16384,
    attention: { kind: "gqa", layers: 48, attentionHeads: 64, kvHeads: 8, headDim: 128 },
    awq: {
      repo: "TheBloke/CodeLlama-34B-Instruct-AWQ",
      weightsGB: 18.3,
      source: unverified(HF("TheBloke/CodeLlama-34B-Instruct-AWQ", ""), READ, "third-party AWQ build"),
    },
    gguf: {
      repo: "TheBloke/CodeLlama-34B-Instruct-GGUF",
      q4_k_m: 20.2,
      q8_0: 35.9,
      source: unverified(HF("TheBloke/CodeLlama-34B-Instruct-GGUF", ""), READ, "third-party GGUF build"),
    },
    sources: {
      shape: src(HF("codellama/CodeLlama-34b-Instruct-hf"), READ),
      weights: src("shared/FACTS.md: CodeLlama-34B ~ 68 GB BF16", READ),
    },
  },
  {
    id: "codellama-13b",
    displayName: "CodeLlama-13b-Instruct",
    role: "coder",
    repo: "codellama/CodeLlama-13b-Instruct-hf",
    paramsB: 13.0,
    nativeDtype: "bfloat16",
    weightsGB: 26.0,
    maxContext: 16384,
    attention: { kind: "gqa", layers: 40, attentionHeads: 40, kvHeads: 40, headDim: 128 },
    awq: {
      repo: "TheBloke/CodeLlama-13B-Instruct-AWQ",
      weightsGB: 7.3,
      source: unverified(HF("TheBloke/CodeLlama-13B-Instruct-AWQ", ""), READ, "third-party AWQ build"),
    },
    gguf: {
      repo: "TheBloke/CodeLlama-13B-Instruct-GGUF",
      q4_k_m: 7.9,
      q8_0: 13.8,
      source: unverified(HF("TheBloke/CodeLlama-13B-Instruct-GGUF", ""), READ, "third-party GGUF build"),
    },
    sources: {
      shape: src(HF("codellama/CodeLlama-13b-Instruct-hf"), READ),
      weights: unverified(HF("codellama/CodeLlama-13b-Instruct-hf", ""), READ, "BF16 = 2 bytes x parameters"),
    },
  },
  {
    id: "deepseek-v3",
    displayName: "DeepSeek-V3 (671B MoE, 37B active)",
    role: "coder",
    repo: "deepseek-ai/DeepSeek-V3",
    paramsB: 671,
    nativeDtype: "fp8",
    weightsGB: 690,
    maxContext: 163840,
    attention: { kind: "mla", layers: 61, attentionHeads: 128, kvLoraRank: 512, qkRopeHeadDim: 64 },
    sources: {
      shape: src(HF("deepseek-ai/DeepSeek-V3"), READ),
      weights: src("shared/FACTS.md: FP8 weights only, ~690 GB", READ),
    },
  },
  {
    id: "deepseek-ocr",
    displayName: "DeepSeek-OCR",
    role: "ocr",
    repo: "deepseek-ai/DeepSeek-OCR",
    paramsB: 3.3,
    nativeDtype: "bfloat16",
    weightsGB: 6.7,
    maxContext: 8192,
    attention: { kind: "gqa", layers: 12, attentionHeads: 10, kvHeads: 10, headDim: 128 },
    cudaOnly: true,
    vision: true,
    sources: {
      shape: unverified(`${HF("deepseek-ai/DeepSeek-OCR")} language_config (DeepSeek-V2 MoE without MLA)`, READ),
      weights: unverified(HF("deepseek-ai/DeepSeek-OCR", "model-00001-of-000001.safetensors"), READ),
    },
  },
];

export function findModel(id: string): ModelEntry | undefined {
  return MODELS.find((m) => m.id === id);
}

export const coderModelIds = (): string[] => MODELS.filter((m) => m.role === "coder").map((m) => m.id);

/**
 * Resident memory of the CPU services, GiB. Estimates: the model file plus the runtime, rounded up.
 * No source publishes these; they are our planning figures until a measured run replaces them.
 */
export interface CpuServiceRam {
  readonly ramGiB: number;
  readonly source: Source;
}

const ESTIMATE = (note: string) => unverified("our estimate: model file + runtime, rounded up", READ, note);

export const WHISPER_MODELS: Readonly<Record<string, CpuServiceRam & { readonly repo: string }>> = {
  tiny: { repo: "Systran/faster-whisper-tiny", ramGiB: 0.5, source: ESTIMATE("int8, 39M parameters") },
  base: { repo: "Systran/faster-whisper-base", ramGiB: 0.75, source: ESTIMATE("int8, 74M parameters") },
  small: { repo: "Systran/faster-whisper-small", ramGiB: 1.5, source: ESTIMATE("int8, 244M parameters") },
  medium: { repo: "Systran/faster-whisper-medium", ramGiB: 3, source: ESTIMATE("int8, 769M parameters") },
  "large-v3": { repo: "Systran/faster-whisper-large-v3", ramGiB: 5, source: ESTIMATE("int8, 1550M parameters") },
};

/** The licence a Coqui model ships under, as its own model list states it. */
export interface TtsLicense {
  readonly name: string;
  readonly url: string;
  /**
   * Coqui asks for agreement with `input()` before downloading it (TTS/utils/manage.py
   * ModelManager.tos_agreed / ask_tos) unless COQUI_TOS_AGREED=1: in a container, with no TTY,
   * the server would die at start. The stack needs the user's explicit agreement instead.
   */
  readonly requiresAgreement: boolean;
  readonly source: Source;
}

export interface TtsModelEntry extends CpuServiceRam {
  readonly license: TtsLicense;
}

// idiap/coqui-ai-TTS v0.27.2 (the pinned v0.27.3 was not stored; its release changed PyTorch 2.9
// support only, PR #525): TTS/.models.json "license" and "tos_required" per model.
const COQUI_MODELS_JSON = "github.com/idiap/coqui-ai-TTS/blob/v0.27.2/TTS/.models.json";
const TTS_READ = "2026-12-01";
const APACHE_2 = {
  name: "Apache 2.0",
  url: "https://choosealicense.com/licenses/apache-2.0/",
  requiresAgreement: false,
  source: src(COQUI_MODELS_JSON, TTS_READ),
} as const;

export const TTS_MODELS: Readonly<Record<string, TtsModelEntry>> = {
  "tts_models/en/ljspeech/tacotron2-DDC": {
    ramGiB: 2,
    source: ESTIMATE("Tacotron2 + HiFi-GAN vocoder in PyTorch"),
    license: APACHE_2,
  },
  "tts_models/en/ljspeech/vits": { ramGiB: 1.5, source: ESTIMATE("VITS, single model"), license: APACHE_2 },
  "tts_models/multilingual/multi-dataset/xtts_v2": {
    ramGiB: 6,
    source: ESTIMATE("XTTS v2, 1.8 GB checkpoint; slow on CPU"),
    license: {
      name: "Coqui Public Model License (CPML): non-commercial use only",
      // coqui.ai no longer exists; the fork moved its links here (idiap/coqui-ai-TTS PR #548, 2026-01-23).
      url: "https://tts-hub.github.io/cpml/",
      requiresAgreement: true,
      source: src(
        `${COQUI_MODELS_JSON} ("license": "CPML", "tos_required": true); TTS/utils/manage.py ask_tos`,
        TTS_READ,
      ),
    },
  },
};

export const CPU_SERVICE_RAM = {
  gateway: { ramGiB: 0.25, source: ESTIMATE("Traefik") },
  gatekeeper: { ramGiB: 0.25, source: ESTIMATE("Node.js API-key gatekeeper with its audit writer") },
  /** The container's memory limit (services/grafana.ts) is the same 512 MiB. */
  grafana: {
    ramGiB: 0.5,
    source: src(
      "grafana.com/docs/grafana/latest/setup-grafana/installation/ (hardware recommendations: minimum 512 MB memory, 1 CPU)",
      "2026-12-02",
    ),
  },
  autoscaler: {
    ramGiB: 0.125,
    source: ESTIMATE(
      "Node.js autoscaling controller: 65 MiB RSS measured after start and a few ticks (bundle run by Node 20.20 on the dev machine, 2026-12-02); its container limit is 128 MiB",
    ),
  },
  docling: { ramGiB: 4, source: ESTIMATE("docling-serve CPU: layout, table and OCR models; image ~4.4 GB") },
  /** Kernel, Docker daemon, sshd, journald. */
  system: { ramGiB: 1, source: ESTIMATE("Ubuntu 24.04 + Docker engine") },
  /** llama.cpp compute buffers on top of weights and KV cache. */
  llamaCppRuntime: { ramGiB: 0.5, source: ESTIMATE("llama.cpp compute buffers") },
  /** The hub's few thousand series (Traefik per router, vLLM histograms) in the head block, plus queries. */
  prometheus: {
    ramGiB: 0.75,
    source: ESTIMATE(
      "Prometheus 3.15 with ~10k active series at a 15 s interval; ~100 MiB idle, head block ~3 KiB a series, headroom for dashboard queries",
    ),
  },
  alertmanager: { ramGiB: 0.125, source: ESTIMATE("Alertmanager 0.34, a handful of alerts; ~30 MiB resident") },
  nodeExporter: {
    ramGiB: 0.0625,
    source: ESTIMATE("node_exporter 1.12 with the default collectors; ~20 MiB resident"),
  },
} as const;
