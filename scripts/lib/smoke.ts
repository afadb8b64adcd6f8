import { parseArgs } from "node:util";
import { deflateSync } from "node:zlib";

/**
 * Smoke test of a running hub over its public API: one small real request per service, in the
 * order a client leans on them, stopping at the first broken one. Every check needs a correct
 * answer, not just a 200: the coder must say something, the speech services must round-trip a
 * sentence (text → audio → the same words), and OCR must read back text we drew ourselves.
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
  /** speaches needs a model id it has downloaded; the hub's default is Whisper base. */
  readonly sttModel: string;
  /** Coqui's tts-server ignores it (the model is fixed at start) but OpenAI clients send one. */
  readonly ttsModel: string;
  /** Only sent when set: Coqui treats it as a speaker id, which a single-speaker model has none of. */
  readonly voice?: string;
}

export const DEFAULTS = {
  ocrMode: "auto",
  // CPU-only tiers answer chat and document OCR in tens of seconds; two minutes leaves headroom.
  timeoutMs: 120_000,
  sttModel: "Systran/faster-whisper-base",
  ttsModel: "tts-1",
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

export type CheckId = "models" | "chat" | "chat-stream" | "tts" | "stt" | "ocr";
export type CheckStatus = "ok" | "failed" | "skipped";

/** In run order: each later check relies on what the earlier ones proved (the key, the gateway, the audio). */
export const CHECKS: readonly { readonly id: CheckId; readonly service: string }[] = [
  { id: "models", service: "models list" },
  { id: "chat", service: "chat (coder)" },
  { id: "chat-stream", service: "chat stream (coder)" },
  { id: "tts", service: "text to speech" },
  { id: "stt", service: "speech to text" },
  { id: "ocr", service: "OCR" },
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
  /** One line: the service, the request, the status and what the hub said. */
  readonly failure?: string;
}

// ---------------------------------------------------------------------------------------------
// Command line

export class UsageError extends Error {}

export type SmokeCommand = { readonly help: true } | { readonly help: false; readonly options: SmokeOptions; readonly json: boolean };

export const USAGE = [
  "Usage: npm run smoke -- --url <hub base URL, e.g. https://hub.example.com/v1> --key <api key>",
  "         [--ocr chat|convert|auto] [--timeout-ms N] [--json]",
  "         [--stt-model ID] [--tts-model NAME] [--voice NAME]",
  "The key may come from HUB_API_KEY instead of --key (keeps it out of the process list).",
  "Exit status: 0 every check passed, 1 bad invocation, 2 a service is broken.",
].join("\n");

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
        ocr: { type: "string", default: DEFAULTS.ocrMode },
        "timeout-ms": { type: "string", default: String(DEFAULTS.timeoutMs) },
        "stt-model": { type: "string", default: DEFAULTS.sttModel },
        "tts-model": { type: "string", default: DEFAULTS.ttsModel },
        voice: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    // parseArgs explains itself well; its hint about '--' is noise here.
    throw new UsageError(firstSentence(errorText(error)));
  }
  if (values.help) return { help: true };

  if (!values.url) throw new UsageError("missing --url (the hub's base URL, e.g. https://hub.example.com/v1)");
  const baseUrl = normalizeBaseUrl(values.url);
  const apiKey = values.key ?? env.HUB_API_KEY ?? "";
  if (!apiKey.trim()) throw new UsageError("missing --key (or HUB_API_KEY): the hub's API key, from `pulumi stack output hubApiKey --show-secrets`");
  const ocrMode = values.ocr as OcrMode;
  if (!OCR_MODES.includes(ocrMode)) throw new UsageError(`--ocr ${JSON.stringify(values.ocr)} is not one of ${OCR_MODES.join(", ")}`);
  const timeoutText = values["timeout-ms"];
  const timeoutMs = Number(timeoutText);
  if (!/^\d+$/.test(timeoutText) || timeoutMs <= 0) throw new UsageError(`--timeout-ms ${JSON.stringify(timeoutText)} is not a positive whole number of milliseconds`);
  for (const name of ["stt-model", "tts-model"] as const) if (!values[name].trim()) throw new UsageError(`--${name} is empty`);

  return {
    options: { baseUrl, apiKey: apiKey.trim(), ocrMode, timeoutMs, sttModel: values["stt-model"], ttsModel: values["tts-model"], ...(values.voice ? { voice: values.voice } : {}) },
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
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--url ${JSON.stringify(raw)} must be http:// or https://`);
  if (url.search || url.hash) throw new UsageError(`--url ${JSON.stringify(raw)} must not have a query or fragment: paths are appended to it`);
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

interface Outcome {
  readonly detail: string;
  /** Which backend answered, when the check can reach more than one (OCR). */
  readonly service?: string;
}

export interface SmokeHooks {
  /** Called as each check starts, for progress output on slow hubs. */
  readonly onStart?: (check: { readonly id: CheckId; readonly service: string }) => void;
}

export async function runSmoke(options: SmokeOptions, hooks: SmokeHooks = {}): Promise<SmokeReport> {
  const hub = new HubClient(options);
  let audio: SynthesizedAudio | undefined;
  const runners: Readonly<Record<CheckId, () => Promise<Outcome>>> = {
    models: () => checkModels(hub),
    chat: () => checkChat(hub),
    "chat-stream": () => checkChatStream(hub),
    tts: async () => {
      const result = await checkSpeech(hub, options);
      audio = result.audio;
      return result;
    },
    // Runs only after tts passed, so the audio is there.
    stt: () => checkTranscription(hub, options, audio as SynthesizedAudio),
    ocr: () => checkOcr(hub, options.ocrMode),
  };

  const results: CheckResult[] = [];
  let failure: string | undefined;
  for (const check of CHECKS) {
    if (failure) {
      results.push({ ...check, status: "skipped", detail: "not run: an earlier check failed" });
      continue;
    }
    hooks.onStart?.(check);
    const started = performance.now();
    try {
      const outcome = await runners[check.id]();
      results.push({ id: check.id, service: outcome.service ?? check.service, status: "ok", latencyMs: elapsedSince(started), detail: outcome.detail });
    } catch (error) {
      const latencyMs = elapsedSince(started);
      if (error instanceof CheckFailure) {
        results.push({ ...check, status: "failed", latencyMs, detail: error.message, method: error.method, url: error.url, httpStatus: error.httpStatus });
        failure = failureLine(check.service, error);
      } else {
        // A bug or an answer shaped so oddly the check tripped over it: still one line, still this service.
        const message = `unexpected error: ${errorText(error)}`;
        results.push({ ...check, status: "failed", latencyMs, detail: message });
        failure = `${check.service} failed: ${message}`;
      }
    }
  }
  return { ok: !failure, baseUrl: options.baseUrl, ocrMode: options.ocrMode, checks: results, ...(failure ? { failure } : {}) };
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

class HubClient {
  constructor(readonly options: SmokeOptions) {}

  /** Sends one request; a non-2xx answer fails the check with the error body's message. */
  async send(method: string, path: string, init: { readonly body?: string | FormData; readonly headers?: Readonly<Record<string, string>> } = {}): Promise<Exchange> {
    const url = `${this.options.baseUrl}${path}`;
    const timeoutMs = this.options.timeoutMs;
    // One deadline for headers and body alike.
    const signal = AbortSignal.timeout(timeoutMs);
    const headers: Record<string, string> = { Authorization: `Bearer ${this.options.apiKey}`, ...init.headers };
    if (typeof init.body === "string") headers["Content-Type"] = "application/json";

    let response: Response | undefined;
    const explain = (error: unknown): CheckFailure => {
      if (error instanceof CheckFailure) return error;
      if (isAbort(error)) return new CheckFailure(`no complete answer within ${timeoutMs} ms (--timeout-ms)`, method, url, response?.status);
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
  if (Array.isArray(detail)) return detail.map((d) => (isRecord(d) && typeof d.msg === "string" ? `${Array.isArray(d.loc) ? `${d.loc.join(".")}: ` : ""}${d.msg}` : JSON.stringify(d))).join("; ");
  if (typeof message === "string") return message;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The checks

async function checkModels(hub: HubClient): Promise<Outcome> {
  const exchange = await hub.send("GET", "/models");
  const body = await exchange.json();
  if (!isRecord(body) || !Array.isArray(body.data)) return exchange.fail(`expected {"data": [{"id": ...}]}, got ${snippet(JSON.stringify(body))}`);
  const ids = body.data.flatMap((model) => (isRecord(model) && typeof model.id === "string" ? [model.id] : []));
  if (!ids.includes(CODER_MODEL)) exchange.fail(`model "${CODER_MODEL}" is not listed (listed: ${ids.join(", ") || "none"})`);
  return { detail: `${ids.length} model${ids.length === 1 ? "" : "s"}: ${ids.join(", ")}` };
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
  const exchange = await hub.send("POST", "/chat/completions", { body: JSON.stringify({ ...CHAT_REQUEST, stream: true }), headers: { Accept: "text/event-stream" } });
  const contentType = exchange.response.headers.get("content-type") ?? "";
  if (contentType.includes("json")) exchange.fail(`the answer is ${contentType}, not an event stream: ${errorMessageFromBody(await exchange.text())}`);
  const stream = await readChatStream(exchange);
  if (!stream.sawDone) exchange.fail(`the stream ended without "data: [DONE]" (after ${stream.contentDeltas} content deltas)`);
  if (stream.contentDeltas === 0) exchange.fail("the stream finished without any delta carrying content");
  return { detail: `${stream.contentDeltas} content deltas, then [DONE]: ${JSON.stringify(snippet(stream.text.trim(), 60))}` };
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
    if (isRecord(event) && event.error !== undefined) exchange.fail(`error in the stream: ${errorMessageFromBody(data)}`);
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
  if (Array.isArray(content)) return content.map((part) => (isRecord(part) && typeof part.text === "string" ? part.text : "")).join("");
  return undefined;
}

export type AudioFormat = "wav" | "mp3" | "ogg" | "flac";

interface SynthesizedAudio {
  readonly bytes: Uint8Array;
  readonly format: AudioFormat | undefined;
  readonly contentType: string;
}

async function checkSpeech(hub: HubClient, options: SmokeOptions): Promise<Outcome & { readonly audio: SynthesizedAudio }> {
  // WAV: every speech-to-text server decodes it, and its header is easy to recognise.
  const request = { model: options.ttsModel, input: SPOKEN_SENTENCE, response_format: "wav", ...(options.voice ? { voice: options.voice } : {}) };
  const exchange = await hub.send("POST", "/audio/speech", { body: JSON.stringify(request) });
  const contentType = exchange.response.headers.get("content-type") ?? "";
  const bytes = await exchange.bytes();
  if (/json|^text\//.test(contentType)) exchange.fail(`the answer is ${contentType}, not audio: ${errorMessageFromBody(new TextDecoder().decode(bytes))}`);
  const format = detectAudioFormat(bytes);
  if (!format && !contentType.startsWith("audio/")) exchange.fail(`the answer is ${bytes.length} bytes of ${contentType || "no content type"} that are not WAV, MP3, Ogg or FLAC`);
  if (bytes.length < MIN_AUDIO_BYTES) exchange.fail(`the audio is only ${bytes.length} bytes (expected at least ${MIN_AUDIO_BYTES} for a spoken sentence)`);
  return { detail: `${(format ?? contentType).toUpperCase()}, ${(bytes.length / 1024).toFixed(1)} KiB for ${JSON.stringify(SPOKEN_SENTENCE)}`, audio: { bytes, format, contentType } };
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

async function checkTranscription(hub: HubClient, options: SmokeOptions, audio: SynthesizedAudio): Promise<Outcome> {
  const extension = audio.format ?? "wav";
  const form = new FormData();
  form.append("file", new Blob([audio.bytes], { type: audio.contentType || `audio/${extension}` }), `smoke.${extension}`);
  form.append("model", options.sttModel);
  // The sentence is English; saying so spares Whisper a language guess on a short clip.
  form.append("language", "en");
  form.append("response_format", "json");
  const exchange = await hub.send("POST", "/audio/transcriptions", { body: form });
  const body = await exchange.json();
  if (!isRecord(body) || typeof body.text !== "string") return exchange.fail(`expected {"text": ...}, got ${snippet(JSON.stringify(body))}`);
  const match = wordMatch(SPOKEN_SENTENCE, body.text);
  if (match.found < match.needed) exchange.fail(`the transcript ${JSON.stringify(snippet(body.text, 100))} has ${match.found} of the ${match.total} words spoken (need ${match.needed})`);
  return { detail: `heard ${match.found}/${match.total} words: ${JSON.stringify(snippet(body.text.trim(), 60))}` };
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

export function wordMatch(expected: string, heard: string): { readonly found: number; readonly total: number; readonly needed: number } {
  const heardWords = new Set(normalizeWords(heard));
  const expectedWords = normalizeWords(expected);
  const found = expectedWords.filter((word) => heardWords.has(word)).length;
  return { found, total: expectedWords.length, needed: Math.ceil(expectedWords.length * MIN_WORD_SHARE) };
}

/** Letters and digits only, upper case: OCR may add spaces, line breaks or markdown around the text. */
export function compactText(text: string): string {
  return text.toUpperCase().replace(/[^A-Z0-9]+/g, "");
}

async function checkOcr(hub: HubClient, mode: OcrMode): Promise<Outcome> {
  const png = renderTextPng(OCR_TEXT);
  if (mode === "chat") return ocrByChat(hub, png);
  if (mode === "convert") return ocrByConvert(hub, png);
  try {
    return await ocrByChat(hub, png);
  } catch (error) {
    // 404: no DeepSeek-OCR route (cpu tier); 503: the GPU is off. docling is the other way in.
    if (!(error instanceof CheckFailure) || (error.httpStatus !== 404 && error.httpStatus !== 503)) throw error;
    const chatAnswer = `${error.method} ${error.url} answered HTTP ${error.httpStatus}: ${error.message}`;
    try {
      const outcome = await ocrByConvert(hub, png);
      return { ...outcome, detail: `${outcome.detail} (chat answered HTTP ${error.httpStatus}, so tried convert)` };
    } catch (fallbackError) {
      if (!(fallbackError instanceof CheckFailure)) throw fallbackError;
      throw new CheckFailure(`${fallbackError.message} (tried after ${chatAnswer})`, fallbackError.method, fallbackError.url, fallbackError.httpStatus);
    }
  }
}

async function ocrByChat(hub: HubClient, png: Buffer): Promise<Outcome> {
  const request = {
    model: OCR_CHAT_MODEL,
    messages: [
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: `data:image/png;base64,${png.toString("base64")}` } },
          { type: "text", text: "Free OCR." },
        ],
      },
    ],
    temperature: 0,
    max_tokens: 256,
  };
  const exchange = await hub.send("POST", "/ocr/chat/completions", { body: JSON.stringify(request) });
  const body = await exchange.json();
  const content = messageContent(body);
  if (content === undefined) return exchange.fail(`no choices[0].message.content in ${snippet(JSON.stringify(body))}`);
  return { service: "OCR (DeepSeek-OCR chat)", detail: readBack(exchange, content) };
}

async function ocrByConvert(hub: HubClient, png: Buffer): Promise<Outcome> {
  const form = new FormData();
  form.append("files", new Blob([png], { type: "image/png" }), "smoke-ocr.png");
  for (const format of ["md", "text"]) form.append("to_formats", format);
  form.append("do_ocr", "true");
  // The image has no text layer anyway; forcing OCR makes that explicit.
  form.append("force_ocr", "true");
  // Keeps a base64 copy of the image out of the markdown.
  form.append("image_export_mode", "placeholder");
  // docling checks its own header, not Authorization; the key is the same.
  const exchange = await hub.send("POST", "/ocr/convert/file", { body: form, headers: { "X-Api-Key": hub.options.apiKey } });
  const body = await exchange.json();
  const document = isRecord(body) ? body.document : undefined;
  const texts = isRecord(document) ? [document.md_content, document.text_content].filter((t): t is string => typeof t === "string") : [];
  if (texts.length === 0) return exchange.fail(`no document.md_content or document.text_content in ${snippet(JSON.stringify(body))}`);
  return { service: "OCR (docling convert)", detail: readBack(exchange, texts.join("\n")) };
}

function readBack(exchange: Exchange, recognised: string): string {
  if (!compactText(recognised).includes(compactText(OCR_TEXT))) exchange.fail(`read ${JSON.stringify(snippet(recognised.trim(), 100))}, not ${JSON.stringify(OCR_TEXT)}`);
  return `read ${JSON.stringify(OCR_TEXT)} from a generated PNG`;
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
    for (let x = 0; x < width; x++) if (isInk(Math.floor(x / scale), Math.floor(y / scale))) scanlines[y * stride + 1 + x] = 0;
  }

  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8); // bit depth 8, grey, deflate, adaptive filtering, no interlace
  return Buffer.concat([PNG_SIGNATURE, pngChunk("IHDR", header), pngChunk("IDAT", deflateSync(scanlines)), pngChunk("IEND", Buffer.alloc(0))]);
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
  const rows = report.checks.map((c) => [c.id, c.service, c.status, c.latencyMs === undefined ? "" : String(c.latencyMs), c.detail]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]))).join("  ");
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
