import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { EMBEDDINGS_PATH, HEALTH_PATH, MODELS_PATH_PREFIX, type ServedModel } from "./contract";
import {
  clientResponse,
  openAiError,
  parseEmbeddingsRequest,
  upstreamBody,
  upstreamError,
  type EmbeddingsRequest,
  type OpenAiError,
} from "./openai";

/**
 * The embeddings front: OpenAI's `POST /v1/embeddings` (and `GET /v1/models/<name>`) in front of
 * llama-server, behind the gateway and the gatekeeper. It checks the request, forwards it with the
 * credential the gatekeeper put on it (the backends' key: this program holds none), and shapes the
 * answer. It logs counts and timings, never an input or a vector.
 */

export interface EmbeddingsConfig {
  readonly host: string;
  readonly port: number;
  readonly models: readonly ServedModel[];
  readonly maxBodyBytes: number;
  readonly upstreamTimeoutMs: number;
}

export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

export const jsonLogger: Logger = {
  info: (msg, fields) =>
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level: "info", msg, ...fields })}\n`),
  warn: (msg, fields) =>
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: "warn", msg, ...fields })}\n`),
};

export interface EmbeddingsFront {
  readonly server: http.Server;
  listen(): Promise<number>;
  close(): Promise<void>;
}

const JSON_HEADERS = { "Content-Type": "application/json", "Cache-Control": "no-store" } as const;

function send(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...JSON_HEADERS, "Content-Length": String(Buffer.byteLength(text)), ...extra });
  res.end(text);
}

const sendError = (res: http.ServerResponse, error: OpenAiError) =>
  send(
    res,
    error.status,
    error.body,
    error.retryAfterSeconds ? { "Retry-After": String(error.retryAfterSeconds) } : {},
  );

/** The request body, or undefined once it passed `limit` (the rest is drained, not buffered). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) parts.push(chunk);
    });
    req.on("end", () => resolve(size <= limit ? Buffer.concat(parts) : undefined));
    req.on("error", reject);
  });
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/**
 * One upstream call at a time: llama-server runs one slot anyway, and shaping a maximal answer
 * (2048 x 1024 floats, in and out) takes over 100 MiB, which the container's limit holds once,
 * not twice.
 */
class OneAtATime {
  private tail: Promise<void> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

export function startEmbeddingsFront(config: EmbeddingsConfig, log: Logger = jsonLogger): EmbeddingsFront {
  const upstreamTurn = new OneAtATime();

  async function embeddings(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = Date.now();
    const requestId = first(req.headers["x-request-id"]);
    const raw = await readBody(req, config.maxBodyBytes);
    if (!raw)
      return sendError(
        res,
        openAiError(
          413,
          `The request body is larger than the ${config.maxBodyBytes} bytes accepted; send fewer inputs per request.`,
          "invalid_request_error",
          null,
          "request_too_large",
        ),
      );
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      return sendError(
        res,
        openAiError(
          400,
          "We could not parse the JSON body of your request: send JSON with `model` and `input`.",
          "invalid_request_error",
          null,
          "invalid_json",
        ),
      );
    }
    const parsed = parseEmbeddingsRequest(body, config.models);
    if (!parsed.ok) {
      log.info("embeddings request refused", {
        requestId,
        status: parsed.error.status,
        code: parsed.error.body.error.code,
      });
      return sendError(res, parsed.error);
    }
    const request = parsed.request;
    return upstreamTurn.run(async () => {
      // Gone while it waited its turn: nothing to do.
      if (res.destroyed) return;
      await forward(req, res, request, requestId, started);
    });
  }

  async function forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    request: EmbeddingsRequest,
    requestId: string | undefined,
    started: number,
  ): Promise<void> {
    // A client that hangs up stops llama-server's work on its request too.
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    const timer = setTimeout(() => abort.abort(), config.upstreamTimeoutMs);
    try {
      const authorization = first(req.headers.authorization);
      const upstream = await fetch(`${request.model.upstream}${EMBEDDINGS_PATH}`, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          ...(authorization ? { Authorization: authorization } : {}),
          ...(requestId ? { "X-Request-Id": requestId } : {}),
        },
        body: JSON.stringify(upstreamBody(request)),
        signal: abort.signal,
      });
      const text = await upstream.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const fields = {
        requestId,
        model: request.model.name,
        inputs: request.inputs.length,
        dimensions: request.dimensions,
        encoding: request.encoding,
        upstreamStatus: upstream.status,
        ms: Date.now() - started,
      };
      if (!upstream.ok) {
        const error = upstreamError(request, upstream.status, json);
        log.warn("embedding server refused", { ...fields, status: error.status });
        return sendError(res, error);
      }
      const answer = clientResponse(request, json);
      if (!answer) {
        log.warn("embedding server answered in an unexpected shape", fields);
        return sendError(
          res,
          openAiError(
            500,
            "The embedding server's answer had an unexpected shape.",
            "server_error",
            null,
            "backend_error",
          ),
        );
      }
      log.info("embeddings", { ...fields, promptTokens: answer.usage.prompt_tokens });
      send(res, 200, answer);
    } catch (error) {
      if (res.destroyed) return;
      const timedOut = abort.signal.aborted;
      log.warn("embedding server unreachable", {
        requestId,
        model: request.model.name,
        error: timedOut ? "timeout" : String((error as Error).cause ?? error),
      });
      // 502 and 504 become the gateway's own error pages (services/gateway.ts), with Retry-After.
      sendError(
        res,
        openAiError(
          timedOut ? 504 : 502,
          `The embedding server ${timedOut ? "did not answer in time" : "could not be reached"}.`,
          "server_error",
          null,
          "backend_unavailable",
        ),
      );
    } finally {
      clearTimeout(timer);
    }
  }

  function retrieveModel(res: http.ServerResponse, name: string): void {
    const model = config.models.find((m) => m.name === name);
    if (!model) {
      sendError(
        res,
        openAiError(
          404,
          `The model \`${name.slice(0, 100)}\` does not exist or you do not have access to it.`,
          "invalid_request_error",
          "model",
          "model_not_found",
        ),
      );
      return;
    }
    send(res, 200, { id: model.name, object: "model", created: 0, owned_by: model.owner });
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const route = (): Promise<void> | void => {
      if (path === HEALTH_PATH && req.method === "GET") return send(res, 200, { status: "ok" });
      if (path === EMBEDDINGS_PATH) {
        if (req.method !== "POST")
          return sendError(
            res,
            openAiError(405, `${EMBEDDINGS_PATH} takes POST.`, "invalid_request_error", null, "method_not_allowed"),
          );
        return embeddings(req, res);
      }
      if (path.startsWith(MODELS_PATH_PREFIX) && req.method === "GET")
        return retrieveModel(res, decodeURIComponent(path.slice(MODELS_PATH_PREFIX.length)));
      return sendError(
        res,
        openAiError(404, `No ${req.method} ${path.slice(0, 100)} here.`, "invalid_request_error", null, "not_found"),
      );
    };
    Promise.resolve(route()).catch((error: unknown) => {
      log.warn("embeddings front failed", { error: String(error) });
      if (!res.headersSent)
        sendError(
          res,
          openAiError(500, "The embeddings front failed on this request.", "server_error", null, "internal_error"),
        );
      else res.destroy();
    });
  });
  // Longer than Traefik's idle connection timeout (90 s), so the gateway closes idle connections first.
  server.keepAliveTimeout = 95_000;

  return {
    server,
    listen: () =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(config.port, config.host, () => resolve((server.address() as AddressInfo).port));
      }),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
