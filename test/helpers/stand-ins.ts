import { randomUUID } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * STAND-INS, NOT THE REAL PROGRAMS. vLLM, llama.cpp, speaches, Coqui TTS and docling-serve need
 * images and weights this machine cannot fetch, so the gateway tests put these small HTTP
 * servers behind the real Traefik in their place. Each speaks the request and response shapes
 * its program's OpenAI-compatible API uses (chat, SSE streaming, completions, models, audio in
 * and out, documents), answers every response with `X-Stand-In: <program>`, and records what it
 * received (method, path, credential headers, body size) so tests can check what the gateway
 * forwarded. They do not model the programs' behaviour beyond that.
 */

export type StandInProgram = "vllm" | "llama.cpp" | "speaches" | "coqui-tts" | "docling-serve";

export interface ReceivedRequest {
  readonly at: number;
  readonly method: string;
  /** Path and query as the backend saw them (after the gateway's rewrites). */
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly bodyBytes: number;
  /** The JSON body when it was JSON and under 1 MiB. */
  readonly json?: Record<string, unknown>;
}

export interface StandInOptions {
  readonly program: StandInProgram;
  /** The model name it answers to (vLLM --served-model-name, llama.cpp --alias). @default "coder" */
  readonly model?: string;
  /** Chunks a streamed completion sends. @default 3 */
  readonly streamChunks?: number;
  /** Pause between streamed chunks, ms. @default 20 */
  readonly chunkIntervalMs?: number;
  /** Whether /health answers 200 from the start (a vLLM still loading answers 503). @default true */
  readonly healthy?: boolean;
  /** Loopback port to listen on (a GPU replica's address is fixed by its droplet). @default - a free one */
  readonly port?: number;
  /** Address to listen on (0.0.0.0 inside a container image). @default "127.0.0.1" */
  readonly host?: string;
  /**
   * The key the program itself checks (llama-server --api-key: Bearer; docling-serve: X-Api-Key):
   * other requests get the program's 401. Health and metrics stay open, as in the programs.
   * @default - no check
   */
  readonly apiKey?: { readonly header: "authorization" | "x-api-key"; readonly value: string };
  /** Called with every request received (the container images log it). @default - none */
  readonly onReceived?: (request: ReceivedRequest) => void;
  /**
   * llama.cpp in embedding mode: /v1/embeddings as llama-server b10573 answers it (see
   * test/fixtures/llama-cpp/README.md), with bag-of-words vectors (each word adds to hashed
   * components, then unit length) so texts sharing words are near each other. Not a model.
   * `ubatch`: inputs of more "tokens" (words, and <|endoftext|> as one) get llama-server's 500.
   */
  readonly embeddings?: { readonly dimensions: number; readonly ubatch: number };
}

/** The stand-in's "tokens": words, with the end-of-text marker as one token of its own. */
export const standInTokens = (text: string): string[] =>
  text
    .replace(/<\|endoftext\|>/g, " <|endoftext|> ")
    .toLowerCase()
    .split(/[^a-z0-9<|>_]+/)
    .filter(Boolean);

/** Bag-of-words vector of a stand-in input (a text, or token ids), unit length. */
export function standInVector(input: string | readonly number[], dimensions: number): number[] {
  const v = new Array<number>(dimensions).fill(0);
  const words = typeof input === "string" ? standInTokens(input) : input.map(String);
  // Each word adds to eight hashed components, so even a short prefix of the vector holds some of it.
  for (const w of words) {
    for (let k = 0; k < 8; k++) {
      const key = `${w}#${k}`;
      let h = 2166136261;
      for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
      v[h % dimensions] += 1;
    }
  }
  const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  return norm ? v.map((x) => x / norm) : v;
}

export interface StandIn {
  readonly program: StandInProgram;
  readonly port: number;
  readonly received: ReceivedRequest[];
  /** Requests in flight (reported as vllm:num_requests_running). */
  readonly inFlight: () => number;
  setHealthy(healthy: boolean): void;
  setStream(chunks: number, intervalMs: number): void;
  close(): Promise<void>;
}

const MAX_JSON_BYTES = 1024 * 1024;

/** A minimal MP3 frame header (MPEG-1 Layer III, 128 kbit/s, 44.1 kHz) so clients see audio/mpeg bytes. */
const MP3_BYTES = Buffer.concat([
  Buffer.from("ID3\u0004\u0000\u0000\u0000\u0000\u0000\u0000", "latin1"),
  Buffer.from([0xff, 0xfb, 0x90, 0x64]),
  Buffer.alloc(413),
]);
const WAV_HEADER = (() => {
  const b = Buffer.alloc(44);
  b.write("RIFF", 0, "latin1");
  b.writeUInt32LE(36, 4);
  b.write("WAVEfmt ", 8, "latin1");
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(1, 22);
  b.writeUInt32LE(22050, 24);
  b.writeUInt32LE(44100, 28);
  b.writeUInt16LE(2, 32);
  b.writeUInt16LE(16, 34);
  b.write("data", 36, "latin1");
  return b;
})();

export async function startStandIn(options: StandInOptions): Promise<StandIn> {
  const program = options.program;
  const model = options.model ?? "coder";
  let healthy = options.healthy ?? true;
  let chunks = options.streamChunks ?? 3;
  let intervalMs = options.chunkIntervalMs ?? 20;
  let inFlight = 0;
  const received: ReceivedRequest[] = [];
  const tasks = new Map<string, number>();
  /** An uploaded plain-text or Markdown file, "converted" as itself: so a pipeline test has real text to split. */
  const taskText = new Map<string, string>();
  const label = `${program} (test stand-in, not the real program)`;

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(text),
      "X-Stand-In": label,
    });
    res.end(text);
  };

  const completion = (body: Record<string, unknown>, chat: boolean) => ({
    id: `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`,
    object: chat ? "chat.completion" : "text_completion",
    created: Math.floor(Date.now() / 1000),
    model: typeof body.model === "string" ? body.model : model,
    choices: [
      chat
        ? { index: 0, message: { role: "assistant", content: `answer from ${program}` }, finish_reason: "stop" }
        : { index: 0, text: `answer from ${program}`, finish_reason: "stop" },
    ],
    usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
  });

  async function stream(res: http.ServerResponse, body: Record<string, unknown>, chat: boolean): Promise<void> {
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Stand-In": label });
    const id = `chatcmpl-${randomUUID()}`;
    const n = typeof body.stream_chunks === "number" ? body.stream_chunks : chunks;
    const pause = typeof body.chunk_interval_ms === "number" ? body.chunk_interval_ms : intervalMs;
    for (let i = 0; i < n; i++) {
      if (res.destroyed) return;
      const delta = chat
        ? {
            index: 0,
            delta: i === 0 ? { role: "assistant", content: `chunk ${i} from ${program}` } : { content: ` chunk ${i}` },
            finish_reason: null,
          }
        : { index: 0, text: ` chunk ${i}`, finish_reason: null };
      res.write(
        `data: ${JSON.stringify({ id, object: chat ? "chat.completion.chunk" : "text_completion", created: Math.floor(Date.now() / 1000), model, choices: [delta], sent_at_ms: Date.now() })}\n\n`,
      );
      if (i < n - 1) await new Promise((r) => setTimeout(r, pause));
    }
    res.write(
      `data: ${JSON.stringify({ id, object: chat ? "chat.completion.chunk" : "text_completion", created: Math.floor(Date.now() / 1000), model, choices: [chat ? { index: 0, delta: {}, finish_reason: "stop" } : { index: 0, text: "", finish_reason: "stop" }], sent_at_ms: Date.now() })}\n\n`,
    );
    res.end("data: [DONE]\n\n");
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): Promise<void> {
    const url = new URL(req.url ?? "/", "http://stand-in");
    const path = url.pathname;
    let body: Record<string, unknown> = {};
    const type = req.headers["content-type"] ?? "";
    if (type.includes("json") && raw.length > 0 && raw.length <= MAX_JSON_BYTES) {
      try {
        body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
      } catch {
        return json(res, 400, {
          error: { message: "invalid JSON", type: "invalid_request_error", code: "invalid_json" },
        });
      }
    }
    const entry: ReceivedRequest = {
      at: Date.now(),
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      bodyBytes: raw.length,
      json: Object.keys(body).length ? body : undefined,
    };
    received.push(entry);
    options.onReceived?.(entry);

    if (path === "/health" || path === "/") {
      if (program === "coqui-tts" && path === "/") return json(res, 200, { status: "ok" });
      return healthy
        ? json(res, 200, { status: "ok" })
        : json(res, 503, { error: { message: "Loading model", type: "unavailable_error", code: 503 } });
    }
    if (path === "/metrics" && program === "vllm") {
      res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4", "X-Stand-In": label });
      res.end(
        `# stand-in\nvllm:num_requests_running{model_name="${model}"} ${inFlight - 1}\nvllm:num_requests_waiting{model_name="${model}"} 0\n`,
      );
      return;
    }
    if (options.apiKey && path !== "/metrics") {
      const given = req.headers[options.apiKey.header];
      const expected =
        options.apiKey.header === "authorization" ? `Bearer ${options.apiKey.value}` : options.apiKey.value;
      if (given !== expected)
        return json(res, 401, { error: { message: "Invalid API Key", type: "authentication_error", code: 401 } });
    }
    if (program === "llama.cpp" && options.embeddings && path === "/v1/embeddings") {
      const { dimensions, ubatch } = options.embeddings;
      const input = body.input;
      const prompts: (string | number[])[] =
        typeof input === "string"
          ? [input]
          : Array.isArray(input) && input.every((t) => typeof t === "number")
            ? [input as number[]]
            : Array.isArray(input)
              ? (input as (string | number[])[])
              : [];
      const tokens = prompts.map((p) => (typeof p === "string" ? standInTokens(p).length : p.length));
      if (prompts.length === 0 || tokens.some((n) => n === 0))
        return json(res, 400, {
          error: { code: 400, message: "Input content cannot be empty", type: "invalid_request_error" },
        });
      const tooLarge = tokens.find((n) => n > ubatch);
      if (tooLarge !== undefined)
        return json(res, 500, {
          error: {
            code: 500,
            message: `input (${tooLarge} tokens) is too large to process. increase the physical batch size (current batch size: ${ubatch})`,
            type: "server_error",
          },
        });
      const base64 = body.encoding_format === "base64";
      const data = prompts.map((p, index) => {
        const v = standInVector(p, dimensions);
        if (!base64) return { embedding: v, index, object: "embedding" };
        const b = Buffer.alloc(v.length * 4);
        v.forEach((x, i) => b.writeFloatLE(x, i * 4));
        return { embedding: b.toString("base64"), index, object: "embedding", encoding_format: "base64" };
      });
      const n = tokens.reduce((a, x) => a + x, 0);
      return json(res, 200, {
        model: typeof body.model === "string" ? body.model : model,
        object: "list",
        usage: { prompt_tokens: n, total_tokens: n },
        data,
      });
    }
    // Backends of the real programs check the hub's internal key; so do these (the tests give it).
    if (program === "vllm" || program === "llama.cpp") {
      if (path === "/v1/models")
        return json(res, 200, {
          object: "list",
          data: [{ id: model, object: "model", created: 0, owned_by: program }],
        });
      if (path === "/v1/chat/completions" || path === "/v1/completions") {
        const chat = path === "/v1/chat/completions";
        if (body.model !== undefined && body.model !== model) {
          // vLLM's own 404 for an unknown model, in its own OpenAI-format body: must reach the client intact.
          return json(res, 404, {
            error: {
              message: `The model \`${String(body.model)}\` does not exist.`,
              type: "NotFoundError",
              param: "model",
              code: 404,
            },
          });
        }
        // An engine failure on request (vLLM answers 500 with its own message): what the gateway's door does with it.
        if (typeof body.fail_status === "number")
          return json(res, body.fail_status, {
            error: { message: "stand-in engine failure", type: "InternalServerError", code: body.fail_status },
          });
        if (body.stream === true) return stream(res, body, chat);
        if (typeof body.delay_ms === "number") await new Promise((r) => setTimeout(r, body.delay_ms as number));
        return json(res, 200, completion(body, chat));
      }
    }
    if (program === "speaches" && (path === "/v1/audio/transcriptions" || path === "/v1/audio/translations")) {
      const text = raw.toString("latin1");
      const modelField = /name="model"\r\n\r\n([^\r]*)/.exec(text)?.[1] ?? null;
      return json(res, 200, { text: `transcribed by ${program}`, model: modelField, bytes: raw.length });
    }
    if (program === "coqui-tts" && path === "/v1/audio/speech") {
      const format = typeof body.response_format === "string" ? body.response_format : "mp3";
      const audio = format === "wav" ? WAV_HEADER : MP3_BYTES;
      res.writeHead(200, {
        "Content-Type": format === "wav" ? "audio/wav" : "audio/mpeg",
        "Content-Length": audio.length,
        "X-Stand-In": label,
      });
      res.end(audio);
      return;
    }
    if (program === "docling-serve") {
      const document = {
        document: { md_content: `# converted by ${program}`, filename: "doc.pdf" },
        status: "success",
        stand_in: program,
      };
      if (path === "/v1/convert/file" || path === "/v1/convert/source")
        return json(res, 200, { ...document, bytes: raw.length });
      if (path === "/v1/convert/file/async" || path === "/v1/convert/source/async") {
        const taskId = randomUUID();
        tasks.set(taskId, 0);
        const upload = /filename="[^"]*\.(?:md|txt)"\r\nContent-Type: [^\r]*\r\n\r\n([\s\S]*?)\r\n--/.exec(
          raw.toString("utf8"),
        );
        if (upload) taskText.set(taskId, upload[1]);
        return json(res, 200, { task_id: taskId, task_status: "pending", task_position: 1 });
      }
      const poll = /^\/v1\/status\/poll\/([0-9a-f-]+)$/.exec(path);
      if (poll) {
        const seen = tasks.get(poll[1]);
        if (seen === undefined) return json(res, 404, { detail: "Task not found." });
        tasks.set(poll[1], seen + 1);
        return json(res, 200, { task_id: poll[1], task_status: seen >= 1 ? "success" : "started" });
      }
      const result = /^\/v1\/result\/([0-9a-f-]+)$/.exec(path);
      if (result) {
        if (!tasks.has(result[1])) return json(res, 404, { detail: "Task result not found." });
        const text = taskText.get(result[1]);
        return json(
          res,
          200,
          text === undefined
            ? document
            : {
                ...document,
                document: { ...document.document, md_content: `${document.document.md_content}\n\n${text}` },
              },
        );
      }
    }
    return json(res, 404, {
      error: {
        message: `stand-in ${program} has no ${req.method} ${path}`,
        type: "invalid_request_error",
        code: "not_found",
      },
    });
  }

  const server = http.createServer((req, res) => {
    inFlight++;
    res.once("close", () => inFlight--);
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      handle(req, res, Buffer.concat(parts)).catch((error: unknown) => {
        if (!res.headersSent)
          json(res, 500, { error: { message: String(error), type: "server_error", code: "stand_in_error" } });
        else res.destroy();
      });
    });
  });
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    program,
    port,
    received,
    inFlight: () => inFlight,
    setHealthy: (h) => void (healthy = h),
    setStream: (c, i) => {
      chunks = c;
      intervalMs = i;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
