import type { GqaAttention } from "./models";
import { HF, Source, src, unverified } from "./sources";

/**
 * Text-embedding models the hub can serve at /v1/embeddings: llama.cpp's server in embedding mode
 * on the CPU node, from one GGUF file. The served name is the catalogue id, so an index built
 * with one model cannot be queried with another by accident: a model change makes old clients
 * fail with 404 model_not_found instead of silently comparing vectors from two spaces.
 */
export interface EmbeddingModelEntry {
  readonly id: string;
  readonly displayName: string;
  /** `-hf <repo>:<quant>`, as llama.cpp downloads it into LLAMA_CACHE. */
  readonly gguf: { readonly repo: string; readonly quant: string; readonly sizeGB: number; readonly source: Source };
  readonly licence: string;
  /** Length of the vectors the model produces. */
  readonly dimensions: number;
  /**
   * Matryoshka (MRL) training: the first n components are an embedding of their own once
   * re-normalised, so `dimensions` may ask for any n from `min` to `dimensions`. Absent: the
   * vectors must be used whole, and a request naming `dimensions` is refused.
   */
  readonly matryoshka?: { readonly min: number; readonly source: Source };
  /** Longest input the model was trained for, tokens. */
  readonly maxContext: number;
  /** What llama.cpp's --pooling is set to: how one vector is made from the token states. */
  readonly pooling: "last" | "mean" | "cls";
  /**
   * The end-of-text token the model's own tokenizer appends (last-token pooling reads its state).
   * The hub appends it itself and tells llama.cpp not to (--override-kv
   * tokenizer.ggml.add_eos_token=bool:false), so there is exactly one whatever the GGUF says.
   */
  readonly endOfText?: { readonly text: string; readonly tokenId: number; readonly source: Source };
  /** Token ids run from 0 to vocabSize - 1: a token-array input outside that range is refused. */
  readonly vocabSize: number;
  /** For the KV cache llama.cpp keeps per slot (a causal decoder; encoders keep none). */
  readonly attention: GqaAttention;
  /** Published retrieval quality, for the choice of default. */
  readonly quality: string;
  readonly sources: { readonly shape: Source; readonly quality: Source };
}

const READ = "2026-12-07";

export const EMBEDDING_MODELS: readonly EmbeddingModelEntry[] = [
  {
    id: "qwen3-embedding-0.6b",
    displayName: "Qwen3-Embedding-0.6B Q8_0",
    gguf: {
      repo: "Qwen/Qwen3-Embedding-0.6B-GGUF",
      quant: "Q8_0",
      // The same file is listed at 639 MB by Ollama's library (qwen3-embedding:0.6b-q8_0); F16 1.2 GB.
      sizeGB: 0.639,
      source: unverified(
        `${HF("Qwen/Qwen3-Embedding-0.6B-GGUF", "")}; ollama.com/library/qwen3-embedding:0.6b-q8_0 (639 MB)`,
        READ,
        "size read from a listing of the same Q8_0 file, not from Hugging Face itself",
      ),
    },
    licence: "Apache 2.0",
    dimensions: 1024,
    matryoshka: {
      min: 32,
      source: src(
        `${HF("Qwen/Qwen3-Embedding-0.6B", "README.md")} (MRL support: yes; embedding dimension up to 1024, user-defined 32-1024)`,
        READ,
      ),
    },
    maxContext: 32768,
    pooling: "last",
    endOfText: {
      text: "<|endoftext|>",
      tokenId: 151643,
      source: unverified(
        "the model's tokenizer post-processor appends <|endoftext|> (TemplateProcessing single); GGUFs converted before llama.cpp aa0ef5c5 (2025-06-21, 'gguf-py : fix Qwen3-Embedding eos token') name another EOS, so the hub appends it itself",
        READ,
        "token id from the Qwen2/Qwen3 vocabulary (<|endoftext|> = 151643)",
      ),
    },
    vocabSize: 151669,
    attention: { kind: "gqa", layers: 28, attentionHeads: 16, kvHeads: 8, headDim: 128 },
    quality:
      "MMTEB (multilingual) mean 64.33, retrieval 64.64; MTEB English v2 mean 70.70, retrieval 61.83; best at or under 1B parameters on both (multilingual-e5-large-instruct 63.22 / 65.53, BGE-M3 59.56, EmbeddingGemma-300M 61.1 / 69.7 with gated Gemma terms and a 2K context); trained on 100+ natural and programming languages for code retrieval",
    sources: {
      shape: src(
        `${HF("Qwen/Qwen3-Embedding-0.6B")} (28 layers, hidden 1024, 16 heads, 8 KV heads, vocabulary 151669, last-token pooling, 32K context)`,
        READ,
      ),
      quality: unverified(
        "MTEB leaderboard figures as tabled on the Qwen3-Embedding-0.6B model card (compared models' scores taken from the leaderboard on 2025-05-24) and in the EmbeddingGemma paper (arXiv 2509.20354); the MTEB-Code figure of the 0.6B was not in the copies read",
        READ,
        "read in public copies of the model cards, not on the live leaderboard",
      ),
    },
  },
];

export const findEmbeddingModel = (id: string): EmbeddingModelEntry | undefined =>
  EMBEDDING_MODELS.find((m) => m.id === id);

/**
 * Longest input served, tokens (the appended end-of-text token included): one llama.cpp slot of
 * this context, and a batch as large, since an embedding input must fit one batch. Retrieval
 * chunks are a few hundred tokens; 2048 keeps the KV cache at 224 MiB where the CPU node's RAM is
 * tight (OpenAI's own models take 8191).
 */
export const SERVED_INPUT_TOKENS = 2048;
/** OpenAI's limit on inputs per request (API reference, embeddings.create `input`). */
export const MAX_INPUTS_PER_REQUEST = 2048;

/** llama.cpp compute buffers of a sub-1B embedder at a 2048-token batch (with flash attention), and the server itself. */
export const EMBEDDER_RUNTIME_GIB = 0.25;
/**
 * The embeddings front (programs/embeddings/), one request shaped at a time, V8's heap capped at
 * EMBEDDINGS_FRONT_HEAP_MIB: 51 MiB RSS idle, at most 184 MiB through requests of 2048 inputs
 * (2048 x 1024 floats, float or base64 answers), measured on Node 20 (2026-12-07). Its
 * container's limit is the same 256 MiB.
 */
export const EMBEDDINGS_ROUTER_RAM_GIB = 0.25;
/** Without a cap V8 collects lazily and the same requests reach 265 MiB of RSS. */
export const EMBEDDINGS_FRONT_HEAP_MIB = 128;
export const EMBEDDER_RAM_SOURCE = unverified(
  "our estimate: GGUF file + f16 KV cache for one slot at the served context + compute buffers",
  READ,
  "unmeasured: no weights can be fetched here; the first deploy's `docker stats` replaces it",
);
