import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { deflateSync } from "node:zlib";
import { OPENAI_STT_MODEL } from "../../services/speech";
import { DEEPSEEK_OCR_PROMPT, DEEPSEEK_OCR_REQUEST_EXTRAS } from "../../services/vllm";
import { PRESETS } from "../../stacks/presets";

/**
 * Smoke test of a running hub over its public API: every route and every refusal that can be seen
 * from outside, with small real requests. Every check needs a correct answer, not just a status:
 * the coder must say something, the speech services must round-trip a sentence (text → audio →
 * the same words), OCR must read back text we drew ourselves, and each refusal must be the right
 * status with an OpenAI-format error. Checks run in order; one whose prerequisite failed is
 * skipped, and nothing runs when the hub cannot be reached with the key at all.
 */

export type OcrMode = "chat" | "convert" | "auto";
export const OCR_MODES: readonly OcrMode[] = ["chat", "convert", "auto"];

export interface SmokeOptions {
  /** The hub's OpenAI base URL, `/v1` included, without a trailing slash. */
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly ocrMode: OcrMode;
  /** Per request, body included: a stream that stops mid-way fails instead of hanging. */
  readonly timeoutMs: number;
  /** What the client names; the hub maps whisper-1 (every OpenAI client's default) to its Whisper model. */
  readonly sttModel: string;
  /** Coqui's tts-server ignores it (the model is fixed at start) but OpenAI clients send one. */
  readonly ttsModel: string;
  /** Only sent when set: Coqui treats it as a speaker id, which a single-speaker model has none of. */
  readonly voice?: string;
  /** A key with the llm scope only, for the scope check; skipped without one. */
  readonly llmOnlyKey?: string;
  /**
   * A key spent on purpose by the rate-limit check (its llm budget is empty for a while after):
   * create one for it, e.g. `keys create --name smoke-rate --scopes llm`. Without one the check
   * proves only that unknown keys are refused (401) and spend no budget.
   */
  readonly rateLimitKey?: string;
  /** That key's burst and per-minute rate (the stack's rateLimitBurst / rateLimitPerMinute unless it has its own): how many requests it takes to see a 429. */
  readonly rateBurst: number;
  readonly ratePerMinute: number;
  /** The embedding model the hub serves at /v1/embeddings (its `embeddingModel`). */
  readonly embeddingModel: string;
}

export const DEFAULTS = {
  ocrMode: "auto",
  // CPU-only tiers answer chat and document OCR in tens of seconds; two minutes leaves headroom.
  timeoutMs: 120_000,
  sttModel: OPENAI_STT_MODEL,
  ttsModel: "tts-1",
  // The presets' gateway limits (stacks/presets.ts); pass the stack's own if it overrides them.
  rateBurst: PRESETS.cpu.rateLimitBurst,
  ratePerMinute: PRESETS.cpu.rateLimitPerMinute,
  embeddingModel: PRESETS.cpu.embeddingModel,
} as const satisfies Partial<SmokeOptions>;

export const CODER_MODEL = "coder";
export const OCR_CHAT_MODEL = "deepseek-ocr";
/** Every letter of the alphabet, common words: Whisper transcribes it reliably from any TTS voice. */
export const SPOKEN_SENTENCE = "The quick brown fox jumps over the lazy dog.";
/** Short, unambiguous glyphs (no O/0 or I/1) so an OCR engine has no excuse to misread it. */
export const OCR_TEXT = "HUB 42";
/** Share of the sentence's words the transcript must contain: tolerant of one or two slips. */
export const MIN_WORD_SHARE = 0.7;
/** A spoken sentence is tens of kilobytes in any format; less is an error page or an empty file. */
export const MIN_AUDIO_BYTES = 1024;
/**
 * A model no hub serves and no Hugging Face repo has: a hub that should refuse it but does not
 * answers 404 or 500 for it, and downloads nothing either way.
 */
export const UNSERVED_STT_MODEL = "inference-hub-smoke/not-a-served-model";
/** Throwaway keys start like real ones (`ihk_`), so a gatekeeper cannot tell them apart by shape. */
export const THROWAWAY_KEY_PREFIX = "ihk_smoke_";
/** Seconds of refill the rate-limit check allows for while its requests are in flight. */
export const RATE_CHECK_SPREAD_SECONDS = 5;

export type CheckId =
  | "models"
  | "key-refused"
  | "scope-refused"
  | "chat"
  | "chat-stream"
  | "completions"
  | "adapters"
  | "tts"
  | "tts-mp3"
  | "stt"
  | "stt-translate"
  | "stt-model-refused"
  | "ocr"
  | "ocr-async"
  | "embeddings"
  | "embeddings-refused"
  | "rate-limit";
export type CheckStatus = "ok" | "failed" | "skipped";

export interface CheckSpec {
  readonly id: CheckId;
  readonly service: string;
  /** Checks that must have passed first (this one uses what they produced or proved). */
  readonly needs?: readonly CheckId[];
}

/** In run order. The rate-limit check goes last: it leaves a throwaway key's bucket empty. */
export const CHECKS: readonly CheckSpec[] = [
  { id: "models", service: "models list" },
  { id: "key-refused", service: "missing or unknown key" },
  { id: "scope-refused", service: "key without the scope" },
  { id: "chat", service: "chat (coder)" },
  { id: "chat-stream", service: "chat stream (coder)" },
  { id: "completions", service: "completions (coder)" },
  { id: "adapters", service: "LoRA adapters (coder-<name>)" },
  { id: "tts", service: "text to speech, wav" },
  { id: "tts-mp3", service: "text to speech, mp3" },
  { id: "stt", service: "speech to text", needs: ["tts"] },
  { id: "stt-translate", service: "speech translation", needs: ["tts"] },
  { id: "stt-model-refused", service: "speech to text, unserved model", needs: ["tts"] },
  { id: "ocr", service: "OCR" },
  { id: "ocr-async", service: "OCR, docling async API" },
  { id: "embeddings", service: "embeddings" },
  { id: "embeddings-refused", service: "embeddings, bad input and unknown model", needs: ["embeddings"] },
  { id: "rate-limit", service: "rate limit" },
];

export interface CheckResult {
  readonly id: CheckId;
  readonly service: string;
  readonly status: CheckStatus;
  readonly latencyMs?: number;
  readonly detail: string;
  /** The failing request, so the one-line reason can name it. */
  readonly method?: string;
  readonly url?: string;
  readonly httpStatus?: number;
}

export interface SmokeReport {
  readonly ok: boolean;
  readonly baseUrl: string;
  readonly ocrMode: OcrMode;
  readonly checks: readonly CheckResult[];
  /** One line per failed check: the service, the request, the status and what the hub said. */
  readonly failures: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Command line

export class UsageError extends Error {}

export type SmokeCommand =
  | { readonly help: true }
  | { readonly help: false; readonly options: SmokeOptions; readonly json: boolean };

export const USAGE = [
  "Usage: npm run smoke -- --url <hub base URL, e.g. https://hub.example.com/v1> --key <api key>",
  "         [--llm-only-key KEY] [--rate-limit-key KEY] [--rate-burst N] [--rate-per-minute N]",
  "         [--ocr chat|convert|auto] [--timeout-ms N] [--json]",
  "         [--stt-model ID] [--tts-model NAME] [--voice NAME] [--embedding-model ID]",
  "Keys may come from HUB_API_KEY, HUB_LLM_ONLY_KEY and HUB_RATE_LIMIT_KEY instead (keeps them out of the process list).",
  "Exit status: 0 every check passed or was skipped, 1 bad invocation, 2 a check failed.",
  "A GPU wake, stage by stage against the model (it wakes the GPU): npm run smoke -- --wake --url URL --key KEY --admin-key KEY [--stack NAME] [--stages-out FILE]",
].join("\n");

const positiveInteger = (option: string, text: string): number => {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value <= 0)
    throw new UsageError(`--${option} ${JSON.stringify(text)} is not a positive whole number`);
  return value;
};

/** Throws UsageError with a one-line message for anything a user could have typed wrong. */
export function parseSmokeArgs(argv: readonly string[], env: NodeJS.ProcessEnv = {}): SmokeCommand {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        key: { type: "string" },
        "llm-only-key": { type: "string" },
        "rate-limit-key": { type: "string" },
        "rate-burst": { type: "string", default: String(DEFAULTS.rateBurst) },
        "rate-per-minute": { type: "string", default: String(DEFAULTS.ratePerMinute) },
        ocr: { type: "string", default: DEFAULTS.ocrMode },
        "timeout-ms": { type: "string", default: String(DEFAULTS.timeoutMs) },
        "stt-model": { type: "string", default: DEFAULTS.sttModel },
        "tts-model": { type: "string", default: DEFAULTS.ttsModel },
        voice: { type: "string" },
        "embedding-model": { type: "string", default: DEFAULTS.embeddingModel },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    // parseArgs explains itself well; its hint about '--' is noise here.
    throw new UsageError(firstSentence(errorText(error)));
  }
  if (values.help) return { help: true };

  const rawUrl = values.url ?? env.HUB_URL;
  if (!rawUrl) throw new UsageError("missing --url (or HUB_URL): the hub's base URL, e.g. https://hub.example.com/v1");
  const baseUrl = normalizeBaseUrl(rawUrl);
  const apiKey = (values.key ?? env.HUB_API_KEY ?? "").trim();
  if (!apiKey)
    throw new UsageError(
      "missing --key (or HUB_API_KEY): a client key with the llm, stt, tts and ocr scopes, from `npm run hub -- keys create`",
    );
  const llmOnlyKey = (values["llm-only-key"] ?? env.HUB_LLM_ONLY_KEY ?? "").trim() || undefined;
  if (llmOnlyKey === apiKey)
    throw new UsageError(
      "--llm-only-key is the same key as --key: create one with `npm run hub -- keys create --name smoke-llm --scopes llm`",
    );
  const rateLimitKey = (values["rate-limit-key"] ?? env.HUB_RATE_LIMIT_KEY ?? "").trim() || undefined;
  if (rateLimitKey !== undefined && (rateLimitKey === apiKey || rateLimitKey === llmOnlyKey))
    throw new UsageError(
      "--rate-limit-key must be a key of its own (the check empties its budget): create one with `npm run hub -- keys create --name smoke-rate --scopes llm`",
    );
  const ocrMode = values.ocr as OcrMode;
  if (!OCR_MODES.includes(ocrMode))
    throw new UsageError(`--ocr ${JSON.stringify(values.ocr)} is not one of ${OCR_MODES.join(", ")}`);
  const timeoutText = values["timeout-ms"];
  const timeoutMs = Number(timeoutText);
  if (!/^\d+$/.test(timeoutText) || timeoutMs <= 0)
    throw new UsageError(`--timeout-ms ${JSON.stringify(timeoutText)} is not a positive whole number of milliseconds`);
  for (const name of ["stt-model", "tts-model", "embedding-model"] as const)
    if (!values[name].trim()) throw new UsageError(`--${name} is empty`);

  return {
    options: {
      baseUrl,
      apiKey,
      ocrMode,
      timeoutMs,
      sttModel: values["stt-model"],
      ttsModel: values["tts-model"],
      ...(values.voice ? { voice: values.voice } : {}),
      ...(llmOnlyKey ? { llmOnlyKey } : {}),
      ...(rateLimitKey ? { rateLimitKey } : {}),
      rateBurst: positiveInteger("rate-burst", values["rate-burst"]),
      ratePerMinute: positiveInteger("rate-per-minute", values["rate-per-minute"]),
      embeddingModel: values["embedding-model"],
    },
    json: values.json,
    help: false,
  };
}

function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(raw)} is not a URL (expected e.g. https://hub.example.com/v1)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UsageError(`--url ${JSON.stringify(raw)} must be http:// or https://`);
  if (url.search || url.hash)
    throw new UsageError(`--url ${JSON.stringify(raw)} must not have a query or fragment: paths are appended to it`);
  if (url.username || url.password) throw new UsageError("--url must not carry credentials: pass the key with --key");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

// ---------------------------------------------------------------------------------------------
// Running the checks

/** A check's verdict on a broken service, tied to the request that showed it. */
class CheckFailure extends Error {
  constructor(
    message: string,
    readonly method: string,
    readonly url: string,
    readonly httpStatus?: number,
  ) {
    super(message);
  }
}

/** A check that does not apply to this run (an option not given, another OCR engine answered). */
class NotApplicable extends Error {}

interface Outcome {
  readonly detail: string;
  /** Which backend answered, when the check can reach more than one (OCR). */
  readonly service?: string;
}

export interface SmokeHooks {
  /** Called as each check starts, for progress output on slow hubs. */
  readonly onStart?: (check: CheckSpec) => void;
}

/** What earlier checks handed to later ones. */
interface RunState {
  audio?: SynthesizedAudio;
  /** Which OCR API answered the `ocr` check. */
  ocrBy?: "chat" | "convert";
  /** The model ids the models list named. */
  modelIds?: readonly string[];
}

export async function runSmoke(options: SmokeOptions, hooks: SmokeHooks = {}): Promise<SmokeReport> {
  const hub = new HubClient(options);
  const state: RunState = {};
  const runners: Readonly<Record<CheckId, () => Promise<Outcome>>> = {
    models: async () => {
      const result = await checkModels(hub);
      state.modelIds = result.ids;
      return result;
    },
    "key-refused": () => checkKeyRefused(hub),
    "scope-refused": () => checkScopeRefused(hub),
    chat: () => checkChat(hub),
    "chat-stream": () => checkChatStream(hub),
    completions: () => checkCompletions(hub),
    adapters: () => checkAdapters(hub, state.modelIds ?? []),
    tts: async () => {
      const result = await checkSpeech(hub, "wav");
      state.audio = result.audio;
      return result;
    },
    "tts-mp3": () => checkSpeech(hub, "mp3"),
    stt: () => checkTranscription(hub, "transcriptions", state.audio as SynthesizedAudio),
    "stt-translate": () => checkTranscription(hub, "translations", state.audio as SynthesizedAudio),
    "stt-model-refused": () => checkUnservedSttModel(hub, state.audio as SynthesizedAudio),
    ocr: async () => {
      const result = await checkOcr(hub, options.ocrMode);
      state.ocrBy = result.by;
      return result;
    },
    "ocr-async": () => checkOcrAsync(hub, state.ocrBy),
    embeddings: () => checkEmbeddings(hub),
    "embeddings-refused": () => checkEmbeddingsRefused(hub),
    "rate-limit": () => checkRateLimit(hub),
  };

  const results: CheckResult[] = [];
  const failures: string[] = [];
  const statusOf = (id: CheckId) => results.find((r) => r.id === id)?.status;
  for (const check of CHECKS) {
    // Without the model list nothing else can be told apart from "the hub is not there".
    if (check.id !== "models" && statusOf("models") === "failed") {
      results.push({
        id: check.id,
        service: check.service,
        status: "skipped",
        detail: "not run: the models list failed, so the hub or the key is unusable",
      });
      continue;
    }
    const unmet = (check.needs ?? []).filter((id) => statusOf(id) !== "ok");
    if (unmet.length > 0) {
      results.push({
        id: check.id,
        service: check.service,
        status: "skipped",
        detail: `not run: needs ${unmet.join(", ")}`,
      });
      continue;
    }
    hooks.onStart?.(check);
    const started = performance.now();
    try {
      const outcome = await runners[check.id]();
      results.push({
        id: check.id,
        service: outcome.service ?? check.service,
        status: "ok",
        latencyMs: elapsedSince(started),
        detail: outcome.detail,
      });
    } catch (error) {
      const latencyMs = elapsedSince(started);
      if (error instanceof NotApplicable) {
        results.push({ id: check.id, service: check.service, status: "skipped", detail: error.message });
      } else if (error instanceof CheckFailure) {
        results.push({
          id: check.id,
          service: check.service,
          status: "failed",
          latencyMs,
          detail: error.message,
          method: error.method,
          url: error.url,
          httpStatus: error.httpStatus,
        });
        failures.push(failureLine(check.service, error));
      } else {
        // A bug or an answer shaped so oddly the check tripped over it: still one line, still this service.
        const message = `unexpected error: ${errorText(error)}`;
        results.push({ id: check.id, service: check.service, status: "failed", latencyMs, detail: message });
        failures.push(`${check.service} failed: ${message}`);
      }
    }
  }
  return { ok: failures.length === 0, baseUrl: options.baseUrl, ocrMode: options.ocrMode, checks: results, failures };
}

function failureLine(service: string, failure: CheckFailure): string {
  const answered = failure.httpStatus === undefined ? "" : ` answered HTTP ${failure.httpStatus}`;
  return `${service} failed: ${failure.method} ${failure.url}${answered}: ${failure.message}`;
}

const elapsedSince = (started: number) => Math.round(performance.now() - started);

// ---------------------------------------------------------------------------------------------
// HTTP

interface Exchange {
  readonly method: string;
  readonly url: string;
  readonly response: Response;
  /** Ends the check with this request and its status in the reason. */
  fail(message: string): never;
  /** Waits on part of the body under the same deadline, turning timeouts into failures. */
  guard<T>(pending: Promise<T>): Promise<T>;
  text(): Promise<string>;
  bytes(): Promise<Uint8Array>;
  json(): Promise<unknown>;
}

interface SendOptions {
  readonly body?: string | FormData;
  readonly headers?: Readonly<Record<string, string>>;
  /** The key to send instead of --key; null sends none. */
  readonly key?: string | null;
  /** The status the check wants (a refusal); otherwise any 2xx. */
  readonly expectStatus?: number;
}

class HubClient {
  constructor(readonly options: SmokeOptions) {}

  /** Sends one request; an answer other than the expected one fails the check with the error body's message. */
  async send(method: string, path: string, init: SendOptions = {}): Promise<Exchange> {
    const url = `${this.options.baseUrl}${path}`;
    const timeoutMs = this.options.timeoutMs;
    // One deadline for headers and body alike.
    const signal = AbortSignal.timeout(timeoutMs);
    const key = init.key === undefined ? this.options.apiKey : init.key;
    const headers: Record<string, string> = {
      ...(key === null ? {} : { Authorization: `Bearer ${key}` }),
      ...init.headers,
    };
    if (typeof init.body === "string") headers["Content-Type"] = "application/json";

    let response: Response | undefined;
    const explain = (error: unknown): CheckFailure => {
      if (error instanceof CheckFailure) return error;
      if (isAbort(error))
        return new CheckFailure(
          `no complete answer within ${timeoutMs} ms (--timeout-ms)`,
          method,
          url,
          response?.status,
        );
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? errorText(error);
      return new CheckFailure(`the connection failed (${why})`, method, url, response?.status);
    };

    try {
      response = await fetch(url, { method, headers, body: init.body, signal });
    } catch (error) {
      throw explain(error);
    }
    const answered = response;
    const guard = async <T>(pending: Promise<T>): Promise<T> => {
      try {
        return await pending;
      } catch (error) {
        throw explain(error);
      }
    };
    const fail = (message: string): never => {
      throw new CheckFailure(message, method, url, answered.status);
    };
    const text = () => guard(answered.text());
    const exchange: Exchange = {
      method,
      url,
      response: answered,
      fail,
      guard,
      text,
      bytes: async () => new Uint8Array(await guard(answered.arrayBuffer())),
      json: async () => {
        const body = await text();
        try {
          return JSON.parse(body) as unknown;
        } catch {
          return fail(`response is not JSON: ${snippet(body)}`);
        }
      },
    };
    if (init.expectStatus !== undefined) {
      if (answered.status !== init.expectStatus) {
        const body = await text();
        fail(`expected HTTP ${init.expectStatus}${answered.ok ? "" : `: ${errorMessageFromBody(body)}`}`);
      }
      return exchange;
    }
    if (!answered.ok) {
      const message = errorMessageFromBody(await text());
      // A 404 on the very first path usually means the base URL lacks /v1.
      const hint = answered.status === 404 && !/\/v1$/.test(this.options.baseUrl) ? " (does --url end in /v1?)" : "";
      fail(`${message}${hint}`);
    }
    return exchange;
  }
}

function isAbort(error: unknown): boolean {
  const name = (error as { name?: string } | undefined)?.name;
  return name === "TimeoutError" || name === "AbortError";
}

/**
 * The message a human should read from an error body: OpenAI's `{"error": {"message", "code"}}`,
 * vLLM's `{"error": "..."}`, FastAPI's `{"detail": ...}` (speaches, docling), or the text itself.
 */
export function errorMessageFromBody(body: string): string {
  const trimmed = body.trim();
  if (!trimmed) return "(empty body)";
  try {
    const message = messageOf(JSON.parse(trimmed));
    if (message) return snippet(message);
  } catch {
    // Not JSON: an HTML error page from a proxy, or plain text.
  }
  return snippet(trimmed.startsWith("<") ? trimmed.replace(/<[^>]*>/g, " ") : trimmed);
}

function messageOf(value: unknown): string | undefined {
  if (!isRecord(value)) return undefined;
  const { error, detail, message } = value;
  if (typeof error === "string") return error;
  if (isRecord(error) && typeof error.message === "string") {
    const code = typeof error.code === "string" || typeof error.code === "number" ? String(error.code) : "";
    return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  if (typeof detail === "string") return detail;
  // FastAPI validation errors: [{"loc": ["body", "model"], "msg": "Field required"}, ...]
  if (Array.isArray(detail))
    return detail
      .map((d) =>
        isRecord(d) && typeof d.msg === "string"
          ? `${Array.isArray(d.loc) ? `${d.loc.join(".")}: ` : ""}${d.msg}`
          : JSON.stringify(d),
      )
      .join("; ");
  if (typeof message === "string") return message;
  return undefined;
}

/**
 * An OpenAI-format error body, `{"error": {"message", "type", "code"}}` (OpenAI's API reference,
 * "Error codes"), as the hub promises for every refusal; returns what is wrong with it, if anything.
 */
export function openAiErrorProblem(body: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `the body is not JSON: ${JSON.stringify(snippet(body, 80))}`;
  }
  const error = isRecord(parsed) ? parsed.error : undefined;
  if (!isRecord(error)) return `the body has no "error" object: ${snippet(body, 80)}`;
  if (typeof error.message !== "string" || !error.message) return `error.message is missing: ${snippet(body, 80)}`;
  if (typeof error.type !== "string") return `error.type is missing: ${snippet(body, 80)}`;
  if (!("code" in error)) return `error.code is missing: ${snippet(body, 80)}`;
  return undefined;
}

/** Fails the exchange unless its body is an OpenAI-format error that does not repeat `secret`. */
async function expectOpenAiError(exchange: Exchange, secret?: string): Promise<string> {
  const body = await exchange.text();
  const problem = openAiErrorProblem(body);
  if (problem) exchange.fail(`not an OpenAI-format error: ${problem}`);
  if (secret && body.includes(secret)) exchange.fail("the error body repeats the key that was sent");
  return errorMessageFromBody(body);
}

const throwawayKey = (): string => `${THROWAWAY_KEY_PREFIX}${randomBytes(16).toString("hex")}`;

// ---------------------------------------------------------------------------------------------
// The checks

async function checkModels(hub: HubClient): Promise<Outcome & { readonly ids: readonly string[] }> {
  const exchange = await hub.send("GET", "/models");
  const body = await exchange.json();
  if (!isRecord(body) || !Array.isArray(body.data))
    return exchange.fail(`expected {"data": [{"id": ...}]}, got ${snippet(JSON.stringify(body))}`);
  const ids = body.data.flatMap((model) => (isRecord(model) && typeof model.id === "string" ? [model.id] : []));
  if (!ids.includes(CODER_MODEL))
    exchange.fail(`model "${CODER_MODEL}" is not listed (listed: ${ids.join(", ") || "none"})`);
  return { detail: `${ids.length} model${ids.length === 1 ? "" : "s"}: ${ids.join(", ")}`, ids };
}

/**
 * Each LoRA adapter the models list names (`coder-<name>`, llmLoraAdapters) answers a chat turn,
 * and the answer names the adapter: vLLM reports the adapter's name as `model` when the adapter,
 * not the base model, produced it.
 */
async function checkAdapters(hub: HubClient, ids: readonly string[]): Promise<Outcome> {
  const adapters = ids.filter((id) => id.startsWith(`${CODER_MODEL}-`));
  if (adapters.length === 0)
    throw new NotApplicable(
      `not run: the models list names no LoRA adapter (${CODER_MODEL}-<name>); llmLoraAdapters is empty, or the CPU stand-in answers while the GPU is off`,
    );
  for (const model of adapters) {
    const exchange = await hub.send("POST", "/chat/completions", { body: JSON.stringify({ ...CHAT_REQUEST, model }) });
    const body = await exchange.json();
    const content = messageContent(body);
    if (content === undefined || !content.trim())
      exchange.fail(`${model}: no reply text in ${snippet(JSON.stringify(body))}`);
    const answeredBy = isRecord(body) ? body.model : undefined;
    if (answeredBy !== model)
      exchange.fail(
        `${model}: the answer names model ${JSON.stringify(answeredBy)}, so the adapter did not produce it`,
      );
  }
  return { detail: `${adapters.length} adapter${adapters.length === 1 ? "" : "s"} answered: ${adapters.join(", ")}` };
}

async function checkKeyRefused(hub: HubClient): Promise<Outcome> {
  const none = await hub.send("GET", "/models", { key: null, expectStatus: 401 });
  await expectOpenAiError(none);
  const unknown = throwawayKey();
  const wrong = await hub.send("GET", "/models", { key: unknown, expectStatus: 401 });
  const message = await expectOpenAiError(wrong, unknown);
  return { detail: `no key and an unknown key: 401 (${snippet(message, 60)})` };
}

async function checkScopeRefused(hub: HubClient): Promise<Outcome> {
  const key = hub.options.llmOnlyKey;
  if (!key) throw new NotApplicable("not run: give --llm-only-key (a key created with --scopes llm) to check scopes");
  // The key works where its scope allows...
  await hub.send("GET", "/models", { key });
  // ...and is refused where it does not, before the request reaches the TTS server.
  const refused = await hub.send("POST", "/audio/speech", {
    key,
    body: JSON.stringify({ model: hub.options.ttsModel, input: "scope check", response_format: "wav" }),
    expectStatus: 403,
  });
  const message = await expectOpenAiError(refused, key);
  return { detail: `llm-only key: /models 200, /audio/speech 403 (${snippet(message, 60)})` };
}

const CHAT_REQUEST = {
  model: CODER_MODEL,
  messages: [{ role: "user", content: "Reply with the single word: ready" }],
  // Enough for a short answer, little enough to stay fast on a CPU stand-in.
  max_tokens: 32,
  temperature: 0,
} as const;

async function checkChat(hub: HubClient): Promise<Outcome> {
  const exchange = await hub.send("POST", "/chat/completions", { body: JSON.stringify(CHAT_REQUEST) });
  const body = await exchange.json();
  const content = messageContent(body);
  if (content === undefined) return exchange.fail(`no choices[0].message.content in ${snippet(JSON.stringify(body))}`);
  if (!content.trim()) exchange.fail("the reply is empty (choices[0].message.content has no text)");
  return { detail: `replied ${JSON.stringify(snippet(content.trim(), 60))}` };
}

async function checkChatStream(hub: HubClient): Promise<Outcome> {
  const exchange = await hub.send("POST", "/chat/completions", {
    body: JSON.stringify({ ...CHAT_REQUEST, stream: true }),
    headers: { Accept: "text/event-stream" },
  });
  const contentType = exchange.response.headers.get("content-type") ?? "";
  if (contentType.includes("json"))
    exchange.fail(`the answer is ${contentType}, not an event stream: ${errorMessageFromBody(await exchange.text())}`);
  const stream = await readChatStream(exchange);
  if (!stream.sawDone)
    exchange.fail(`the stream ended without "data: [DONE]" (after ${stream.contentDeltas} content deltas)`);
  if (stream.contentDeltas === 0) exchange.fail("the stream finished without any delta carrying content");
  return {
    detail: `${stream.contentDeltas} content deltas, then [DONE]: ${JSON.stringify(snippet(stream.text.trim(), 60))}`,
  };
}

async function checkCompletions(hub: HubClient): Promise<Outcome> {
  const request = { model: CODER_MODEL, prompt: "def add(a, b):\n    return", max_tokens: 16, temperature: 0 };
  const exchange = await hub.send("POST", "/completions", { body: JSON.stringify(request) });
  const body = await exchange.json();
  const text = firstChoice(body)?.text;
  if (typeof text !== "string") return exchange.fail(`no choices[0].text in ${snippet(JSON.stringify(body))}`);
  if (!text.trim()) exchange.fail("the completion is empty (choices[0].text has no text)");
  return { detail: `completed ${JSON.stringify(snippet(text.trim(), 60))}` };
}

interface ChatStream {
  readonly sawDone: boolean;
  readonly contentDeltas: number;
  readonly text: string;
}

/** Reads server-sent events until `data: [DONE]` or the end of the body. */
async function readChatStream(exchange: Exchange): Promise<ChatStream> {
  const reader = exchange.response.body?.getReader();
  if (!reader) return exchange.fail("the response has no body");
  const decoder = new TextDecoder();
  let pending = "";
  let contentDeltas = 0;
  let text = "";

  /** True once the stream says it is done. */
  const onLine = (rawLine: string): boolean => {
    const line = rawLine.replace(/\r$/, "");
    if (!line.startsWith("data:")) return false; // comments, event names, blank separators
    const data = line.slice("data:".length).trim();
    if (data === "[DONE]") return true;
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      exchange.fail(`a stream event is not JSON: ${snippet(data)}`);
    }
    // vLLM reports errors after the headers went out as an event in the stream.
    if (isRecord(event) && event.error !== undefined)
      exchange.fail(`error in the stream: ${errorMessageFromBody(data)}`);
    const delta = deltaContent(event);
    if (delta) {
      contentDeltas += 1;
      text += delta;
    }
    return false;
  };

  for (;;) {
    const { done, value } = await exchange.guard(reader.read());
    pending += done ? decoder.decode() : decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = done ? "" : (lines.pop() ?? "");
    for (const line of lines) {
      if (onLine(line)) {
        // Nothing after [DONE] matters; free the connection.
        await reader.cancel().catch(() => undefined);
        return { sawDone: true, contentDeltas, text };
      }
    }
    if (done) return { sawDone: false, contentDeltas, text };
  }
}

function messageContent(body: unknown): string | undefined {
  const message = firstChoice(body)?.message;
  return isRecord(message) ? textOf(message.content) : undefined;
}

function deltaContent(event: unknown): string | undefined {
  const delta = firstChoice(event)?.delta;
  return isRecord(delta) ? textOf(delta.content) : undefined;
}

function firstChoice(body: unknown): Record<string, unknown> | undefined {
  const choices = isRecord(body) ? body.choices : undefined;
  const first: unknown = Array.isArray(choices) ? choices[0] : undefined;
  return isRecord(first) ? first : undefined;
}

/** Content is a string, or (some servers) a list of typed parts. */
function textOf(content: unknown): string | undefined {
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content.map((part) => (isRecord(part) && typeof part.text === "string" ? part.text : "")).join("");
  return undefined;
}

export type AudioFormat = "wav" | "mp3" | "ogg" | "flac";

interface SynthesizedAudio {
  readonly bytes: Uint8Array;
  readonly format: AudioFormat | undefined;
  readonly contentType: string;
}

/**
 * Text to speech in `format`: wav (every speech-to-text server decodes it; the speech checks
 * reuse it) and mp3 (OpenAI's default, so what most clients get). The answer must be that
 * format by its own bytes, not just by its content type.
 */
async function checkSpeech(
  hub: HubClient,
  format: "wav" | "mp3",
): Promise<Outcome & { readonly audio: SynthesizedAudio }> {
  const options = hub.options;
  const request = {
    model: options.ttsModel,
    input: SPOKEN_SENTENCE,
    response_format: format,
    ...(options.voice ? { voice: options.voice } : {}),
  };
  const exchange = await hub.send("POST", "/audio/speech", { body: JSON.stringify(request) });
  const contentType = exchange.response.headers.get("content-type") ?? "";
  const bytes = await exchange.bytes();
  if (/json|^text\//.test(contentType))
    exchange.fail(`the answer is ${contentType}, not audio: ${errorMessageFromBody(new TextDecoder().decode(bytes))}`);
  if (bytes.length < MIN_AUDIO_BYTES)
    exchange.fail(
      `the audio is only ${bytes.length} bytes (expected at least ${MIN_AUDIO_BYTES} for a spoken sentence)`,
    );
  if (format === "mp3") {
    const mp3 = mp3Problem(bytes);
    if (mp3)
      exchange.fail(
        `asked for mp3, got ${bytes.length} bytes of ${contentType || "no content type"} that are not MP3: ${mp3}`,
      );
  } else if (detectAudioFormat(bytes) !== "wav") {
    exchange.fail(
      `asked for wav, got ${bytes.length} bytes of ${contentType || "no content type"} that are not WAV (RIFF/WAVE)`,
    );
  }
  return {
    detail: `${format.toUpperCase()}, ${(bytes.length / 1024).toFixed(1)} KiB for ${JSON.stringify(SPOKEN_SENTENCE)}`,
    audio: { bytes, format, contentType },
  };
}

/** Recognises the containers a TTS server answers with, by their first bytes. */
export function detectAudioFormat(bytes: Uint8Array): AudioFormat | undefined {
  const ascii = (start: number, end: number) => String.fromCharCode(...bytes.subarray(start, end));
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WAVE") return "wav";
  if (ascii(0, 3) === "ID3" || (bytes[0] === 0xff && ((bytes[1] ?? 0) & 0xe0) === 0xe0)) return "mp3";
  if (ascii(0, 4) === "OggS") return "ogg";
  if (ascii(0, 4) === "fLaC") return "flac";
  return undefined;
}

// MPEG audio Layer III frame header fields (ISO/IEC 11172-3, 13818-3): kbit/s by bitrate index,
// Hz by sample-rate index, for MPEG-1 and for MPEG-2/2.5.
const MP3_BITRATES = {
  mpeg1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  mpeg2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
} as const;
const MP3_SAMPLE_RATES: Readonly<Record<number, readonly number[]>> = {
  3: [44100, 48000, 32000],
  2: [22050, 24000, 16000],
  0: [11025, 12000, 8000],
};
/** Consecutive well-formed frames that make a stream MP3 rather than bytes that happen to start like one. */
export const MP3_FRAMES_REQUIRED = 3;

/** The length of the Layer III frame whose header starts at `at`, or undefined if there is none. */
function mp3FrameLength(bytes: Uint8Array, at: number): number | undefined {
  if (at + 4 > bytes.length) return undefined;
  const [b0, b1, b2] = [bytes[at], bytes[at + 1], bytes[at + 2]];
  if (b0 !== 0xff || (b1 & 0xe0) !== 0xe0) return undefined;
  const version = (b1 >> 3) & 0x03; // 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5, 1 reserved
  const layer = (b1 >> 1) & 0x03; // 1 Layer III
  const bitrateIndex = b2 >> 4;
  const rateIndex = (b2 >> 2) & 0x03;
  if (version === 1 || layer !== 1 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return undefined;
  const kbps = (version === 3 ? MP3_BITRATES.mpeg1 : MP3_BITRATES.mpeg2)[bitrateIndex];
  const sampleRate = MP3_SAMPLE_RATES[version][rateIndex];
  const padding = (b2 >> 1) & 0x01;
  return Math.floor(((version === 3 ? 144 : 72) * kbps * 1000) / sampleRate) + padding;
}

/** What keeps `bytes` from being an MP3 stream (an optional ID3v2 tag, then Layer III frames), if anything. */
export function mp3Problem(bytes: Uint8Array): string | undefined {
  let at = 0;
  if (String.fromCharCode(...bytes.subarray(0, 3)) === "ID3") {
    if (bytes.length < 10) return "an ID3 tag header cut short";
    // ID3v2 size: four 7-bit bytes, after the 10-byte header.
    at = 10 + ((bytes[6] << 21) | (bytes[7] << 14) | (bytes[8] << 7) | bytes[9]);
  }
  for (let frame = 0; frame < MP3_FRAMES_REQUIRED; frame++) {
    const length = mp3FrameLength(bytes, at);
    if (length === undefined)
      return frame === 0
        ? `no MPEG audio Layer III frame header at byte ${at}`
        : `frame ${frame + 1} at byte ${at} is not an MPEG audio Layer III frame`;
    at += length;
  }
  return undefined;
}

const STT_PATHS = { transcriptions: "/audio/transcriptions", translations: "/audio/translations" } as const;

function sttForm(audio: SynthesizedAudio, model: string, endpoint: keyof typeof STT_PATHS): FormData {
  const extension = audio.format ?? "wav";
  const form = new FormData();
  form.append(
    "file",
    new Blob([audio.bytes], { type: audio.contentType || `audio/${extension}` }),
    `smoke.${extension}`,
  );
  form.append("model", model);
  // The sentence is English; saying so spares Whisper a language guess on a short clip.
  if (endpoint === "transcriptions") form.append("language", "en");
  form.append("response_format", "json");
  return form;
}

/** Speech to text of the wav from `tts` with --stt-model (whisper-1 by default): the words must come back. */
async function checkTranscription(
  hub: HubClient,
  endpoint: keyof typeof STT_PATHS,
  audio: SynthesizedAudio,
): Promise<Outcome> {
  const model = hub.options.sttModel;
  const exchange = await hub.send("POST", STT_PATHS[endpoint], { body: sttForm(audio, model, endpoint) });
  const body = await exchange.json();
  if (!isRecord(body) || typeof body.text !== "string")
    return exchange.fail(`expected {"text": ...}, got ${snippet(JSON.stringify(body))}`);
  const match = wordMatch(SPOKEN_SENTENCE, body.text);
  if (match.found < match.needed)
    exchange.fail(
      `the transcript ${JSON.stringify(snippet(body.text, 100))} has ${match.found} of the ${match.total} words spoken (need ${match.needed})`,
    );
  return {
    detail: `model ${model}: heard ${match.found}/${match.total} words: ${JSON.stringify(snippet(body.text.trim(), 60))}`,
  };
}

/** A model the hub does not serve is refused with a 400, on the endpoint that would otherwise download it. */
async function checkUnservedSttModel(hub: HubClient, audio: SynthesizedAudio): Promise<Outcome> {
  const exchange = await hub.send("POST", STT_PATHS.translations, {
    body: sttForm(audio, UNSERVED_STT_MODEL, "translations"),
    expectStatus: 400,
  });
  const message = await expectOpenAiError(exchange);
  return { detail: `model ${UNSERVED_STT_MODEL}: 400 (${snippet(message, 80)})` };
}

/** Lower case, letters and digits only: "Dog." and "dog" are the same word. */
export function normalizeWords(text: string): string[] {
  return text
    .normalize("NFKD")
    .toLowerCase()
    .replace(/[^a-z0-9\s]+/g, " ")
    .split(/\s+/)
    .filter(Boolean);
}

export function wordMatch(
  expected: string,
  heard: string,
): { readonly found: number; readonly total: number; readonly needed: number } {
  const heardWords = new Set(normalizeWords(heard));
  const expectedWords = normalizeWords(expected);
  const found = expectedWords.filter((word) => heardWords.has(word)).length;
  return { found, total: expectedWords.length, needed: Math.ceil(expectedWords.length * MIN_WORD_SHARE) };
}

/** Letters and digits only, upper case: OCR may add spaces, line breaks or markdown around the text. */
export function compactText(text: string): string {
  return text.toUpperCase().replace(/[^A-Z0-9]+/g, "");
}

async function checkOcr(hub: HubClient, mode: OcrMode): Promise<Outcome & { readonly by: "chat" | "convert" }> {
  const png = renderTextPng(OCR_TEXT);
  if (mode === "chat") return { ...(await ocrByChat(hub, png)), by: "chat" };
  if (mode === "convert") return { ...(await ocrByConvert(hub, png)), by: "convert" };
  try {
    return { ...(await ocrByChat(hub, png)), by: "chat" };
  } catch (error) {
    // 404: no DeepSeek-OCR route (cpu tier); 503: the GPU is off. docling is the other way in.
    if (!(error instanceof CheckFailure) || (error.httpStatus !== 404 && error.httpStatus !== 503)) throw error;
    const chatAnswer = `${error.method} ${error.url} answered HTTP ${error.httpStatus}: ${error.message}`;
    try {
      const outcome = await ocrByConvert(hub, png);
      return {
        ...outcome,
        by: "convert",
        detail: `${outcome.detail} (chat answered HTTP ${error.httpStatus}, so tried convert)`,
      };
    } catch (fallbackError) {
      if (!(fallbackError instanceof CheckFailure)) throw fallbackError;
      throw new CheckFailure(
        `${fallbackError.message} (tried after ${chatAnswer})`,
        fallbackError.method,
        fallbackError.url,
        fallbackError.httpStatus,
      );
    }
  }
}

/** DeepSeek-OCR in OpenAI chat format, with what the vLLM recipe sends: the n-gram filter's arguments. */
export function ocrChatRequest(png: Buffer): Record<string, unknown> {
  return {
    model: OCR_CHAT_MODEL,
    messages: [
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: `data:image/png;base64,${png.toString("base64")}` } },
          { type: "text", text: DEEPSEEK_OCR_PROMPT },
        ],
      },
    ],
    temperature: 0,
    max_tokens: 256,
    ...DEEPSEEK_OCR_REQUEST_EXTRAS,
  };
}

async function ocrByChat(hub: HubClient, png: Buffer): Promise<Outcome> {
  const exchange = await hub.send("POST", "/ocr/chat/completions", { body: JSON.stringify(ocrChatRequest(png)) });
  const body = await exchange.json();
  const content = messageContent(body);
  if (content === undefined) return exchange.fail(`no choices[0].message.content in ${snippet(JSON.stringify(body))}`);
  const detail = readBack(exchange, content);
  // Two words of text never fill max_tokens unless the model repeats itself, which the n-gram filter stops.
  if (firstChoice(body)?.finish_reason === "length")
    exchange.fail(
      `the answer ran to max_tokens (finish_reason "length"), repeating itself: the n-gram filter did not act on the request's vllm_xargs`,
    );
  return { service: "OCR (DeepSeek-OCR chat, n-gram filter on)", detail };
}

/** docling-serve's multipart upload, shared by the synchronous and the async API. */
function doclingForm(png: Buffer): FormData {
  const form = new FormData();
  form.append("files", new Blob([png], { type: "image/png" }), "smoke-ocr.png");
  for (const format of ["md", "text"]) form.append("to_formats", format);
  form.append("do_ocr", "true");
  // The image has no text layer anyway; forcing OCR makes that explicit.
  form.append("force_ocr", "true");
  // Keeps a base64 copy of the image out of the markdown.
  form.append("image_export_mode", "placeholder");
  return form;
}

// docling checks its own header, not Authorization; the key is the same.
const doclingHeaders = (hub: HubClient) => ({ "X-Api-Key": hub.options.apiKey });

function doclingText(exchange: Exchange, body: unknown): string {
  const document = isRecord(body) ? body.document : undefined;
  const texts = isRecord(document)
    ? [document.md_content, document.text_content].filter((t): t is string => typeof t === "string")
    : [];
  if (texts.length === 0)
    return exchange.fail(`no document.md_content or document.text_content in ${snippet(JSON.stringify(body))}`);
  return texts.join("\n");
}

async function ocrByConvert(hub: HubClient, png: Buffer): Promise<Outcome> {
  const exchange = await hub.send("POST", "/ocr/convert/file", {
    body: doclingForm(png),
    headers: doclingHeaders(hub),
  });
  return { service: "OCR (docling convert)", detail: readBack(exchange, doclingText(exchange, await exchange.json())) };
}

/**
 * docling-serve's async API (v1.31.0 app.py: /v1/convert/file/async, /v1/status/poll/{task_id},
 * /v1/result/{task_id}), under the gateway's /v1/ocr/ prefix as the synchronous paths are. It is
 * how a document that takes longer than the synchronous wait converts.
 */
export const DOCLING_ASYNC_PATHS = {
  submit: "/ocr/convert/file/async",
  poll: (taskId: string) => `/ocr/status/poll/${encodeURIComponent(taskId)}`,
  result: (taskId: string) => `/ocr/result/${encodeURIComponent(taskId)}`,
} as const;
/** Seconds each status poll asks docling to hold the answer until the task completes (its `wait` query). */
export const DOCLING_POLL_WAIT_SECONDS = 5;
const DOCLING_DONE = new Set(["success", "partial_success"]);

async function checkOcrAsync(hub: HubClient, ocrBy: "chat" | "convert" | undefined): Promise<Outcome> {
  if (ocrBy !== "convert" && hub.options.ocrMode !== "convert")
    throw new NotApplicable("not run: DeepSeek-OCR answered OCR; check docling's async API with --ocr convert");
  const submit = await hub.send("POST", DOCLING_ASYNC_PATHS.submit, {
    body: doclingForm(renderTextPng(OCR_TEXT)),
    headers: doclingHeaders(hub),
  });
  const task = await submit.json();
  const taskId = isRecord(task) && typeof task.task_id === "string" ? task.task_id : undefined;
  if (!taskId) return submit.fail(`no task_id in ${snippet(JSON.stringify(task))}`);
  const deadline = Date.now() + hub.options.timeoutMs;
  for (let polls = 1; ; polls++) {
    const poll = await hub.send("GET", `${DOCLING_ASYNC_PATHS.poll(taskId)}?wait=${DOCLING_POLL_WAIT_SECONDS}`, {
      headers: doclingHeaders(hub),
    });
    const status = await poll.json();
    const state = isRecord(status) ? status.task_status : undefined;
    if (typeof state === "string" && DOCLING_DONE.has(state)) {
      const result = await hub.send("GET", DOCLING_ASYNC_PATHS.result(taskId), { headers: doclingHeaders(hub) });
      return {
        detail: `task ${taskId}: ${state} after ${polls} poll${polls === 1 ? "" : "s"}; ${readBack(result, doclingText(result, await result.json()))}`,
      };
    }
    if (state === "failure") return poll.fail(`the task failed: ${snippet(JSON.stringify(status))}`);
    if (Date.now() > deadline)
      return poll.fail(
        `task ${taskId} still ${JSON.stringify(state)} after ${hub.options.timeoutMs} ms (--timeout-ms)`,
      );
  }
}

function readBack(exchange: Exchange, recognised: string): string {
  if (!compactText(recognised).includes(compactText(OCR_TEXT)))
    exchange.fail(`read ${JSON.stringify(snippet(recognised.trim(), 100))}, not ${JSON.stringify(OCR_TEXT)}`);
  return `read ${JSON.stringify(OCR_TEXT)} from a generated PNG`;
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/**
 * Two paraphrases and an unrelated sentence. A working embedding model puts the paraphrases
 * nearer each other than either is to the third; a broken one (wrong pooling, a missing
 * end-of-text token, the wrong file) loses that ordering first.
 */
export const EMBEDDING_TEXTS = [
  "How do I reset a forgotten password?",
  "Steps to reset your password when you forgot it",
  "The night train to Vienna leaves from platform four",
] as const;
/** How much nearer the paraphrase must be than the unrelated sentence (cosine). */
export const MIN_PARAPHRASE_MARGIN = 0.05;
/** Unit length within this: the hub's models answer L2-normalised vectors. */
const UNIT_TOLERANCE = 1e-3;
export const SMOKE_DIMENSIONS = 256;

const cosine = (a: readonly number[], b: readonly number[]): number =>
  a.reduce((sum, x, i) => sum + x * b[i], 0) / (Math.hypot(...a) * Math.hypot(...b));

function vectorsOf(exchange: Exchange, body: unknown, count: number): number[][] {
  const data = isRecord(body) && Array.isArray(body.data) ? body.data : undefined;
  if (!data || data.length !== count)
    return exchange.fail(`expected ${count} embeddings in "data", got ${snippet(JSON.stringify(body))}`);
  return data.map((item, i) => {
    const v = isRecord(item) ? item.embedding : undefined;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "number" && Number.isFinite(x)))
      return exchange.fail(`data[${i}].embedding is not a list of numbers`);
    if (isRecord(item) && item.index !== i)
      exchange.fail(`data[${i}] has index ${String(isRecord(item) ? item.index : undefined)}`);
    return v as number[];
  });
}

async function checkEmbeddings(hub: HubClient): Promise<Outcome> {
  const model = hub.options.embeddingModel;
  const request = (extra: Record<string, unknown>) => JSON.stringify({ model, input: EMBEDDING_TEXTS, ...extra });
  const first = await hub
    .send("POST", "/embeddings", { body: request({ encoding_format: "float" }), expectStatus: undefined })
    .catch((error: unknown) => {
      // The gateway's 404 for a path it does not route: this stack serves no embeddings.
      if (error instanceof CheckFailure && error.httpStatus === 404 && !error.message.includes("model_not_found"))
        throw new NotApplicable("not run: this hub serves no /v1/embeddings (embeddingModel none)");
      if (error instanceof CheckFailure && error.httpStatus === 403)
        throw new CheckFailure(
          `${error.message}: give --key the embeddings scope (keys create --scopes llm,stt,tts,ocr,embeddings)`,
          error.method,
          error.url,
          error.httpStatus,
        );
      throw error;
    });
  const body = await first.json();
  const vectors = vectorsOf(first, body, EMBEDDING_TEXTS.length);
  const length = vectors[0].length;
  if (vectors.some((v) => v.length !== length))
    first.fail(`the vectors differ in length (${vectors.map((v) => v.length).join(", ")})`);
  const norms = vectors.map((v) => Math.hypot(...v));
  if (norms.some((n) => Math.abs(n - 1) > UNIT_TOLERANCE))
    first.fail(`the vectors are not unit length (norms ${norms.map((n) => n.toFixed(4)).join(", ")})`);
  const tokens = isRecord(body) && isRecord(body.usage) ? body.usage.prompt_tokens : undefined;
  if (typeof tokens !== "number" || tokens < EMBEDDING_TEXTS.length)
    first.fail(`usage.prompt_tokens is ${JSON.stringify(tokens)}, not a count of the input's tokens`);
  const near = cosine(vectors[0], vectors[1]);
  const far = Math.max(cosine(vectors[0], vectors[2]), cosine(vectors[1], vectors[2]));
  if (near < far + MIN_PARAPHRASE_MARGIN)
    first.fail(
      `the paraphrases are not nearer each other (cosine ${near.toFixed(3)}) than the unrelated sentence (${far.toFixed(3)}) by ${MIN_PARAPHRASE_MARGIN}: the model is not embedding meaning`,
    );

  // One more request checks base64 and Matryoshka together: the leading SMOKE_DIMENSIONS
  // components, back at unit length, as little-endian float32. A model without Matryoshka refuses
  // `dimensions` in OpenAI's shape; base64 is then checked on the whole vector.
  const decode = (exchange: Exchange, answer: unknown, expected: readonly number[]): void => {
    const text =
      isRecord(answer) && Array.isArray(answer.data) && isRecord(answer.data[0]) ? answer.data[0].embedding : undefined;
    if (typeof text !== "string") {
      exchange.fail("encoding_format base64 did not answer a base64 string");
      return;
    }
    const bytes = Buffer.from(text, "base64");
    if (bytes.length !== expected.length * 4 || expected.some((x, i) => Math.abs(bytes.readFloatLE(i * 4) - x) > 1e-5))
      exchange.fail(
        `the base64 vector is not ${expected.length} little-endian float32 values matching the float answer`,
      );
  };
  let dims: string;
  const short = await hub
    .send("POST", "/embeddings", { body: request({ encoding_format: "base64", dimensions: SMOKE_DIMENSIONS }) })
    .catch((error: unknown) => error);
  if (short instanceof CheckFailure && short.httpStatus === 400 && short.message.includes("dimensions_not_supported")) {
    const whole = await hub.send("POST", "/embeddings", { body: request({ encoding_format: "base64" }) });
    decode(whole, await whole.json(), vectors[0]);
    dims = "dimensions refused (this model has no Matryoshka training)";
  } else if (short instanceof Error) {
    throw short;
  } else {
    const exchange = short as Exchange;
    const head = vectors[0].slice(0, SMOKE_DIMENSIONS);
    const norm = Math.hypot(...head);
    decode(
      exchange,
      await exchange.json(),
      head.map((x) => x / norm),
    );
    dims = `dimensions ${SMOKE_DIMENSIONS} is the leading part at unit length`;
  }
  return {
    detail: `${model}: ${length} dimensions, unit length, ${tokens} tokens; paraphrases ${near.toFixed(2)} vs unrelated ${far.toFixed(2)}; base64 matches; ${dims}`,
  };
}

async function checkEmbeddingsRefused(hub: HubClient): Promise<Outcome> {
  const model = hub.options.embeddingModel;
  const empty = await hub.send("POST", "/embeddings", {
    body: JSON.stringify({ model, input: "" }),
    expectStatus: 400,
  });
  const emptyMessage = await expectOpenAiError(empty);
  const unknownModel = "inference-hub-smoke/not-an-embedding-model";
  const unknown = await hub.send("POST", "/embeddings", {
    body: JSON.stringify({ model: unknownModel, input: "x" }),
    expectStatus: 404,
  });
  const unknownMessage = await expectOpenAiError(unknown);
  const retrieved = await hub.send("GET", `/models/${encodeURIComponent(model)}`);
  const described = await retrieved.json();
  if (!isRecord(described) || described.id !== model)
    retrieved.fail(`GET /models/${model} did not describe ${model}: ${snippet(JSON.stringify(described))}`);
  return {
    detail: `empty input 400 (${snippet(emptyMessage, 40)}); unknown model 404 (${snippet(unknownMessage, 40)}); GET /models/${model} 200`,
  };
}

/** Requests the rate-limit check sends: the burst, one more, and the refill while they are in flight. */
export const rateCheckRequests = (burst: number, perMinute: number): number =>
  burst + 1 + Math.ceil((perMinute / 60) * RATE_CHECK_SPREAD_SECONDS);

/**
 * The gatekeeper takes a token only from a known key that may use the route (an unknown key
 * spends nothing, so it cannot exhaust anyone's budget). So:
 * - with --rate-limit-key: that key sent burst + 1 (+ refill) times at once must see 200s, then
 *   429s in OpenAI's format with Retry-After, naming the key's limit: the per-key limit works;
 * - without: a throwaway key sent as many times must see only the key check's 401, never a 429:
 *   unknown keys are refused and reach no budget. The per-address limit (ten keys' worth, 300 at
 *   once by default) is not probed: it would refuse this machine's own requests for a while.
 */
async function checkRateLimit(hub: HubClient): Promise<Outcome> {
  const spent = hub.options.rateLimitKey;
  const key = spent ?? throwawayKey();
  const count = rateCheckRequests(hub.options.rateBurst, hub.options.ratePerMinute);
  const url = `${hub.options.baseUrl}/models`;
  const answers = await Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const response = await fetch(url, {
          headers: { Authorization: `Bearer ${key}` },
          signal: AbortSignal.timeout(hub.options.timeoutMs),
        });
        return {
          status: response.status,
          retryAfter: response.headers.get("retry-after"),
          body: await response.text(),
        };
      } catch (error) {
        return { status: 0, retryAfter: null, body: errorText(error) };
      }
    }),
  );
  const fail = (message: string, status?: number): never => {
    throw new CheckFailure(message, "GET", url, status);
  };
  const tally = new Map<number, number>();
  for (const a of answers) tally.set(a.status, (tally.get(a.status) ?? 0) + 1);
  const summary = [...tally]
    .sort(([a], [b]) => a - b)
    .map(([status, n]) => `${n}×${status || "no answer"}`)
    .join(", ");
  for (const answer of answers)
    if (answer.body.includes(key)) fail("an answer repeats the key that was sent", answer.status);
  if (!spent) {
    const odd = answers.find((a) => a.status !== 401);
    if (odd)
      fail(
        `${count} requests with one unknown key: ${summary}; expected only 401: an unknown key must be refused and spend no budget (${odd.status ? errorMessageFromBody(odd.body) : odd.body})`,
        odd.status || undefined,
      );
    return {
      detail: `${count} requests with one unknown key: ${summary}, no 429 (unknown keys spend no budget); pass --rate-limit-key to check the per-key limit`,
    };
  }
  const odd = answers.find((a) => a.status !== 200 && a.status !== 429);
  if (odd)
    fail(
      `${count} requests with the rate-limit key: ${summary}; expected only 200 and 429 (${odd.status ? errorMessageFromBody(odd.body) : odd.body})`,
      odd.status || undefined,
    );
  const limited = answers.filter((a) => a.status === 429);
  if (limited.length === 0)
    fail(
      `${count} requests with the rate-limit key at once, none answered 429 (${summary}): is its burst above --rate-burst ${hub.options.rateBurst}?`,
      200,
    );
  for (const answer of limited) {
    const problem = openAiErrorProblem(answer.body);
    if (problem) fail(`the 429 is not an OpenAI-format error: ${problem}`, 429);
    if (!answer.retryAfter || !/^\d+$|^[A-Z][a-z]{2}, /.test(answer.retryAfter.trim()))
      fail(`the 429 has no usable Retry-After header (${JSON.stringify(answer.retryAfter)})`, 429);
  }
  return {
    detail: `${count} requests with the rate-limit key: ${summary}; Retry-After ${limited[0].retryAfter} (${snippet(errorMessageFromBody(limited[0].body), 60)})`,
  };
}

// ---------------------------------------------------------------------------------------------
// A PNG of known text, drawn with a built-in 5×7 font: no native image library, no font files.

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;
/** Blank font pixels between glyphs and around the text. */
export const GLYPH_GAP = 1;
export const TEXT_MARGIN = 4;
/** Image pixels per font pixel: glyphs 70 px tall, well within what OCR models read. */
export const PNG_SCALE = 10;

/** Rows top to bottom, `#` ink. Upper-case letters, digits and space. */
export const FONT: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries({
    A: ".###.|#...#|#...#|#####|#...#|#...#|#...#",
    B: "####.|#...#|#...#|####.|#...#|#...#|####.",
    C: ".###.|#...#|#....|#....|#....|#...#|.###.",
    D: "####.|#...#|#...#|#...#|#...#|#...#|####.",
    E: "#####|#....|#....|####.|#....|#....|#####",
    F: "#####|#....|#....|####.|#....|#....|#....",
    G: ".###.|#...#|#....|#.###|#...#|#...#|.####",
    H: "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    I: ".###.|..#..|..#..|..#..|..#..|..#..|.###.",
    J: "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
    K: "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    L: "#....|#....|#....|#....|#....|#....|#####",
    M: "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    N: "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
    O: ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    P: "####.|#...#|#...#|####.|#....|#....|#....",
    Q: ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
    R: "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    S: ".####|#....|#....|.###.|....#|....#|####.",
    T: "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    U: "#...#|#...#|#...#|#...#|#...#|#...#|.###.",
    V: "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    W: "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
    X: "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    Y: "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    Z: "#####|....#|...#.|..#..|.#...|#....|#####",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
    "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.",
    "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    " ": ".....|.....|.....|.....|.....|.....|.....",
  }).map(([char, rows]) => [char, rows.split("|")]),
);

/** Black text on white, 8-bit grey, one IDAT: the simplest PNG every decoder reads. */
export function renderTextPng(text: string, scale: number = PNG_SCALE): Buffer {
  const glyphs = [...text.toUpperCase()].map((char) => {
    const glyph = FONT[char];
    if (!glyph) throw new Error(`the built-in font has no glyph for ${JSON.stringify(char)}`);
    return glyph;
  });
  const columns = TEXT_MARGIN * 2 + glyphs.length * (GLYPH_WIDTH + GLYPH_GAP) - GLYPH_GAP;
  const rows = TEXT_MARGIN * 2 + GLYPH_HEIGHT;
  const width = columns * scale;
  const height = rows * scale;
  const isInk = (column: number, row: number): boolean => {
    const x = column - TEXT_MARGIN;
    const y = row - TEXT_MARGIN;
    if (x < 0 || y < 0 || y >= GLYPH_HEIGHT) return false;
    const glyph = glyphs[Math.floor(x / (GLYPH_WIDTH + GLYPH_GAP))];
    const glyphColumn = x % (GLYPH_WIDTH + GLYPH_GAP);
    return glyph !== undefined && glyphColumn < GLYPH_WIDTH && glyph[y][glyphColumn] === "#";
  };

  // Each scanline: filter type 0 (none), then one byte per pixel.
  const stride = width + 1;
  const scanlines = Buffer.alloc(stride * height, 0xff);
  for (let y = 0; y < height; y++) {
    scanlines[y * stride] = 0;
    for (let x = 0; x < width; x++)
      if (isInk(Math.floor(x / scale), Math.floor(y / scale))) scanlines[y * stride + 1 + x] = 0;
  }

  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8); // bit depth 8, grey, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    PNG_SIGNATURE,
    pngChunk("IHDR", header),
    pngChunk("IDAT", deflateSync(scanlines)),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

// zlib.crc32 arrived in Node 20.15; a table keeps older 20.x working.
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Output

export function renderTable(report: SmokeReport): string {
  const header = ["check", "service", "result", "latency ms", "detail"] as const;
  const rows = report.checks.map((c) => [
    c.id,
    c.service,
    c.status,
    c.latencyMs === undefined ? "" : String(c.latencyMs),
    c.detail,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** One line, bounded: error bodies can be whole HTML pages. */
function snippet(text: string, max = 200): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function firstSentence(text: string): string {
  const end = text.search(/\.\s/);
  return (end >= 0 ? text.slice(0, end + 1) : text).replace(/\s+/g, " ").trim();
}
