import { createServer, IncomingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { inflateSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import {
  CHECKS,
  errorMessageFromBody,
  FONT,
  GLYPH_GAP,
  GLYPH_HEIGHT,
  GLYPH_WIDTH,
  OCR_TEXT,
  renderTextPng,
  runSmoke,
  SmokeOptions,
  SmokeReport,
  SPOKEN_SENTENCE,
  TEXT_MARGIN,
  wordMatch,
} from "../scripts/lib/smoke";
import { spawnScript } from "./helpers/cli";

const KEY = "test-hub-key";

// =============================================================================================
// Stand-ins for the API shapes of the programs behind the hub's gateway (vLLM / llama.cpp for
// `coder`, Coqui TTS, speaches, DeepSeek-OCR on vLLM, docling-serve). They are NOT
// implementations: each answers just enough of the documented request/response shape, and checks
// just enough of the request, for the smoke check to tell a healthy service from a broken one.
// The speech pair cheats on purpose: the "TTS" writes the text into a RIFF INFO chunk of its WAV
// and the "STT" reads it back, so the round trip is testable without a voice model.
// =============================================================================================

type Route = "models" | "chat" | "speech" | "transcriptions" | "ocr-chat" | "ocr-convert";
const ROUTES: Readonly<Record<string, Route>> = {
  "GET /v1/models": "models",
  "POST /v1/chat/completions": "chat",
  "POST /v1/audio/speech": "speech",
  "POST /v1/audio/transcriptions": "transcriptions",
  "POST /v1/ocr/chat/completions": "ocr-chat",
  "POST /v1/ocr/convert/file": "ocr-convert",
};

interface StandInRequest {
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}
type Handler = (request: StandInRequest, response: ServerResponse) => void | Promise<void>;
/** null: the route does not exist on this hub (the gateway's 404, as on the cpu tier for OCR chat). */
type Overrides = Partial<Record<Route, Handler | null>>;

const openAiError = (message: string, type: string, code: string | null) => ({ error: { message, type, code } });
/** The gateway's body while the GPU is off (same shape as services/gateway.ts GPU_OFF_ERROR). */
const GPU_OFF = openAiError("The GPU tier of this inference hub is switched off, so this model is not being served right now.", "server_error", "gpu_off");

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

/** What vLLM, llama.cpp and speaches do with a wrong key: 401 before anything else. */
function keyRejected(request: StandInRequest, response: ServerResponse): boolean {
  if (request.headers.authorization === `Bearer ${KEY}`) return false;
  sendJson(response, 401, openAiError("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"));
  return true;
}

function badRequest(response: ServerResponse, message: string): void {
  sendJson(response, 400, openAiError(`stand-in: ${message}`, "invalid_request_error", null));
}

const chatCompletion = (model: string, content: string) => ({
  id: "chatcmpl-standin",
  object: "chat.completion",
  model,
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
});
const chatChunk = (delta: Record<string, unknown>) => `data: ${JSON.stringify({ id: "chatcmpl-standin", object: "chat.completion.chunk", model: "coder", choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;

function startEventStream(response: ServerResponse): void {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
}

/** multipart/form-data parsed by undici, as the real servers' frameworks would. */
function formDataOf(request: StandInRequest): Promise<FormData> {
  return new Request("http://stand-in/", { method: "POST", headers: { "content-type": String(request.headers["content-type"]) }, body: request.body }).formData();
}

const DEFAULT_HANDLERS: Readonly<Record<Route, Handler>> = {
  // vLLM / llama.cpp model list.
  models(request, response) {
    if (keyRejected(request, response)) return;
    sendJson(response, 200, { object: "list", data: [{ id: "coder", object: "model", owned_by: "vllm" }] });
  },
  // vLLM / llama.cpp chat completions, plain and streamed.
  chat(request, response) {
    if (keyRejected(request, response)) return;
    const body = JSON.parse(request.body.toString("utf8"));
    if (body.model !== "coder" || !Array.isArray(body.messages)) return badRequest(response, "expected model coder and messages");
    if (!body.stream) return sendJson(response, 200, chatCompletion("coder", "ready"));
    startEventStream(response);
    response.write(chatChunk({ role: "assistant", content: "" }));
    response.write(chatChunk({ content: "rea" }));
    response.write(chatChunk({ content: "dy" }));
    response.end("data: [DONE]\n\n");
  },
  // Coqui tts-server's OpenAI route (no key of its own: the gateway fronts it).
  speech(request, response) {
    const body = JSON.parse(request.body.toString("utf8"));
    if (typeof body.input !== "string" || !body.input) return badRequest(response, "input is required");
    if (body.response_format !== "wav") return badRequest(response, "the stand-in only speaks wav");
    response.writeHead(200, { "content-type": "audio/wav" });
    response.end(wavCarrying(body.input));
  },
  // speaches: OpenAI transcriptions, multipart `file` + `model`.
  async transcriptions(request, response) {
    if (keyRejected(request, response)) return;
    const form = await formDataOf(request);
    const file = form.get("file");
    if (!form.get("model")) return badRequest(response, "model is required");
    if (!(file instanceof Blob)) return badRequest(response, "file is required");
    const text = textInWav(Buffer.from(await file.arrayBuffer()));
    if (text === undefined) return sendJson(response, 400, { detail: "stand-in: no speech found in the audio" });
    sendJson(response, 200, { text: ` ${text}` });
  },
  // DeepSeek-OCR behind vLLM's chat API: one image_url data URL plus the prompt.
  "ocr-chat"(request, response) {
    if (keyRejected(request, response)) return;
    const body = JSON.parse(request.body.toString("utf8"));
    const parts = body.messages?.[0]?.content;
    const image = Array.isArray(parts) ? parts.find((p: { type?: string }) => p.type === "image_url")?.image_url?.url : undefined;
    const prompt = Array.isArray(parts) ? parts.find((p: { type?: string }) => p.type === "text")?.text : undefined;
    if (body.model !== "deepseek-ocr" || body.temperature !== 0) return badRequest(response, "expected model deepseek-ocr at temperature 0");
    if (typeof image !== "string" || !image.startsWith("data:image/png;base64,") || prompt !== "Free OCR.") return badRequest(response, "expected a PNG data URL and the prompt");
    const text = readTextFromPng(Buffer.from(image.slice("data:image/png;base64,".length), "base64"));
    sendJson(response, 200, chatCompletion("deepseek-ocr", `${text}\n`));
  },
  // docling-serve /v1/convert/file: multipart `files`, its key in X-Api-Key.
  async "ocr-convert"(request, response) {
    if (request.headers["x-api-key"] !== KEY) return sendJson(response, 401, { detail: "Api key is required as header X-Api-Key." });
    const form = await formDataOf(request);
    const file = form.get("files");
    if (!(file instanceof Blob)) return sendJson(response, 422, { detail: [{ loc: ["body", "files"], msg: "Field required" }] });
    const text = readTextFromPng(Buffer.from(await file.arrayBuffer()));
    sendJson(response, 200, { document: { filename: "smoke-ocr.png", md_content: `${text}\n`, text_content: text }, status: "success", errors: [], processing_time: 0.01 });
  },
};

interface StandInHub {
  readonly baseUrl: string;
  readonly close: () => Promise<void>;
}

const openHubs: StandInHub[] = [];
afterEach(async () => {
  await Promise.all(openHubs.splice(0).map((hub) => hub.close()));
});

async function startStandInHub(overrides: Overrides = {}): Promise<StandInHub> {
  const server = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
    incoming.on("end", () => {
      const route = ROUTES[`${incoming.method} ${incoming.url}`];
      const handler = route === undefined ? null : route in overrides ? overrides[route] : DEFAULT_HANDLERS[route];
      if (!handler) {
        // Traefik's answer for a path no router matches.
        response.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
        response.end("404 page not found\n");
        return;
      }
      Promise.resolve(handler({ headers: incoming.headers, body: Buffer.concat(chunks) }, response)).catch((error: Error) => badRequest(response, error.message));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const hub: StandInHub = {
    baseUrl: `http://127.0.0.1:${port}/v1`,
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
  for (let i = 0; i < samples.length / 2; i++) samples.writeInt16LE(Math.round(1000 * Math.sin((2 * Math.PI * 440 * i) / sampleRate)), i * 2);
  const info = riffChunk("LIST", Buffer.concat([Buffer.from("INFO"), riffChunk("ICMT", Buffer.from(`${text}\0`, "utf8"))]));
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
function decodeGreyPng(png: Buffer): { readonly width: number; readonly height: number; readonly pixel: (x: number, y: number) => number } {
  if (!png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error("not a PNG");
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString("ascii", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (referenceCrc32(png.subarray(at + 4, at + 8 + length)) !== png.readUInt32BE(at + 8 + length)) throw new Error(`bad CRC on ${type}`);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[9] !== 0 || data[12] !== 0) throw new Error("the stand-in reads only 8-bit grey, non-interlaced PNGs");
    }
    if (type === "IDAT") idat.push(data);
    if (type === "IEND") break;
    at += 12 + length;
  }
  const scanlines = inflateSync(Buffer.concat(idat));
  if (scanlines.length !== (width + 1) * height) throw new Error("image data does not match IHDR");
  for (let y = 0; y < height; y++) if (scanlines[y * (width + 1)] !== 0) throw new Error("the stand-in reads only unfiltered rows");
  return { width, height, pixel: (x, y) => scanlines[y * (width + 1) + 1 + x] };
}

function readTextFromPng(png: Buffer): string {
  const image = decodeGreyPng(png);
  // The layout is known (margins, 5×7 cells, 1-cell gaps); only the scale and glyph count are read off the image.
  const scale = image.height / (GLYPH_HEIGHT + 2 * TEXT_MARGIN);
  const columns = image.width / scale;
  const glyphCount = (columns - 2 * TEXT_MARGIN + GLYPH_GAP) / (GLYPH_WIDTH + GLYPH_GAP);
  if (!Number.isInteger(scale) || !Number.isInteger(glyphCount)) throw new Error(`unexpected image size ${image.width}×${image.height}`);
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
  return { baseUrl: hub.baseUrl, apiKey: KEY, ocrMode: "auto", timeoutMs: 5_000, sttModel: "Systran/faster-whisper-base", ttsModel: "tts-1", ...overrides };
}

/** Asserts the run stopped at `failedAt`: it failed, everything before passed, everything after was skipped. */
function expectStoppedAt(report: SmokeReport, failedAt: string): string {
  expect(report.ok).toBe(false);
  const index = report.checks.findIndex((c) => c.id === failedAt);
  expect(index, `no check ${failedAt}`).toBeGreaterThanOrEqual(0);
  expect(report.checks.slice(0, index).map((c) => c.status)).toEqual(Array(index).fill("ok"));
  expect(report.checks[index].status).toBe("failed");
  expect(report.checks.slice(index + 1).map((c) => c.status)).toEqual(Array(report.checks.length - index - 1).fill("skipped"));
  expect(report.failure).toBeDefined();
  expect(report.failure).not.toContain("\n");
  return report.failure as string;
}

interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Asynchronous on purpose: the stand-in hub answers from this same process. */
function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const { HUB_API_KEY: _ignored, ...inherited } = process.env;
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
    for (const glyph of Object.values(FONT)) expect(glyph.map((row) => row.length)).toEqual(Array(GLYPH_HEIGHT).fill(GLYPH_WIDTH));
    const alphabet = Object.keys(FONT).join("");
    expect(new Set(Object.values(FONT).map((g) => g.join("|"))).size).toBe(alphabet.length);
    expect(readTextFromPng(renderTextPng(alphabet, 3))).toBe(alphabet);
    expect(() => renderTextPng("héllo")).toThrow(/no glyph/);
  });
});

describe("helpers", () => {
  it("matches transcripts by words, ignoring case and punctuation", () => {
    expect(wordMatch(SPOKEN_SENTENCE, "the quick brown fox jumps over the lazy dog")).toMatchObject({ found: 9, total: 9, needed: 7 });
    // "jumped" and "a" miss; the other "the" still counts.
    expect(wordMatch(SPOKEN_SENTENCE, "The quick, brown fox jumped over a lazy dog!").found).toBe(8);
    expect(wordMatch(SPOKEN_SENTENCE, "A quick brown box jumped over lazy dogs").found).toBe(4);
    expect(wordMatch(SPOKEN_SENTENCE, "Hello world.").found).toBe(0);
  });

  it("reads the message out of OpenAI, vLLM, FastAPI and proxy error bodies", () => {
    expect(errorMessageFromBody(JSON.stringify(GPU_OFF))).toMatch(/^The GPU tier .* \(gpu_off\)$/);
    expect(errorMessageFromBody('{"error":"Unauthorized"}')).toBe("Unauthorized");
    expect(errorMessageFromBody('{"detail":[{"loc":["body","model"],"msg":"Field required"}]}')).toBe("body.model: Field required");
    expect(errorMessageFromBody("<html><body><h1>502 Bad Gateway</h1></body></html>")).toBe("502 Bad Gateway");
    expect(errorMessageFromBody("")).toBe("(empty body)");
  });
});

describe("npm run smoke (the CLI, as a child process)", () => {
  it("passes a healthy hub: exit 0, every service listed with a latency", async () => {
    const hub = await startStandInHub();
    const run = await runCli(["--url", hub.baseUrl, "--key", KEY]);
    expect(run.status, run.stderr).toBe(0);
    for (const { id } of CHECKS) expect(run.stdout).toMatch(new RegExp(`^${id}\\s+.+?\\s+ok\\s+\\d+\\s+`, "m"));
    expect(run.stdout).toContain("OCR (DeepSeek-OCR chat)");
    expect(run.stdout).toContain("All 6 checks passed.");
  });

  it("--json prints one document with status, latency and detail per check; the key from HUB_API_KEY", async () => {
    const hub = await startStandInHub();
    const run = await runCli(["--url", `${hub.baseUrl}/`, "--json", "--ocr", "convert"], { HUB_API_KEY: KEY });
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as SmokeReport;
    expect(report).toMatchObject({ ok: true, baseUrl: hub.baseUrl, ocrMode: "convert" });
    expect(report.checks.map((c) => c.id)).toEqual(CHECKS.map((c) => c.id));
    for (const check of report.checks) {
      expect(check.status).toBe("ok");
      expect(check.latencyMs).toBeGreaterThanOrEqual(0);
      expect(check.detail).not.toBe("");
    }
    expect(report.checks.at(-1)?.service).toBe("OCR (docling convert)");
    expect(run.stdout).not.toContain(KEY);
  });

  it("stops at the first service on a 401: exit 2, one line with service, URL, status and the error message", async () => {
    const hub = await startStandInHub();
    const run = await runCli(["--url", hub.baseUrl, "--key", "wrong-key"]);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split("\n")).toEqual([`smoke: models list failed: GET ${hub.baseUrl}/models answered HTTP 401: Incorrect API key provided. (invalid_api_key)`]);
    expect(run.stdout).toMatch(/^chat\s+chat \(coder\)\s+skipped/m);
  });

  it("gives up on a service that never answers within --timeout-ms", async () => {
    const hub = await startStandInHub({ speech: () => undefined });
    const run = await runCli(["--url", hub.baseUrl, "--key", KEY, "--timeout-ms", "400"]);
    expect(run.status).toBe(2);
    expect(run.stderr).toBe(`smoke: text to speech failed: POST ${hub.baseUrl}/audio/speech: no complete answer within 400 ms (--timeout-ms)\n`);
  });

  it.each([
    { args: [], message: "missing --url" },
    { args: ["--url", "not a url", "--key", KEY], message: "is not a URL" },
    { args: ["--url", "http://127.0.0.1:1/v1"], message: "missing --key (or HUB_API_KEY)" },
    { args: ["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--ocr", "vision"], message: "--ocr \"vision\" is not one of chat, convert, auto" },
    { args: ["--url", "http://127.0.0.1:1/v1", "--key", KEY, "--timeout-ms", "soon"], message: "--timeout-ms \"soon\"" },
  ])("refuses bad input ($message): exit 1, one line, no stack trace", async ({ args, message }) => {
    const run = await runCli(args);
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain(message);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).not.toMatch(NO_STACK_TRACE);
  });
});

describe("runSmoke (the library) on broken services", () => {
  it("reports the GPU-off 503 of the coder with the gateway's message", async () => {
    const hub = await startStandInHub({ chat: (_request, response) => sendJson(response, 503, GPU_OFF) });
    const failure = expectStoppedAt(await runSmoke(optionsFor(hub)), "chat");
    expect(failure).toMatch(new RegExp(`^chat \\(coder\\) failed: POST ${hub.baseUrl}/chat/completions answered HTTP 503: The GPU tier .* \\(gpu_off\\)$`));
  });

  it("reports a body that is not JSON", async () => {
    const hub = await startStandInHub({
      models(_request, response) {
        response.writeHead(200, { "content-type": "application/json" });
        response.end('{"object": "list", "data": [');
      },
    });
    const failure = expectStoppedAt(await runSmoke(optionsFor(hub)), "models");
    expect(failure).toContain("answered HTTP 200: response is not JSON: {\"object\": \"list\", \"data\": [");
  });

  it("refuses a model list without the coder", async () => {
    const hub = await startStandInHub({ models: (_request, response) => sendJson(response, 200, { object: "list", data: [{ id: "other" }] }) });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "models")).toContain('model "coder" is not listed (listed: other)');
  });

  it("refuses a chat completion with empty content", async () => {
    const hub = await startStandInHub({ chat: (_request, response) => sendJson(response, 200, chatCompletion("coder", "  ")) });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "chat")).toContain("the reply is empty");
  });

  it("refuses a stream that ends without [DONE]", async () => {
    const hub = await startStandInHub({
      chat(request, response) {
        if (!JSON.parse(request.body.toString()).stream) return sendJson(response, 200, chatCompletion("coder", "ready"));
        startEventStream(response);
        response.end(chatChunk({ content: "ready" }));
      },
    });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "chat-stream")).toContain('the stream ended without "data: [DONE]" (after 1 content deltas)');
  });

  it("refuses a stream that stalls before [DONE] once the timeout passes", async () => {
    const hub = await startStandInHub({
      chat(request, response) {
        if (!JSON.parse(request.body.toString()).stream) return sendJson(response, 200, chatCompletion("coder", "ready"));
        startEventStream(response);
        response.write(chatChunk({ content: "rea" }));
      },
    });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub, { timeoutMs: 300 })), "chat-stream")).toContain("no complete answer within 300 ms");
  });

  it("refuses a stream with only empty deltas", async () => {
    const hub = await startStandInHub({
      chat(request, response) {
        if (!JSON.parse(request.body.toString()).stream) return sendJson(response, 200, chatCompletion("coder", "ready"));
        startEventStream(response);
        response.end(`${chatChunk({ role: "assistant", content: "" })}data: [DONE]\n\n`);
      },
    });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "chat-stream")).toContain("without any delta carrying content");
  });

  it("refuses text to speech that answers JSON instead of audio", async () => {
    const hub = await startStandInHub({ speech: (_request, response) => sendJson(response, 200, { error: "no vocoder loaded" }) });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "tts")).toContain("answered HTTP 200: the answer is application/json, not audio: no vocoder loaded");
  });

  it("refuses a transcript with the wrong words", async () => {
    const hub = await startStandInHub({ transcriptions: (_request, response) => sendJson(response, 200, { text: "Hello world, this is a test." }) });
    const failure = expectStoppedAt(await runSmoke(optionsFor(hub)), "stt");
    expect(failure).toContain(`POST ${hub.baseUrl}/audio/transcriptions answered HTTP 200: the transcript "Hello world, this is a test." has 0 of the 9 words spoken (need 7)`);
  });

  it("refuses OCR that reads other text", async () => {
    const hub = await startStandInHub({ "ocr-chat": (_request, response) => sendJson(response, 200, chatCompletion("deepseek-ocr", "HUB 24")) });
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "ocr")).toContain('read "HUB 24", not "HUB 42"');
  });

  it("falls back from OCR chat to docling convert when the route is missing (404) or the GPU is off (503)", async () => {
    for (const chatRoute of [null, (_request: StandInRequest, response: ServerResponse) => sendJson(response, 503, GPU_OFF)]) {
      const hub = await startStandInHub({ "ocr-chat": chatRoute });
      const report = await runSmoke(optionsFor(hub));
      expect(report.ok, report.failure).toBe(true);
      expect(report.checks.at(-1)).toMatchObject({ service: "OCR (docling convert)", status: "ok" });
      expect(report.checks.at(-1)?.detail).toMatch(/chat answered HTTP (404|503), so tried convert/);
    }
  });

  it("names both OCR answers when the fallback fails too, and does not fall back in --ocr chat", async () => {
    const hub = await startStandInHub({ "ocr-chat": (_request, response) => sendJson(response, 503, GPU_OFF), "ocr-convert": null });
    const failure = expectStoppedAt(await runSmoke(optionsFor(hub)), "ocr");
    expect(failure).toContain(`POST ${hub.baseUrl}/ocr/convert/file answered HTTP 404: 404 page not found (tried after POST ${hub.baseUrl}/ocr/chat/completions answered HTTP 503:`);
    const chatOnly = expectStoppedAt(await runSmoke(optionsFor(hub, { ocrMode: "chat" })), "ocr");
    expect(chatOnly).toContain("/ocr/chat/completions answered HTTP 503: The GPU tier");
  });

  it("reports a hub it cannot connect to", async () => {
    const hub = await startStandInHub();
    await hub.close();
    expect(expectStoppedAt(await runSmoke(optionsFor(hub)), "models")).toMatch(/the connection failed \(ECONNREFUSED\)/);
  });
});
