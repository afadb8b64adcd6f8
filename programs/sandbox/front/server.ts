import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../../gatekeeper/log";
import { errorText } from "../../gatekeeper/log";
import {
  apiError,
  type ExecutionReport,
  type ExecutionResult,
  KEY_ID_HEADER,
  KEY_LIMITS_HEADER,
  LIMITS_HIT,
  MAX_REQUEST_BYTES,
  REQUEST_ID_HEADER,
  SANDBOX_HEALTH_PATH,
  SANDBOX_PATH_PREFIX,
  SANDBOX_PATHS,
} from "../protocol";
import type { FrontConfig } from "./config";

/**
 * The sandbox front, on the gateway node: Traefik sends it /v1/sandbox/* once the gatekeeper has
 * allowed the request. It passes the request to the sandbox node with the sandbox token (never the
 * client's key, never the backends' key), and after each execution gives the gatekeeper its audit
 * report (language, limits hit, durations; never the code or the output). The sandbox node holds
 * only the token's digest, so nothing it holds opens anything else.
 */

/** Room for JSON escaping of two 16 MiB streams at their ceiling. */
const MAX_RESPONSE_BYTES = 96 * 1024 * 1024;
const REPORT_TIMEOUT_MS = 5000;
const HEALTH_TIMEOUT_MS = 3000;

const sendJson = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void => {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
};

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const header = (req: http.IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

const parse = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** The audit report of one execution request, from what was asked and what came back. */
export function executionReport(input: {
  readonly requestId: string;
  readonly keyId: string | null;
  readonly request: unknown;
  readonly status: number;
  readonly response: unknown;
  readonly durationMs: number;
}): ExecutionReport {
  const asked = (typeof input.request === "object" && input.request !== null ? input.request : {}) as {
    language?: unknown;
    session_id?: unknown;
  };
  const result =
    input.status === 200 && typeof input.response === "object" && input.response !== null
      ? (input.response as Partial<ExecutionResult>)
      : undefined;
  const int = (v: unknown): number | null => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : null);
  const language =
    typeof result?.language === "string"
      ? result.language
      : typeof asked.language === "string"
        ? asked.language
            .toLowerCase()
            .replace(/[^a-z0-9+#._-]/g, "")
            .slice(0, 32) || "unknown"
        : "unknown";
  return {
    request_id: input.requestId,
    key_id: input.keyId,
    language,
    version: typeof result?.version === "string" ? result.version.slice(0, 64) : null,
    session: typeof asked.session_id === "string",
    outcome: input.status === 200 ? "completed" : input.status < 500 ? "refused" : "failed",
    status: input.status,
    exit_code:
      typeof result?.exit_code === "number" && Number.isSafeInteger(result.exit_code) ? result.exit_code : null,
    signal: typeof result?.signal === "string" ? result.signal.slice(0, 16) : null,
    limits_hit: Array.isArray(result?.limits_hit) ? LIMITS_HIT.filter((l) => result.limits_hit?.includes(l)) : [],
    wall_ms: int(result?.wall_ms),
    cpu_ms: int(result?.cpu_ms),
    memory_bytes: int(result?.memory_bytes),
    output_bytes: result ? Buffer.byteLength(result.stdout ?? "") + Buffer.byteLength(result.stderr ?? "") : null,
    duration_ms: Math.max(0, Math.round(input.durationMs)),
  };
}

export interface FrontOptions {
  readonly config: FrontConfig;
  readonly log: Logger;
}

export function createFrontServer({ config, log }: FrontOptions): http.Server {
  const authorization = `Bearer ${config.nodeToken}`;

  async function report(body: ExecutionReport): Promise<void> {
    if (!config.auditUrl) {
      log.info("sandbox execution", { ...body });
      return;
    }
    try {
      const answer = await fetch(config.auditUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(REPORT_TIMEOUT_MS),
      });
      if (!answer.ok)
        throw new Error(`the gatekeeper answered ${answer.status}: ${(await answer.text()).slice(0, 200)}`);
    } catch (error) {
      // The program already ran: its answer is not withheld, but the gap in the log is loud.
      log.error("sandbox execution report not recorded in the audit log", {
        error: errorText(error),
        request_id: body.request_id,
        key_id: body.key_id,
        language: body.language,
        status: body.status,
      });
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://front");
    if (url.pathname === SANDBOX_HEALTH_PATH) {
      const node = await fetch(`${config.nodeUrl}${SANDBOX_HEALTH_PATH}`, {
        signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
      }).then(
        async (r) => (r.ok ? parse(await r.text()) : undefined),
        () => undefined,
      );
      // The front is healthy whether or not the node answers: requests then get its JSON 502
      // (sandbox_unreachable), which says more than a proxy's "no available server".
      return sendJson(res, 200, { ok: true, node: node ?? null });
    }
    if (!url.pathname.startsWith(SANDBOX_PATH_PREFIX))
      return sendJson(
        res,
        404,
        apiError(`no such sandbox endpoint: ${url.pathname.slice(0, 100)}`, "invalid_request_error", "not_found"),
      );
    const started = performance.now();
    const body = await readBody(req, MAX_REQUEST_BYTES + 65_536);
    if (body === undefined)
      return sendJson(
        res,
        413,
        apiError(
          `the request body is larger than ${MAX_REQUEST_BYTES} bytes; send smaller files (or fewer) per execution`,
          "invalid_request_error",
          "request_too_large",
        ),
      );
    const keyId = header(req, KEY_ID_HEADER) ?? null;
    const requestId = header(req, REQUEST_ID_HEADER) ?? "";
    const keyLimits = header(req, KEY_LIMITS_HEADER);
    const isExecution = req.method === "POST" && url.pathname === SANDBOX_PATHS.executions;

    let status: number;
    let text: string;
    let retryAfter: string | null = null;
    try {
      const answer = await fetch(`${config.nodeUrl}${url.pathname}${url.search}`, {
        method: req.method,
        headers: {
          authorization,
          "content-type": "application/json",
          ...(keyId ? { [KEY_ID_HEADER]: keyId } : {}),
          ...(requestId ? { [REQUEST_ID_HEADER]: requestId } : {}),
          ...(keyLimits ? { [KEY_LIMITS_HEADER]: keyLimits } : {}),
        },
        body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
        signal: AbortSignal.timeout(config.timeoutMs),
      });
      status = answer.status;
      retryAfter = answer.headers.get("retry-after");
      text = await answer.text();
      if (Buffer.byteLength(text) > MAX_RESPONSE_BYTES)
        throw new Error(`the sandbox node's answer is over ${MAX_RESPONSE_BYTES} bytes`);
    } catch (error) {
      log.error("sandbox node did not answer", { error: errorText(error), path: url.pathname, request_id: requestId });
      status = 502;
      text = JSON.stringify(
        apiError("The sandbox node did not answer; try again shortly.", "server_error", "sandbox_unreachable"),
      );
    }
    if (isExecution)
      await report(
        executionReport({
          requestId: requestId || "unknown",
          keyId,
          request: parse(body.toString("utf8")),
          status,
          response: status === 200 ? parse(text) : undefined,
          durationMs: performance.now() - started,
        }),
      );
    res.writeHead(status, {
      "content-type": "application/json",
      "cache-control": "no-store",
      "content-length": Buffer.byteLength(text),
      ...(retryAfter ? { "retry-after": retryAfter } : {}),
      ...(requestId ? { "x-request-id": requestId } : {}),
    });
    res.end(text);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error("sandbox front error", { error: errorText(error) });
      if (!res.headersSent)
        sendJson(
          res,
          500,
          apiError("The sandbox front failed to handle the request.", "server_error", "sandbox_front_error"),
        );
      else res.destroy();
    });
  });
  // Executions run up to two minutes; Node's default request timeout (300 s) covers them.
  server.requestTimeout = config.timeoutMs + 30_000;
  return server;
}

export function listenFront(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}
