import type { ChatMessage, TokenCounter } from "./tokens";

/**
 * The training set, checked line by line before any droplet exists. Two JSON Lines formats, the
 * two axolotl reads without a custom prompter (docs/dataset-formats at v0.17.0):
 * - chat: `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`, OpenAI's
 *   messages shape, trained with `type: chat_template` on the assistant turns;
 * - completion: `{"text": "..."}`, trained with `type: completion` on the whole text.
 * Every problem names its line; all are reported at once.
 */
export const DATASET_FORMATS = ["chat", "completion"] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

/**
 * Longest line accepted, bytes. At 3-4 bytes a token, 1 MiB is ~300k tokens: ten times the longest
 * context of any coder here. A line that long is a pasted bundle, a binary or a missing newline.
 */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Problems listed in full; the rest are counted. */
export const MAX_LISTED_PROBLEMS = 50;
/** Fewer examples than this rarely teach an adapter anything. */
export const FEW_EXAMPLES = 20;

const CHAT_ROLES = ["system", "user", "assistant"] as const;

export interface DatasetProblem {
  /** 1-based line number in the file. */
  readonly line: number;
  readonly message: string;
}

export interface DatasetReport {
  readonly format?: DatasetFormat;
  readonly examples: number;
  /** Tokens of every valid example as trained (template and end tokens included). */
  readonly tokens: number;
  readonly longest?: { readonly line: number; readonly tokens: number };
  readonly problems: readonly DatasetProblem[];
  readonly warnings: readonly string[];
  readonly tokenizer: string;
  readonly exactTokens: boolean;
}

export interface DatasetOptions {
  /** @default - from the first line that parses */
  readonly format?: DatasetFormat;
  /** Longest example trained, tokens (axolotl's sequence_len). */
  readonly sequenceLen: number;
  /** The base model's context, for the message. */
  readonly modelContext: number;
  readonly counter: TokenCounter;
  /** @default MAX_LINE_BYTES */
  readonly maxLineBytes?: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const fields = (o: Record<string, unknown>) => Object.keys(o).slice(0, 6).join(", ") || "none";

function chatProblem(o: Record<string, unknown>): { messages: ChatMessage[] } | { why: string } {
  const messages = o.messages;
  if (!Array.isArray(messages))
    return {
      why: `"messages" must be a list of {"role", "content"} objects, not ${messages === null ? "null" : typeof messages}`,
    };
  if (messages.length === 0) return { why: '"messages" is empty' };
  const out: ChatMessage[] = [];
  for (const [i, m] of messages.entries()) {
    const at = `messages[${i}]`;
    if (!isRecord(m)) return { why: `${at} is not an object with "role" and "content"` };
    if (!CHAT_ROLES.includes(m.role as (typeof CHAT_ROLES)[number]))
      return {
        why: `${at}.role is ${JSON.stringify(m.role)}; this check takes ${CHAT_ROLES.join(", ")} (tool calls are not trained here)`,
      };
    if (typeof m.content !== "string")
      return {
        why: `${at}.content must be a string${Array.isArray(m.content) ? " (join the content parts into one string)" : ""}`,
      };
    if (m.role === "system" && i > 0)
      return { why: `${at} is a system message after the first turn; the chat template takes one, first` };
    if (m.role === "assistant" && m.content.trim() === "")
      return { why: `${at} is an empty assistant turn: nothing to learn from it` };
    out.push({ role: m.role as ChatMessage["role"], content: m.content });
  }
  if (!out.some((m) => m.role === "assistant"))
    return { why: "has no assistant turn; training learns the assistant's answers" };
  return { messages: out };
}

/** Splits on \n (a \r before it is dropped), keeping each line's bytes for the UTF-8 check. */
function* lines(bytes: Uint8Array): Generator<{ readonly number: number; readonly bytes: Uint8Array }> {
  let start = 0;
  let number = 1;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      let end = i;
      if (end > start && bytes[end - 1] === 0x0d) end--;
      if (!(i === bytes.length && end === start)) yield { number, bytes: bytes.subarray(start, end) };
      start = i + 1;
      number++;
    }
  }
}

// ignoreBOM keeps a byte-order mark in the text, so it can be reported rather than silently dropped.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function checkDataset(bytes: Uint8Array, options: DatasetOptions): DatasetReport {
  const problems: DatasetProblem[] = [];
  const warnings: string[] = [];
  const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
  let format = options.format;
  let examples = 0;
  let tokens = 0;
  let longest: { line: number; tokens: number } | undefined;
  let blank = 0;
  const seen = new Set<string>();
  let duplicates = 0;
  const report = (): DatasetReport => ({
    format,
    examples,
    tokens,
    longest,
    problems,
    warnings,
    tokenizer: options.counter.name,
    exactTokens: options.counter.exact,
  });

  if (bytes.length === 0) {
    problems.push({ line: 1, message: "the file is empty: give one JSON object a line" });
    return report();
  }
  for (const { number, bytes: raw } of lines(bytes)) {
    if (raw.length > maxLineBytes) {
      problems.push({
        line: number,
        message: `is ${(raw.length / 1024 / 1024).toFixed(1)} MiB, over the ${(maxLineBytes / 1024 / 1024).toFixed(0)} MiB an example may have (no context holds it); split it or leave it out`,
      });
      continue;
    }
    let text: string;
    try {
      text = decoder.decode(raw);
    } catch {
      const bad = raw.findIndex((b) => b >= 0x80);
      problems.push({
        line: number,
        message: `is not UTF-8 (first byte above 0x7f at column ${bad + 1}); save the file as UTF-8`,
      });
      continue;
    }
    if (number === 1 && text.startsWith("\uFEFF")) {
      problems.push({
        line: number,
        message: "starts with a byte-order mark, which JSON Lines readers refuse; save the file as UTF-8 without BOM",
      });
      continue;
    }
    if (text.trim() === "") {
      blank++;
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      problems.push({
        line: number,
        message: `is not JSON (${(err as Error).message.split("\n")[0]}); each line must be one JSON object`,
      });
      continue;
    }
    if (!isRecord(value)) {
      problems.push({
        line: number,
        message: `is ${Array.isArray(value) ? "a list" : typeof value}, not a JSON object`,
      });
      continue;
    }
    const kind: DatasetFormat | undefined = "messages" in value ? "chat" : "text" in value ? "completion" : undefined;
    if (!kind) {
      problems.push({
        line: number,
        message: `has neither "messages" (chat) nor "text" (completion); its fields are ${fields(value)}${"prompt" in value || "completion" in value || "instruction" in value ? ' (convert prompt/completion pairs to {"messages": [user, assistant]})' : ""}`,
      });
      continue;
    }
    format ??= kind;
    if (kind !== format) {
      problems.push({
        line: number,
        message: `is a ${kind} example in a ${format} dataset (decided by ${options.format ? "--format" : "the first example"}); use one format per file`,
      });
      continue;
    }
    let rendered: string;
    if (kind === "chat") {
      const chat = chatProblem(value);
      if ("why" in chat) {
        problems.push({ line: number, message: chat.why });
        continue;
      }
      rendered = options.counter.renderChat(chat.messages);
    } else {
      if (typeof value.text !== "string" || value.text.trim() === "") {
        problems.push({ line: number, message: `"text" must be a non-empty string` });
        continue;
      }
      rendered = options.counter.renderCompletion(value.text);
    }
    const count = options.counter.count(rendered);
    if (count > options.sequenceLen) {
      problems.push({
        line: number,
        message: `has ${count} tokens as trained, over the sequence length of ${options.sequenceLen}${options.sequenceLen < options.modelContext ? ` (raise --sequence-len up to the model's ${options.modelContext}, or shorten it)` : " (the model's whole context); shorten or split it"}`,
      });
      continue;
    }
    if (seen.has(text)) duplicates++;
    seen.add(text);
    examples++;
    tokens += count;
    if (!longest || count > longest.tokens) longest = { line: number, tokens: count };
  }
  if (examples === 0 && problems.length === 0)
    problems.push({ line: 1, message: "has no examples (only blank lines)" });
  if (blank > 0) warnings.push(`${blank} blank line(s) skipped`);
  if (duplicates > 0) warnings.push(`${duplicates} line(s) repeat an earlier one exactly; they are trained twice`);
  if (examples > 0 && examples < FEW_EXAMPLES)
    warnings.push(`only ${examples} example(s): an adapter usually needs hundreds`);
  if (!options.counter.exact)
    warnings.push(`token counts are estimates (${options.counter.name}): no tokenizer package for this model`);
  return report();
}

/** The report's problems as printed: the first MAX_LISTED_PROBLEMS, then how many more. */
export function formatDatasetProblems(file: string, problems: readonly DatasetProblem[]): string[] {
  const shown = problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => `${file}:${p.line}: ${p.message}`);
  if (problems.length > MAX_LISTED_PROBLEMS)
    shown.push(`... and ${problems.length - MAX_LISTED_PROBLEMS} more problem(s)`);
  return shown;
}
