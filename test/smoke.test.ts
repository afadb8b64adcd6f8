import { createServer, IncomingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { inflateSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import {
  CHECKS,
  CheckId,
  EMBEDDING_TEXTS,
  errorMessageFromBody,
  FONT,
  GLYPH_GAP,
  GLYPH_HEIGHT,
  GLYPH_WIDTH,
  mp3Problem,
  OCR_TEXT,
  parseSmokeArgs,
  rateCheckRequests,
  renderTextPng,
  runSmoke,
  SmokeOptions,
  SmokeReport,
  SPOKEN_SENTENCE,
  TEXT_MARGIN,
  UNSERVED_STT_MODEL,
  wordMatch,
} from "../cli/smoke/checks";
import { spawnScript } from "./helpers/cli";

const KEY = "ihk_test-full-key";
const LLM_KEY = "ihk_test-llm-only-key";
/** The key the rate-limit check may empty. */
const RATE_KEY = "ihk_test-rate-limit-key";
/** The Whisper model the stand-in hub "serves" (what sttModel base resolves to). */
const SERVED_STT = "Systran/faster-whisper-base";
/** Small, so the rate-limit check sends few requests; the CLI tests pass it as --rate-burst. */
const BURST = 4;

// =============================================================================================
// A STAND-IN for a whole hub: a "gateway" layer in front of stand-ins for the API shapes of the
// programs behind it (vLLM / llama.cpp for `coder`, Coqui TTS, speaches, DeepSeek-OCR on vLLM,
// docling-serve). NOT implementations: each answers just enough of the documented shape, and
// checks just enough of the request, for the smoke check to tell a working hub from a broken one.
// The gateway layer does what the real one promises (the gatekeeper's rate limit per known key,
// after the key and scope checks; 401 / 403 / 429 as OpenAI-format errors, Retry-After) unless a
// test breaks it on purpose.
// The speech pair cheats on purpose: the "TTS" writes the text into a RIFF INFO chunk of its WAV
// and the "STT" reads it back, so the round trip is testable without a voice model.
// Every request a backend receives is recorded.
// =============================================================================================

type Route =
  | "models"
  | "chat"
  | "completions"
  | "speech"
  | "transcriptions"
  | "translations"
  | "ocr-chat"
  | "ocr-convert"
  | "ocr-async"
  | "ocr-poll"
  | "ocr-result"
  | "embeddings"
  | "embeddings-model";
const SCOPES: Readonly<Record<Route, string>> = {
  models: "llm",
  chat: "llm",
  completions: "llm",
  speech: "tts",
  transcriptions: "stt",
  translations: "stt",
  "ocr-chat": "ocr",
  "ocr-convert": "ocr",
  "ocr-async": "ocr",
  "ocr-poll": "ocr",
  "ocr-result": "ocr",
  embeddings: "embeddings",
  "embeddings-model": "embeddings",
};

function routeOf(method: string, url: string): Route | undefined {
  const pathname = url.split("?")[0];
  const exact: Record<string, Route> = {
    "GET /v1/models": "models",
    "POST /v1/chat/completions": "chat",
    "POST /v1/completions": "completions",
    "POST /v1/audio/speech": "speech",
    "POST /v1/audio/transcriptions": "transcriptions",
    "POST /v1/audio/translations": "translations",
    "POST /v1/ocr/chat/completions": "ocr-chat",
    "POST /v1/ocr/convert/file": "ocr-convert",
    "POST /v1/ocr/convert/file/async": "ocr-async",
    "POST /v1/embeddings": "embeddings",
    [`GET /v1/models/${EMBEDDING_MODEL}`]: "embeddings-model",
  };
  if (exact[`${method} ${pathname}`]) return exact[`${method} ${pathname}`];
  if (method === "GET" && pathname.startsWith("/v1/ocr/status/poll/")) return "ocr-poll";
  if (method === "GET" && pathname.startsWith("/v1/ocr/result/")) return "ocr-result";
  return undefined;
}

interface StandInRequest {
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}
type Handler = (request: StandInRequest, response: ServerResponse) => void | Promise<void>;
/** null: the route does not exist on this hub (the gateway's 404, as on the cpu tier for OCR chat). */
type Overrides = Partial<Record<Route, Handler | null>>;

interface GatewayBehaviour {
  /** Keys and their scopes. */
  readonly keys: ReadonlyMap<string, readonly string[]>;
  /** Per known key per route, as the gatekeeper's; 0 turns it off. */
  readonly burst: number;
  /** Broken on purpose: counts every Authorization header before the key check, so unknown keys get 429s. */
  readonly limitUnknownKeys: boolean;
  /** false: Traefik's own plain-text 429. */
  readonly jsonRateLimit: boolean;
  readonly retryAfter: boolean;
  /** Broken on purpose: lets unknown keys through, or ignores scopes. */
  readonly acceptUnknownKeys: boolean;
  readonly ignoreScopes: boolean;
}

const openAiError = (message: string, type: string, code: string | null) => ({ error: { message, type, code } });
/** The gateway's body while the GPU is off (same shape as services/gateway.ts GPU_OFF_ERROR). */
const GPU_OFF = openAiError(
  "The GPU tier of this inference hub is switched off, so this model is not being served right now.",
  "server_error",
  "gpu_off",
);

function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

function badRequest(response: ServerResponse, message: string): void {
  sendJson(response, 400, openAiError(`stand-in: ${message}`, "invalid_request_error", null));
}

const chatCompletion = (model: string, content: string, finishReason = "stop") => ({
  id: "chatcmpl-standin",
  object: "chat.completion",
  model,
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finishReason }],
});
const chatChunk = (delta: Record<string, unknown>) =>
  `data: ${JSON.stringify({ id: "chatcmpl-standin", object: "chat.completion.chunk", model: "coder", choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;

function startEventStream(response: ServerResponse): void {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
}

/** multipart/form-data parsed by undici, as the real servers' frameworks would. */
function formDataOf(request: StandInRequest): Promise<FormData> {
  return new Request("http://stand-in/", {
    method: "POST",
    headers: { "content-type": String(request.headers["content-type"]) },
    body: request.body,
  }).formData();
}

/**
 * MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz, no padding: header FF FB 90 00; each frame is
 * 144 × 128000 / 44100 = 417 bytes (ISO/IEC 11172-3), after a 10-byte ID3v2.4 tag of size 0.
 */
function mp3Frames(frames: number): Buffer {
  const frame = Buffer.alloc(417);
  frame.set([0xff, 0xfb, 0x90, 0x00]);
  return Buffer.concat([Buffer.from("ID3\x04\x00\x00\x00\x00\x00\x00", "latin1"), ...Array(frames).fill(frame)]);
}

/** The n-gram processor's arguments as the vLLM recipe's online example sends them (DeepSeek/DeepSeek-OCR.md). */
const RECIPE_XARGS = { ngram_size: 30, window_size: 90, whitelist_token_ids: [128821, 128822] };

/** docling's async tasks: submitted → one "started" poll → success. */
const doclingTasks = new Map<string, { text: string; polls: number }>();

/** speaches with the hub's launcher: whisper-1 and the served repo work, any other model is a 400. */
async function sttHandler(request: StandInRequest, response: ServerResponse): Promise<void> {
  const form = await formDataOf(request);
  const file = form.get("file");
  const model = form.get("model");
  if (model !== "whisper-1" && model !== SERVED_STT)
    return sendJson(
      response,
      400,
      openAiError(
        `The model '${String(model)}' is not served by this hub: send model 'whisper-1' or '${SERVED_STT}'.`,
        "invalid_request_error",
        "model_not_found",
      ),
    );
  if (!(file instanceof Blob)) return badRequest(response, "file is required");
  const text = textInWav(Buffer.from(await file.arrayBuffer()));
  if (text === undefined) return sendJson(response, 400, { detail: "stand-in: no speech found in the audio" });
  sendJson(response, 200, { text: ` ${text}` });
}

const DEFAULT_HANDLERS: Readonly<Record<Route, Handler>> = {
  // vLLM with one LoRA adapter: listed with the coder as its parent, named as `model` in its answers.
  models(_request, response) {
    sendJson(response, 200, {
      object: "list",
      data: [
        { id: "coder", object: "model", owned_by: "vllm" },
        { id: "coder-team", object: "model", owned_by: "vllm", parent: "coder" },
      ],
    });
  },
  chat(request, response) {
    const body = JSON.parse(request.body.toString("utf8"));
    if (!["coder", "coder-team"].includes(body.model) || !Array.isArray(body.messages))
      return badRequest(response, "expected model coder or coder-team and messages");
    if (!body.stream) return sendJson(response, 200, chatCompletion(body.model, "ready"));
    startEventStream(response);
    response.write(chatChunk({ role: "assistant", content: "" }));
    response.write(chatChunk({ content: "rea" }));
    response.write(chatChunk({ content: "dy" }));
    response.end("data: [DONE]\n\n");
  },
  completions(request, response) {
    const body = JSON.parse(request.body.toString("utf8"));
    if (body.model !== "coder" || typeof body.prompt !== "string")
      return badRequest(response, "expected model coder and a prompt");
    sendJson(response, 200, {
      id: "cmpl-standin",
      object: "text_completion",
      model: "coder",
      choices: [{ index: 0, text: " a + b", finish_reason: "stop" }],
    });
  },
  // Coqui tts-server behind the format guard: wav and mp3 work.
  speech(request, response) {
    const body = JSON.parse(request.body.toString("utf8"));
    if (typeof body.input !== "string" || !body.input) return badRequest(response, "input is required");
    const format = body.response_format ?? "mp3";
    if (format === "wav") {
      response.writeHead(200, { "content-type": "audio/wav" });
      return void response.end(wavCarrying(body.input));
    }
    if (format === "mp3") {
      response.writeHead(200, { "content-type": "audio/mpeg" });
      return void response.end(mp3Frames(5));
    }
    sendJson(
      response,
      400,
      openAiError(
        `response_format '${format}' is not available; use one of: mp3, wav.`,
        "invalid_request_error",
        "unsupported_response_format",
      ),
    );
  },
  transcriptions: sttHandler,
  translations: sttHandler,
  // DeepSeek-OCR behind vLLM's chat API: without the n-gram arguments it repeats itself to max_tokens.
  "ocr-chat"(request, response) {
    const body = JSON.parse(request.body.toString("utf8"));
    const parts = body.messages?.[0]?.content;
    const image = Array.isArray(parts)
      ? parts.find((p: { type?: string }) => p.type === "image_url")?.image_url?.url
      : undefined;
    const prompt = Array.isArray(parts) ? parts.find((p: { type?: string }) => p.type === "text")?.text : undefined;
    if (body.model !== "deepseek-ocr" || body.temperature !== 0)
      return badRequest(response, "expected model deepseek-ocr at temperature 0");
    if (typeof image !== "string" || !image.startsWith("data:image/png;base64,") || prompt !== "Free OCR.")
      return badRequest(response, "expected a PNG data URL and the prompt");
    const text = readTextFromPng(Buffer.from(image.slice("data:image/png;base64,".length), "base64"));
    const filtered = typeof body.vllm_xargs?.ngram_size === "number";
    sendJson(
      response,
      200,
      filtered
        ? chatCompletion("deepseek-ocr", `${text}\n`)
        : chatCompletion("deepseek-ocr", `${text}\n`.repeat(40), "length"),
    );
  },
  // docling-serve /v1/convert/file: multipart `files`.
  async "ocr-convert"(request, response) {
    const form = await formDataOf(request);
    const file = form.get("files");
    if (!(file instanceof Blob))
      return sendJson(response, 422, { detail: [{ loc: ["body", "files"], msg: "Field required" }] });
    const text = readTextFromPng(Buffer.from(await file.arrayBuffer()));
    sendJson(response, 200, {
      document: { filename: "smoke-ocr.png", md_content: `${text}\n`, text_content: text },
      status: "success",
      errors: [],
      processing_time: 0.01,
    });
  },
  async "ocr-async"(request, response) {
    const form = await formDataOf(request);
    const file = form.get("files");
    if (!(file instanceof Blob))
      return sendJson(response, 422, { detail: [{ loc: ["body", "files"], msg: "Field required" }] });
    const id = `task-${doclingTasks.size + 1}`;
    doclingTasks.set(id, { text: readTextFromPng(Buffer.from(await file.arrayBuffer())), polls: 0 });
    sendJson(response, 200, { task_id: id, task_status: "pending" });
  },
  "ocr-poll"(request, response) {
    const id = decodeURIComponent(request.url.split("?")[0].split("/").at(-1) ?? "");
    const task = doclingTasks.get(id);
    if (!task) return sendJson(response, 404, { detail: "Task not found." });
    task.polls += 1;
    sendJson(response, 200, { task_id: id, task_status: task.polls > 1 ? "success" : "started" });
  },
  // The embeddings front over llama-server: bag-of-words vectors (a word adds to hashed components), so paraphrases sharing words are near.
  embeddings(request, response) {
    const body = JSON.parse(request.body.toString("utf8"));
    if (body.model !== EMBEDDING_MODEL)
      return sendJson(
        response,
        404,
        openAiError(
          `The model \`${String(body.model)}\` does not exist or you do not have access to it.`,
          "invalid_request_error",
          "model_not_found",
        ),
      );
    const inputs: string[] = typeof body.input === "string" ? [body.input] : body.input;
    if (inputs.some((t) => t === ""))
      return sendJson(response, 400, openAiError("`input` is empty.", "invalid_request_error", "empty_input"));
    // Matryoshka as the front does it: the leading components, back at unit length.
    const vectors = inputs.map((t) => {
      const head = wordVector(t, 1024).slice(0, body.dimensions ?? 1024);
      const n = Math.hypot(...head);
      return head.map((x) => x / n);
    });
    const data = vectors.map((v, index) => {
      if (body.encoding_format !== "base64") return { object: "embedding", index, embedding: v };
      const b = Buffer.alloc(v.length * 4);
      v.forEach((x, i) => b.writeFloatLE(x, i * 4));
      return { object: "embedding", index, embedding: b.toString("base64") };
    });
    sendJson(response, 200, {
      object: "list",
      model: EMBEDDING_MODEL,
      data,
      usage: { prompt_tokens: 30, total_tokens: 30 },
    });
  },
  "embeddings-model"(_request, response) {
    sendJson(response, 200, { id: EMBEDDING_MODEL, object: "model", created: 0, owned_by: "inference-hub" });
  },
  "ocr-result"(request, response) {
    const task = doclingTasks.get(decodeURIComponent(request.url.split("/").at(-1) ?? ""));
    if (!task || task.polls < 2)
      return sendJson(response, 404, { detail: "Task result not found. Please wait for a completion status." });
    sendJson(response, 200, { document: { md_content: `${task.text}\n` }, status: "success" });
  },
};

const EMBEDDING_MODEL = "qwen3-embedding-0.6b";

function wordVector(text: string, dimensions: number): number[] {
  const v = new Array<number>(dimensions).fill(0);
  for (const word of text
    .toLowerCase()
    .split(/[^a-z]+/)
    .filter(Boolean)) {
    for (let k = 0; k < 8; k++) {
      let h = 2166136261;
      for (const c of `${word}#${k}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
      v[h % dimensions] += 1;
    }
  }
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

interface StandInHub {
  readonly baseUrl: string;
  /** Every request that reached a backend, by route. */
  readonly received: Map<Route, StandInRequest[]>;
  readonly close: () => Promise<void>;
}

const openHubs: StandInHub[] = [];
afterEach(async () => {
  await Promise.all(openHubs.splice(0).map((hub) => hub.close()));
});

const DEFAULT_GATEWAY: GatewayBehaviour = {
  keys: new Map([
    [KEY, ["llm", "stt", "tts", "ocr", "embeddings"]],
    [LLM_KEY, ["llm"]],
    [RATE_KEY, ["llm"]],
  ]),
  burst: BURST,
  limitUnknownKeys: false,
  jsonRateLimit: true,
  retryAfter: true,
  acceptUnknownKeys: false,
  ignoreScopes: false,
};

async function startStandInHub(
  overrides: Overrides = {},
  gatewayChanges: Partial<GatewayBehaviour> = {},
): Promise<StandInHub> {
  const gateway = { ...DEFAULT_GATEWAY, ...gatewayChanges };
  const buckets = new Map<string, number>();
  const received = new Map<Route, StandInRequest[]>();
  const server = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
    incoming.on("end", () => {
      const route = routeOf(incoming.method ?? "", incoming.url ?? "");
      const handler = route === undefined ? null : route in overrides ? overrides[route] : DEFAULT_HANDLERS[route];
      if (!route || !handler) {
        // Traefik's answer for a path no router matches.
        response.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
        return void response.end("404 page not found\n");
      }
      const authorization = String(incoming.headers.authorization ?? "");
      const limited = () => {
        const bucket = `${route} ${authorization}`;
        const used = (buckets.get(bucket) ?? 0) + 1;
        buckets.set(bucket, used);
        if (gateway.burst === 0 || used <= gateway.burst) return false;
        const headers: Record<string, string> = gateway.retryAfter ? { "retry-after": "1" } : {};
        if (!gateway.jsonRateLimit) {
          response.writeHead(429, { "content-type": "text/plain; charset=utf-8", ...headers });
          response.end("Too Many Requests");
        } else
          sendJson(
            response,
            429,
            openAiError(
              "Rate limit reached for this API key; retry after 1 s.",
              "rate_limit_error",
              "rate_limit_exceeded",
            ),
            headers,
          );
        return true;
      };
      if (gateway.limitUnknownKeys && limited()) return;
      const key = authorization.startsWith("Bearer ")
        ? authorization.slice("Bearer ".length)
        : String(incoming.headers["x-api-key"] ?? "");
      const scopes = gateway.keys.get(key) ?? (gateway.acceptUnknownKeys ? Object.values(SCOPES) : undefined);
      if (!scopes)
        return sendJson(
          response,
          401,
          openAiError("Missing or unknown API key.", "invalid_request_error", "invalid_api_key"),
        );
      if (!gateway.ignoreScopes && !scopes.includes(SCOPES[route]))
        return sendJson(
          response,
          403,
          openAiError(`This key lacks the ${SCOPES[route]} scope.`, "invalid_request_error", "insufficient_scope"),
        );
      // Per key and route, only for a key that may use the route (programs/gatekeeper/server.ts decide).
      if (!gateway.limitUnknownKeys && limited()) return;
      const request: StandInRequest = {
        url: incoming.url ?? "",
        headers: incoming.headers,
        body: Buffer.concat(chunks),
      };
      received.set(route, [...(received.get(route) ?? []), request]);
      Promise.resolve(handler(request, response)).catch((error: Error) => badRequest(response, error.message));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const hub: StandInHub = {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        // Handlers that never answer keep sockets open; cut them so close() returns.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  openHubs.push(hub);
  return hub;
}

// --- The speech stand-ins' trick: text carried in a RIFF LIST/INFO "ICMT" (comment) chunk. ---

function riffChunk(id: string, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.write(id, 0, "ascii");
  header.writeUInt32LE(data.length, 4);
  // RIFF chunks are word aligned.
  return Buffer.concat([header, data, Buffer.alloc(data.length % 2)]);
}

/** A valid 16 kHz mono 16-bit WAV (0.25 s of a quiet tone) whose INFO comment is the text. */
function wavCarrying(text: string): Buffer {
  const sampleRate = 16_000;
  const format = Buffer.alloc(16);
  format.writeUInt16LE(1, 0); // PCM
  format.writeUInt16LE(1, 2); // mono
  format.writeUInt32LE(sampleRate, 4);
  format.writeUInt32LE(sampleRate * 2, 8);
  format.writeUInt16LE(2, 12);
  format.writeUInt16LE(16, 14);
  const samples = Buffer.alloc(sampleRate / 2);
  for (let i = 0; i < samples.length / 2; i++)
    samples.writeInt16LE(Math.round(1000 * Math.sin((2 * Math.PI * 440 * i) / sampleRate)), i * 2);
  const info = riffChunk(
    "LIST",
    Buffer.concat([Buffer.from("INFO"), riffChunk("ICMT", Buffer.from(`${text}\0`, "utf8"))]),
  );
  const body = Buffer.concat([Buffer.from("WAVE"), riffChunk("fmt ", format), info, riffChunk("data", samples)]);
  return riffChunk("RIFF", body);
}

function textInWav(wav: Buffer): string | undefined {
  if (wav.toString("ascii", 0, 4) !== "RIFF" || wav.toString("ascii", 8, 12) !== "WAVE") return undefined;
  const walk = (start: number, end: number): string | undefined => {
    for (let at = start; at + 8 <= end; ) {
      const id = wav.toString("ascii", at, at + 4);
      const size = wav.readUInt32LE(at + 4);
      if (id === "LIST" && wav.toString("ascii", at + 8, at + 12) === "INFO") {
        const found = walk(at + 12, at + 8 + size);
        if (found !== undefined) return found;
      }
      if (id === "ICMT") return wav.toString("utf8", at + 8, at + 8 + size).replace(/\0+$/, "");
      at += 8 + size + (size % 2);
    }
    return undefined;
  };
  return walk(12, wav.length);
}

// --- The OCR stand-ins' reader: decodes the PNG and matches 5×7 cells against the font. ---

/** Bitwise CRC-32, independent of the table-driven one under test. */
function referenceCrc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Reads just what the smoke check writes (8-bit grey, unfiltered rows), verifying every CRC. */
function decodeGreyPng(png: Buffer): {
  readonly width: number;
  readonly height: number;
  readonly pixel: (x: number, y: number) => number;
} {
  if (!png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])))
    throw new Error("not a PNG");
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString("ascii", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (referenceCrc32(png.subarray(at + 4, at + 8 + length)) !== png.readUInt32BE(at + 8 + length))
      throw new Error(`bad CRC on ${type}`);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[9] !== 0 || data[12] !== 0)
        throw new Error("the stand-in reads only 8-bit grey, non-interlaced PNGs");
    }
    if (type === "IDAT") idat.push(data);
    if (type === "IEND") break;
    at += 12 + length;
  }
  const scanlines = inflateSync(Buffer.concat(idat));
  if (scanlines.length !== (width + 1) * height) throw new Error("image data does not match IHDR");
  for (let y = 0; y < height; y++)
    if (scanlines[y * (width + 1)] !== 0) throw new Error("the stand-in reads only unfiltered rows");
  return { width, height, pixel: (x, y) => scanlines[y * (width + 1) + 1 + x] };
}

function readTextFromPng(png: Buffer): string {
  const image = decodeGreyPng(png);
  // The layout is known (margins, 5×7 cells, 1-cell gaps); only the scale and glyph count are read off the image.
  const scale = image.height / (GLYPH_HEIGHT + 2 * TEXT_MARGIN);
  const columns = image.width / scale;
  const glyphCount = (columns - 2 * TEXT_MARGIN + GLYPH_GAP) / (GLYPH_WIDTH + GLYPH_GAP);
  if (!Number.isInteger(scale) || !Number.isInteger(glyphCount))
    throw new Error(`unexpected image size ${image.width}×${image.height}`);
  const glyphs = Object.entries(FONT);
  let text = "";
  for (let g = 0; g < glyphCount; g++) {
    const rows = Array.from({ length: GLYPH_HEIGHT }, (_, row) =>
      Array.from({ length: GLYPH_WIDTH }, (_, column) => {
        const x = (TEXT_MARGIN + g * (GLYPH_WIDTH + GLYPH_GAP) + column) * scale + Math.floor(scale / 2);
        const y = (TEXT_MARGIN + row) * scale + Math.floor(scale / 2);
        return image.pixel(x, y) < 128 ? "#" : ".";
      }).join(""),
    );
    text += glyphs.find(([, glyph]) => glyph.join("|") === rows.join("|"))?.[0] ?? "?";
  }
  return text;
}

// =============================================================================================

function optionsFor(hub: StandInHub, overrides: Partial<SmokeOptions> = {}): SmokeOptions {
  return {
    baseUrl: hub.baseUrl,
    apiKey: KEY,
    llmOnlyKey: LLM_KEY,
    ocrMode: "auto",
    timeoutMs: 5_000,
    sttModel: "whisper-1",
    ttsModel: "tts-1",
    rateLimitKey: RATE_KEY,
    rateBurst: BURST,
    ratePerMinute: 6,
    embeddingModel: EMBEDDING_MODEL,
    ...overrides,
  };
}

const statuses = (report: SmokeReport) => Object.fromEntries(report.checks.map((c) => [c.id, c.status]));

/**
 * Asserts exactly `failed` failed (each with one failure line), `skipped` were skipped, the rest
 * passed. ocr-async is skipped unless named: DeepSeek-OCR answers OCR on a default stand-in hub.
 */
function expectFailed(report: SmokeReport, failed: readonly CheckId[], skipped: readonly CheckId[] = []): string[] {
  expect(report.ok).toBe(false);
  const baseline = (id: CheckId) => (id === "ocr-async" && report.ocrMode !== "convert" ? "skipped" : "ok");
  const expected = Object.fromEntries(
    CHECKS.map((c) => [c.id, failed.includes(c.id) ? "failed" : skipped.includes(c.id) ? "skipped" : baseline(c.id)]),
  );
  expect(statuses(report)).toEqual(expected);
  expect(report.failures).toHaveLength(failed.length);
  for (const line of report.failures) expect(line).not.toContain("\n");
  return [...report.failures];
}

interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Asynchronous on purpose: the stand-in hub answers from this same process. */
function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const { HUB_API_KEY: _ignored, HUB_LLM_ONLY_KEY: _ignoredToo, ...inherited } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawnScript("smoke", args, { env: { ...inherited, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

const NO_STACK_TRACE = /\n\s+at .*[(:]/;

describe("the generated OCR image", () => {
  it("is a valid PNG whose pixels spell the known text", () => {
    const png = renderTextPng(OCR_TEXT);
    const image = decodeGreyPng(png);
    expect([image.width, image.height]).toEqual([430, 150]);
    expect(readTextFromPng(png)).toBe(OCR_TEXT);
  });

  it("draws every glyph of the font distinctly, 5×7", () => {
    for (const glyph of Object.values(FONT))
      expect(glyph.map((row) => row.length)).toEqual(Array(GLYPH_HEIGHT).fill(GLYPH_WIDTH));
    const alphabet = Object.keys(FONT).join("");
    expect(new Set(Object.values(FONT).map((g) => g.join("|"))).size).toBe(alphabet.length);
    expect(readTextFromPng(renderTextPng(alphabet, 3))).toBe(alphabet);
    expect(() => renderTextPng("héllo")).toThrow(/no glyph/);
  });
});

describe("helpers", () => {
  it("matches transcripts by words, ignoring case and punctuation", () => {
    expect(wordMatch(SPOKEN_SENTENCE, "the quick brown fox jumps over the lazy dog")).toMatchObject({
      found: 9,
      total: 9,
      needed: 7,
    });
    // "jumped" and "a" miss; the other "the" still counts.
    expect(wordMatch(SPOKEN_SENTENCE, "The quick, brown fox jumped over a lazy dog!").found).toBe(8);
    expect(wordMatch(SPOKEN_SENTENCE, "A quick brown box jumped over lazy dogs").found).toBe(4);
    expect(wordMatch(SPOKEN_SENTENCE, "Hello world.").found).toBe(0);
  });

  it("reads the message out of OpenAI, vLLM, FastAPI and proxy error bodies", () => {
    expect(errorMessageFromBody(JSON.stringify(GPU_OFF))).toMatch(/^The GPU tier .* \(gpu_off\)$/);
    expect(errorMessageFromBody('{"error":"Unauthorized"}')).toBe("Unauthorized");
    expect(errorMessageFromBody('{"detail":[{"loc":["body","model"],"msg":"Field required"}]}')).toBe(
      "body.model: Field required",
    );
    expect(errorMessageFromBody("<html><body><h1>502 Bad Gateway</h1></body></html>")).toBe("502 Bad Gateway");
    expect(errorMessageFromBody("")).toBe("(empty body)");
  });

  it("tells MP3 frames from bytes that only start like them", () => {
    expect(mp3Problem(mp3Frames(3))).toBeUndefined();
    expect(mp3Problem(mp3Frames(3).subarray(10))).toBeUndefined(); // no ID3 tag
    expect(mp3Problem(wavCarrying("x"))).toMatch(/no MPEG audio Layer III frame header at byte 0/);
    // A frame sync, then garbage where the second frame should start.
    const one = Buffer.concat([mp3Frames(1), Buffer.alloc(900, 0x41)]);
    expect(mp3Problem(one)).toMatch(/frame 2 at byte 427/);
    // Layer II header (FF FD): the sync matches, the layer does not.
    expect(mp3Problem(Buffer.from([0xff, 0xfd, 0x90, 0x00, ...Array(2000).fill(0)]))).toMatch(
      /no MPEG audio Layer III frame/,
    );
  });

  it("sends the burst, one more, and the refill that can happen meanwhile", () => {
    // 120/min refills 2 per second; 5 s of spread is 10 more.
    expect(rateCheckRequests(30, 120)).toBe(30 + 1 + 10);
    expect(rateCheckRequests(4, 6)).toBe(4 + 1 + 1);
  });
});

describe("npm run smoke (the CLI, as a child process)", () => {
  it("passes a healthy hub: exit 0, every check listed with a latency", async () => {
    const hub = await startStandInHub();
    const run = await runCli([
      "--url",
      hub.baseUrl,
      "--key",
      KEY,
      "--llm-only-key",
      LLM_KEY,
      "--rate-burst",
      String(BURST),
    ]);
    expect(run.status, run.stderr).toBe(0);
    for (const { id } of CHECKS.filter((c) => c.id !== "ocr-async"))
      expect(run.stdout).toMatch(new RegExp(`^${id}\\s+.+?\\s+ok\\s+\\d+\\s+`, "m"));
    // DeepSeek-OCR answered, so docling's async API is not this run's to check.
    expect(run.stdout).toMatch(/^ocr-async\s+.+?\s+skipped\s+/m);
    expect(run.stdout).toContain("OCR (DeepSeek-OCR chat, n-gram filter on)");
    expect(run.stdout).toContain(`${CHECKS.length - 1} checks passed, 0 failed, 1 skipped.`);
  });

  it("--json prints one document with status, latency and detail per check; keys from the environment", async () => {
    const hub = await startStandInHub();
    const run = await runCli(
      ["--url", `${hub.baseUrl}/`, "--json", "--ocr", "convert", "--rate-burst", String(BURST)],
      { HUB_API_KEY: KEY, HUB_LLM_ONLY_KEY: LLM_KEY },
    );
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as SmokeReport;
    expect(report).toMatchObject({ ok: true, baseUrl: hub.baseUrl, ocrMode: "convert", failures: [] });
    expect(report.checks.map((c) => c.id)).toEqual(CHECKS.map((c) => c.id));
    for (const check of report.checks) {
      expect(check.status).toBe("ok");
      expect(check.latencyMs).toBeGreaterThanOrEqual(0);
      expect(check.detail).not.toBe("");
    }
    expect(report.checks.find((c) => c.id === "ocr")?.service).toBe("OCR (docling convert)");
    expect(report.checks.find((c) => c.id === "ocr-async")?.detail).toMatch(
      /^task task-\d+: success after 2 polls; read "HUB 42"/,
    );
    expect(run.stdout).not.toContain(KEY);
    expect(run.stdout).not.toContain(LLM_KEY);
  });

  it("stops at the models list on a 401: exit 2, one line with service, URL, status and the error message", async () => {
    const hub = await startStandInHub();
    const run = await runCli(["--url", hub.baseUrl, "--key", "wrong-key"]);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split("\n")).toEqual([
      `smoke: models list failed: GET ${hub.baseUrl}/models answered HTTP 401: Missing or unknown API key. (invalid_api_key)`,
    ]);
    expect(run.stdout).toMatch(/^chat\s+chat \(coder\)\s+skipped/m);
  });

  it("names every broken check, one line each, and runs the rest", async () => {
    const hub = await startStandInHub({ completions: null }, { jsonRateLimit: false });
    const run = await runCli([
      "--url",
      hub.baseUrl,
      "--key",
      KEY,
      "--rate-limit-key",
      RATE_KEY,
      "--rate-burst",
      String(BURST),
    ]);
    expect(run.status).toBe(2);
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(
      `smoke: completions (coder) failed: POST ${hub.baseUrl}/completions answered HTTP 404: 404 page not found`,
    );
    expect(lines[1]).toMatch(
      /^smoke: rate limit failed: GET .*\/models answered HTTP 429: the 429 is not an OpenAI-format error: the body is not JSON: "Too Many Requests"$/,
    );
    expect(run.stdout).toMatch(/^scope-refused\s+.+?\s+skipped\s+not run: give --llm-only-key/m);
  });

  it("gives up on a service that never answers within --timeout-ms", async () => {
    const hub = await startStandInHub({ speech: () => undefined });
    const run = await runCli([
      "--url",
      hub.baseUrl,
      "--key",
      KEY,
      "--timeout-ms",
      "400",
      "--rate-burst",
      String(BURST),
    ]);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(
      `smoke: text to speech, wav failed: POST ${hub.baseUrl}/audio/speech: no complete answer within 400 ms (--timeout-ms)\n`,
    );
  });

  it.each([
    { args: [], message: "missing --url" },
    { args: ["--url", "not a url", "--key", KEY], message: "is not a URL" },
    { args: ["--url", "http://127.0.0.1:1/v1"], message: "missing --key (or HUB_API_KEY)" },
    {
      args: ["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--ocr", "vision"],
      message: '--ocr "vision" is not one of chat, convert, auto',
    },
    { args: ["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--timeout-ms", "soon"], message: '--timeout-ms "soon"' },
    {
      args: ["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--rate-burst", "0"],
      message: '--rate-burst "0" is not a positive whole number',
    },
    {
      args: ["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--llm-only-key", KEY],
      message: "--llm-only-key is the same key as --key",
    },
  ])("refuses bad input ($message): exit 1, one line, no stack trace", async ({ args, message }) => {
    const run = await runCli(args);
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain(message);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).not.toMatch(NO_STACK_TRACE);
  });
});

describe("runSmoke (the library) against a healthy stand-in hub", () => {
  it("sends what each claim needs: whisper-1, mp3 and wav, the recipe's n-gram arguments, throwaway keys for the refusals", async () => {
    const hub = await startStandInHub();
    const report = await runSmoke(optionsFor(hub));
    expect(report.failures).toEqual([]);
    const forms = await Promise.all((hub.received.get("transcriptions") ?? []).map(formDataOf));
    expect(forms.map((f) => f.get("model"))).toEqual(["whisper-1"]);
    const translations = await Promise.all((hub.received.get("translations") ?? []).map(formDataOf));
    expect(translations.map((f) => f.get("model"))).toEqual(["whisper-1", UNSERVED_STT_MODEL]);
    // Both formats, one request each; the llm-only key never reached the TTS server.
    const speech = (hub.received.get("speech") ?? []).map((r) => JSON.parse(r.body.toString()));
    expect(speech.map((s) => s.response_format)).toEqual(["wav", "mp3"]);
    expect((hub.received.get("speech") ?? []).map((r) => r.headers.authorization)).toEqual([
      `Bearer ${KEY}`,
      `Bearer ${KEY}`,
    ]);
    const [ocr] = (hub.received.get("ocr-chat") ?? []).map((r) => JSON.parse(r.body.toString()));
    expect(ocr.vllm_xargs).toEqual(RECIPE_XARGS);
    expect(ocr.skip_special_tokens).toBe(false);
    // No model request with the real key beyond the two checks that mean to use it; the rate-limit key's burst got through, the rest were 429s.
    expect((hub.received.get("models") ?? []).map((r) => r.headers.authorization)).toEqual([
      `Bearer ${KEY}`,
      `Bearer ${LLM_KEY}`,
      ...Array(BURST).fill(`Bearer ${RATE_KEY}`),
    ]);
  });

  it("skips the scope check without an llm-only key, and passes", async () => {
    const hub = await startStandInHub();
    const report = await runSmoke(optionsFor(hub, { llmOnlyKey: undefined }));
    expect(report.ok, report.failures.join("\n")).toBe(true);
    expect(statuses(report)["scope-refused"]).toBe("skipped");
  });
});

describe("runSmoke (the library) on broken hubs", () => {
  it("reports the GPU-off 503 of the coder with the gateway's message", async () => {
    const hub = await startStandInHub({ chat: (_request, response) => sendJson(response, 503, GPU_OFF) });
    // The adapter's turn meets the same 503.
    const [failure] = expectFailed(await runSmoke(optionsFor(hub)), ["chat", "chat-stream", "adapters"]);
    expect(failure).toMatch(
      new RegExp(
        `^chat \\(coder\\) failed: POST ${hub.baseUrl}/chat/completions answered HTTP 503: The GPU tier .* \\(gpu_off\\)$`,
      ),
    );
  });

  it("reports a body that is not JSON, and runs nothing else", async () => {
    const hub = await startStandInHub({
      models(_request, response) {
        response.writeHead(200, { "content-type": "application/json" });
        response.end('{"object": "list", "data": [');
      },
    });
    const report = await runSmoke(optionsFor(hub));
    expect(report.failures).toEqual([
      `models list failed: GET ${hub.baseUrl}/models answered HTTP 200: response is not JSON: {"object": "list", "data": [`,
    ]);
    expect(report.checks.slice(1).every((c) => c.status === "skipped")).toBe(true);
  });

  it("refuses a model list without the coder", async () => {
    const hub = await startStandInHub({
      models: (_request, response) => sendJson(response, 200, { object: "list", data: [{ id: "other" }] }),
    });
    const report = await runSmoke(optionsFor(hub));
    expect(report.failures).toEqual([
      `models list failed: GET ${hub.baseUrl}/models answered HTTP 200: model "coder" is not listed (listed: other)`,
    ]);
  });

  it("catches a gateway that accepts an unknown key", async () => {
    const hub = await startStandInHub({}, { acceptUnknownKeys: true });
    // Without a rate-limit key, the check's throwaway key is let through too: 200s where only 401 belongs.
    const [keys, rate] = expectFailed(await runSmoke(optionsFor(hub, { rateLimitKey: undefined })), [
      "key-refused",
      "rate-limit",
    ]);
    expect(keys).toBe(`missing or unknown key failed: GET ${hub.baseUrl}/models answered HTTP 200: expected HTTP 401`);
    expect(rate).toMatch(/expected only 401: an unknown key must be refused and spend no budget/);
  });

  it("catches a gateway that lets a key past its scope", async () => {
    const hub = await startStandInHub({}, { ignoreScopes: true });
    const [failure] = expectFailed(await runSmoke(optionsFor(hub)), ["scope-refused"]);
    expect(failure).toBe(
      `key without the scope failed: POST ${hub.baseUrl}/audio/speech answered HTTP 200: expected HTTP 403`,
    );
  });

  it("catches refusals that are not OpenAI-format errors", async () => {
    const hub = await startStandInHub(
      {},
      {
        keys: new Map([
          [KEY, ["llm", "stt", "tts", "ocr", "embeddings"]],
          [RATE_KEY, ["llm"]],
        ]),
      },
    );
    // LLM_KEY now unknown: a 401 where the scope check wants 200 on /models.
    const [failure] = expectFailed(await runSmoke(optionsFor(hub)), ["scope-refused"]);
    expect(failure).toMatch(
      /^key without the scope failed: GET .*\/models answered HTTP 401: Missing or unknown API key/,
    );
  });

  it("refuses a chat completion with empty content", async () => {
    const hub = await startStandInHub({
      chat: (_request, response) => sendJson(response, 200, chatCompletion("coder", "  ")),
    });
    // The stand-in answers the streamed request with the same JSON, which the stream check refuses too.
    const [plain, stream, adapter] = expectFailed(await runSmoke(optionsFor(hub)), ["chat", "chat-stream", "adapters"]);
    expect(plain).toContain("the reply is empty");
    expect(adapter).toContain("coder-team: no reply text");
    expect(stream).toContain("the answer is application/json, not an event stream");
  });

  it("refuses a stream that ends without [DONE]", async () => {
    const hub = await startStandInHub({
      chat(request, response) {
        const body = JSON.parse(request.body.toString());
        if (!body.stream) return sendJson(response, 200, chatCompletion(body.model, "ready"));
        startEventStream(response);
        response.end(chatChunk({ content: "ready" }));
      },
    });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["chat-stream"])[0]).toContain(
      'the stream ended without "data: [DONE]" (after 1 content deltas)',
    );
  });

  it("refuses a stream that stalls before [DONE] once the timeout passes", async () => {
    const hub = await startStandInHub({
      chat(request, response) {
        const body = JSON.parse(request.body.toString());
        if (!body.stream) return sendJson(response, 200, chatCompletion(body.model, "ready"));
        startEventStream(response);
        response.write(chatChunk({ content: "rea" }));
      },
    });
    expect(expectFailed(await runSmoke(optionsFor(hub, { timeoutMs: 300 })), ["chat-stream"])[0]).toContain(
      "no complete answer within 300 ms",
    );
  });

  it("refuses a stream with only empty deltas", async () => {
    const hub = await startStandInHub({
      chat(request, response) {
        const body = JSON.parse(request.body.toString());
        if (!body.stream) return sendJson(response, 200, chatCompletion(body.model, "ready"));
        startEventStream(response);
        response.end(`${chatChunk({ role: "assistant", content: "" })}data: [DONE]\n\n`);
      },
    });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["chat-stream"])[0]).toContain(
      "without any delta carrying content",
    );
  });

  it("refuses text to speech that answers JSON instead of audio; the speech checks that need it are skipped", async () => {
    const hub = await startStandInHub({
      speech: (_request, response) => sendJson(response, 200, { error: "no vocoder loaded" }),
    });
    const [wav, mp3] = expectFailed(
      await runSmoke(optionsFor(hub)),
      ["tts", "tts-mp3"],
      ["stt", "stt-translate", "stt-model-refused"],
    );
    expect(wav).toContain("answered HTTP 200: the answer is application/json, not audio: no vocoder loaded");
    expect(mp3).toContain("not audio");
  });

  it("refuses an mp3 that is not mp3 (WAV bytes labelled audio/mpeg)", async () => {
    const hub = await startStandInHub({
      speech(request, response) {
        const body = JSON.parse(request.body.toString());
        response.writeHead(200, { "content-type": body.response_format === "mp3" ? "audio/mpeg" : "audio/wav" });
        response.end(wavCarrying(body.input));
      },
    });
    const [failure] = expectFailed(await runSmoke(optionsFor(hub)), ["tts-mp3"]);
    expect(failure).toMatch(
      /asked for mp3, got \d+ bytes of audio\/mpeg that are not MP3: no MPEG audio Layer III frame header at byte 0$/,
    );
  });

  it("refuses the format guard's 400 for mp3 with its message", async () => {
    const hub = await startStandInHub({
      speech(request, response) {
        const body = JSON.parse(request.body.toString());
        if (body.response_format === "wav") return DEFAULT_HANDLERS.speech(request, response);
        sendJson(
          response,
          400,
          openAiError(
            "response_format 'mp3' is not available from this hub's text to speech; use one of: wav, pcm.",
            "invalid_request_error",
            "unsupported_response_format",
          ),
        );
      },
    });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["tts-mp3"])[0]).toContain(
      "answered HTTP 400: response_format 'mp3' is not available from this hub's text to speech; use one of: wav, pcm. (unsupported_response_format)",
    );
  });

  it("refuses a transcription service that ignores whisper-1 (upstream speaches: large-v3, not installed)", async () => {
    const upstream = (request: StandInRequest, response: ServerResponse) =>
      formDataOf(request).then((form) =>
        form.get("model") === SERVED_STT
          ? sttHandler(request, response)
          : sendJson(response, 404, {
              detail:
                "Model 'Systran/faster-whisper-large-v3' is not installed locally. You can download the model using `POST /v1/models`",
            }),
      );
    const hub = await startStandInHub({ transcriptions: upstream, translations: upstream });
    const failures = expectFailed(await runSmoke(optionsFor(hub)), ["stt", "stt-translate", "stt-model-refused"]);
    expect(failures[0]).toBe(
      `speech to text failed: POST ${hub.baseUrl}/audio/transcriptions answered HTTP 404: Model 'Systran/faster-whisper-large-v3' is not installed locally. You can download the model using \`POST /v1/models\``,
    );
    // The unserved model gets the same 404, not the 400 the hub promises.
    expect(failures[2]).toContain("answered HTTP 404: expected HTTP 400");
  });

  it("refuses a speech-to-text service that accepts (and would download) any model", async () => {
    const anyModel = async (request: StandInRequest, response: ServerResponse) => {
      const form = await formDataOf(request);
      sendJson(response, 200, { text: ` ${textInWav(Buffer.from(await (form.get("file") as Blob).arrayBuffer()))}` });
    };
    const hub = await startStandInHub({ transcriptions: anyModel, translations: anyModel });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["stt-model-refused"])[0]).toBe(
      `speech to text, unserved model failed: POST ${hub.baseUrl}/audio/translations answered HTTP 200: expected HTTP 400`,
    );
  });

  it("refuses a transcript with the wrong words", async () => {
    const hub = await startStandInHub({
      transcriptions: (_request, response) => sendJson(response, 200, { text: "Hello world, this is a test." }),
    });
    const [failure] = expectFailed(await runSmoke(optionsFor(hub)), ["stt"]);
    expect(failure).toContain(
      `POST ${hub.baseUrl}/audio/transcriptions answered HTTP 200: the transcript "Hello world, this is a test." has 0 of the 9 words spoken (need 7)`,
    );
  });

  it("refuses OCR that reads other text", async () => {
    const hub = await startStandInHub({
      "ocr-chat": (_request, response) => sendJson(response, 200, chatCompletion("deepseek-ocr", "HUB 24")),
    });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["ocr"])[0]).toContain('read "HUB 24", not "HUB 42"');
  });

  it("catches OCR whose n-gram arguments never reached the model (a proxy that drops vllm_xargs)", async () => {
    const hub = await startStandInHub({
      "ocr-chat"(request, response) {
        const { vllm_xargs: _dropped, ...rest } = JSON.parse(request.body.toString());
        return DEFAULT_HANDLERS["ocr-chat"]({ ...request, body: Buffer.from(JSON.stringify(rest)) }, response);
      },
    });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["ocr"])[0]).toContain(
      'ran to max_tokens (finish_reason "length"), repeating itself: the n-gram filter did not act',
    );
  });

  it("falls back from OCR chat to docling convert when the route is missing (404) or the GPU is off (503), and then checks the async API", async () => {
    for (const chatRoute of [
      null,
      (_request: StandInRequest, response: ServerResponse) => sendJson(response, 503, GPU_OFF),
    ]) {
      const hub = await startStandInHub({ "ocr-chat": chatRoute });
      const report = await runSmoke(optionsFor(hub));
      expect(report.ok, report.failures.join("\n")).toBe(true);
      const ocr = report.checks.find((c) => c.id === "ocr");
      expect(ocr).toMatchObject({ service: "OCR (docling convert)", status: "ok" });
      expect(ocr?.detail).toMatch(/chat answered HTTP (404|503), so tried convert/);
      expect(statuses(report)["ocr-async"]).toBe("ok");
    }
  });

  it("fails the async check where docling's async API is not routed", async () => {
    const hub = await startStandInHub({ "ocr-async": null });
    expect(expectFailed(await runSmoke(optionsFor(hub, { ocrMode: "convert" })), ["ocr-async"])[0]).toBe(
      `OCR, docling async API failed: POST ${hub.baseUrl}/ocr/convert/file/async answered HTTP 404: 404 page not found`,
    );
  });

  it("names both OCR answers when the fallback fails too, and does not fall back in --ocr chat", async () => {
    const hub = await startStandInHub({
      "ocr-chat": (_request, response) => sendJson(response, 503, GPU_OFF),
      "ocr-convert": null,
    });
    const [failure] = expectFailed(await runSmoke(optionsFor(hub)), ["ocr"], ["ocr-async"]);
    expect(failure).toContain(
      `POST ${hub.baseUrl}/ocr/convert/file answered HTTP 404: 404 page not found (tried after POST ${hub.baseUrl}/ocr/chat/completions answered HTTP 503:`,
    );
    // A hub of its own: the stand-in's per-route bucket (burst 4) never refills, and each run sends three chat turns.
    const again = await startStandInHub({
      "ocr-chat": (_request, response) => sendJson(response, 503, GPU_OFF),
      "ocr-convert": null,
    });
    const [chatOnly] = expectFailed(await runSmoke(optionsFor(again, { ocrMode: "chat" })), ["ocr"], ["ocr-async"]);
    expect(chatOnly).toContain("/ocr/chat/completions answered HTTP 503: The GPU tier");
  });

  it("catches a gateway without a rate limit", async () => {
    const hub = await startStandInHub({}, { burst: 0 });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["rate-limit"])[0]).toMatch(
      /none answered 429 \(6×200\): is its burst above --rate-burst 4\?$/,
    );
  });

  it("without a rate-limit key: unknown keys must get only 401s, and a gateway that rate-limits them fails", async () => {
    const healthy = await startStandInHub();
    const report = await runSmoke(optionsFor(healthy, { rateLimitKey: undefined }));
    expect(report.failures).toEqual([]);
    expect(report.checks.find((c) => c.id === "rate-limit")?.detail).toMatch(
      /^6 requests with one unknown key: 6×401, no 429 .*pass --rate-limit-key/,
    );
    const old = await startStandInHub({}, { limitUnknownKeys: true });
    expect(expectFailed(await runSmoke(optionsFor(old, { rateLimitKey: undefined })), ["rate-limit"])[0]).toMatch(
      /4×401, 2×429; expected only 401/,
    );
  });

  it("refuses a rate-limit key that is also --key or --llm-only-key (the check empties its budget)", () => {
    expect(() => parseSmokeArgs(["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--rate-limit-key", KEY])).toThrow(
      /must be a key of its own/,
    );
    expect(
      parseSmokeArgs(["--url", "http://127.0.0.1:1/v1", "--key", KEY], { HUB_RATE_LIMIT_KEY: RATE_KEY }),
    ).toMatchObject({ options: { rateLimitKey: RATE_KEY } });
  });

  it("catches a 429 without Retry-After", async () => {
    const hub = await startStandInHub({}, { retryAfter: false });
    expect(expectFailed(await runSmoke(optionsFor(hub)), ["rate-limit"])[0]).toContain(
      "the 429 has no usable Retry-After header (null)",
    );
  });

  it("reports a hub it cannot connect to", async () => {
    const hub = await startStandInHub();
    await hub.close();
    const report = await runSmoke(optionsFor(hub));
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]).toMatch(/models list failed: .*the connection failed \(ECONNREFUSED\)/);
  });
});

describe("the LoRA adapters check", () => {
  it("asks each coder-<name> the models list names, and refuses an answer the base model gave", async () => {
    const asked: string[] = [];
    const hub = await startStandInHub({
      models: (_request, response) =>
        sendJson(response, 200, { object: "list", data: [{ id: "coder" }, { id: "coder-team" }, { id: "coder-sql" }] }),
      chat(request, response) {
        const body = JSON.parse(request.body.toString());
        asked.push(body.model);
        // A server that ignores the adapter (llama.cpp, or vLLM without --enable-lora) answers as the base model.
        sendJson(response, 200, chatCompletion(body.model === "coder-sql" ? "coder" : body.model, "ready"));
      },
    });
    const report = await runSmoke(optionsFor(hub, { rateLimitKey: undefined }));
    expect(asked).toEqual(expect.arrayContaining(["coder-team", "coder-sql"]));
    const adapters = report.checks.find((c) => c.id === "adapters")!;
    expect(adapters.status).toBe("failed");
    expect(adapters.detail).toBe('coder-sql: the answer names model "coder", so the adapter did not produce it');
  });
  it("is skipped, saying why, when no adapter is listed", async () => {
    const hub = await startStandInHub({
      models: (_request, response) => sendJson(response, 200, { object: "list", data: [{ id: "coder" }] }),
    });
    const adapters = (await runSmoke(optionsFor(hub))).checks.find((c) => c.id === "adapters")!;
    expect(adapters).toMatchObject({ status: "skipped", detail: expect.stringMatching(/names no LoRA adapter/) });
  });
});

describe("runSmoke's embeddings checks", () => {
  const embeddingsHandler = DEFAULT_HANDLERS.embeddings;

  it("send three texts as floats, then base64 at 256 dimensions, then the refusals, and say what they saw", async () => {
    const hub = await startStandInHub();
    const report = await runSmoke(optionsFor(hub));
    expect(report.failures).toEqual([]);
    const [floats, short, empty, unknown] = hub.received
      .get("embeddings")!
      .map((r) => JSON.parse(r.body.toString("utf8")));
    expect(floats).toEqual({ model: EMBEDDING_MODEL, input: [...EMBEDDING_TEXTS], encoding_format: "float" });
    expect(short).toEqual({
      model: EMBEDDING_MODEL,
      input: [...EMBEDDING_TEXTS],
      encoding_format: "base64",
      dimensions: 256,
    });
    expect(empty).toEqual({ model: EMBEDDING_MODEL, input: "" });
    expect(unknown.model).not.toBe(EMBEDDING_MODEL);
    expect(hub.received.get("embeddings-model")).toHaveLength(1);
    const detail = report.checks.find((c) => c.id === "embeddings")!.detail;
    expect(detail).toMatch(
      /^qwen3-embedding-0\.6b: 1024 dimensions, unit length, 30 tokens; paraphrases 0\.\d\d vs unrelated 0\.\d\d; base64 matches; dimensions 256 is the leading part at unit length$/,
    );
  });

  it("fails vectors that do not carry meaning, and a front that ignores `dimensions`", async () => {
    // Vectors from the text's length alone: unit length and well-formed, but paraphrases are not nearer.
    const meaningless = await startStandInHub({
      embeddings(request, response) {
        const body = JSON.parse(request.body.toString("utf8"));
        const data = (body.input as string[]).map((t, index) => ({
          object: "embedding",
          index,
          embedding: Array.from({ length: 4 }, (_, i) => (i === t.length % 4 ? 1 : 0)),
        }));
        sendJson(response, 200, {
          object: "list",
          model: body.model,
          data,
          usage: { prompt_tokens: 30, total_tokens: 30 },
        });
      },
    });
    const [reason] = expectFailed(await runSmoke(optionsFor(meaningless)), ["embeddings"], ["embeddings-refused"]);
    expect(reason).toContain("the model is not embedding meaning");

    const ignoresDimensions = await startStandInHub({
      embeddings(request, response) {
        const body = JSON.parse(request.body.toString("utf8"));
        delete body.dimensions;
        return embeddingsHandler({ ...request, body: Buffer.from(JSON.stringify(body)) }, response);
      },
    });
    const [dims] = expectFailed(await runSmoke(optionsFor(ignoresDimensions)), ["embeddings"], ["embeddings-refused"]);
    expect(dims).toContain("the base64 vector is not 256 little-endian float32 values");
  });

  it("fails a hub that embeds for any model name, as llama-server alone does", async () => {
    const anyModel = await startStandInHub({
      embeddings(request, response) {
        const body = JSON.parse(request.body.toString("utf8"));
        return embeddingsHandler(
          { ...request, body: Buffer.from(JSON.stringify({ ...body, model: EMBEDDING_MODEL })) },
          response,
        );
      },
    });
    const [reason] = expectFailed(await runSmoke(optionsFor(anyModel)), ["embeddings-refused"]);
    expect(reason).toMatch(/answered HTTP 200: expected HTTP 404$/);
  });

  it("skips a hub that serves no embeddings, and says which scope a key lacks", async () => {
    const none = await startStandInHub({ embeddings: null, "embeddings-model": null });
    const report = await runSmoke(optionsFor(none));
    expect(report.failures).toEqual([]);
    expect(report.checks.find((c) => c.id === "embeddings")).toMatchObject({
      status: "skipped",
      detail: "not run: this hub serves no /v1/embeddings (embeddingModel none)",
    });
    expect(statuses(report)["embeddings-refused"]).toBe("skipped");

    const noScope = await startStandInHub(
      {},
      {
        keys: new Map([
          [KEY, ["llm", "stt", "tts", "ocr"]],
          [LLM_KEY, ["llm"]],
          [RATE_KEY, ["llm"]],
        ]),
      },
    );
    const [reason] = expectFailed(await runSmoke(optionsFor(noScope)), ["embeddings"], ["embeddings-refused"]);
    expect(reason).toContain(
      "answered HTTP 403: This key lacks the embeddings scope. (insufficient_scope): give --key the embeddings scope",
    );
  });
});
