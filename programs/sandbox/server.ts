import { createHash, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../gatekeeper/log";
import { errorText } from "../gatekeeper/log";
import type { Executor } from "./executor";
import type { LanguageTable } from "./languages";
import {
  apiError,
  executionRequestSchema,
  KEY_ID_HEADER,
  KEY_LIMITS_HEADER,
  type PartialLimits,
  partialLimitsSchema,
  MAX_REQUEST_BYTES,
  SANDBOX_HEALTH_PATH,
  SANDBOX_PATHS,
  sessionRequestSchema,
} from "./protocol";
import { ApiRefusal } from "./refusal";

/**
 * The sandbox node's HTTP API. Only the front on the gateway node calls it (the node's firewall
 * admits nothing else), with a token this node knows only as a SHA-256 digest: an escape from a
 * sandbox finds no secret here that opens anything. The key id comes from the gatekeeper through
 * the front; sessions belong to it.
 */

export interface SandboxServerOptions {
  readonly executor: Executor;
  readonly languages: LanguageTable;
  /** SHA-256 of the token the front sends, 32 bytes. */
  readonly tokenDigest: Buffer;
  readonly log: Logger;
  /** Shown by /healthz. */
  readonly runscVersion: string;
}

const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
};

const refuse = (res: http.ServerResponse, refusal: ApiRefusal): void =>
  json(
    res,
    refusal.status,
    apiError(refusal.message, refusal.type, refusal.code),
    refusal.retryAfterSeconds ? { "retry-after": String(refusal.retryAfterSeconds) } : {},
  );

/** Bearer token → whether its digest is the configured one (constant time). */
export function tokenMatches(header: string | undefined, digest: Buffer): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match) return false;
  return timingSafeEqual(createHash("sha256").update(match[1]).digest(), digest);
}

async function readBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_REQUEST_BYTES)
      throw new ApiRefusal(
        413,
        "request_too_large",
        `the request body is larger than ${MAX_REQUEST_BYTES} bytes; send smaller files (or fewer) per execution`,
      );
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ApiRefusal(400, "invalid_json", "the request body is not valid JSON");
  }
}

/** The key's own ceiling from the gatekeeper (absent: none beyond the node's). */
export function keyLimitsFrom(header: string | string[] | undefined): PartialLimits {
  if (header === undefined || header === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Array.isArray(header) ? header[0] : header);
  } catch {
    parsed = undefined;
  }
  const result = partialLimitsSchema.safeParse(parsed);
  if (!result.success)
    throw new ApiRefusal(
      500,
      "invalid_key_limits",
      `the gateway sent ${KEY_LIMITS_HEADER} that is not a set of limits; check the key's sandboxLimits in the keys file`,
    );
  return result.data;
}

/** zod's issues as one line per field, e.g. "files.0.name: must be a relative path ...". */
const issues = (error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }): string =>
  error.issues.map((i) => `${i.path.map(String).join(".") || "body"}: ${i.message}`).join("; ");

export function createSandboxServer(options: SandboxServerOptions): http.Server {
  const { executor, log } = options;
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://sandbox");
    if (url.pathname === SANDBOX_HEALTH_PATH && req.method === "GET") {
      const status = executor.status();
      return json(res, 200, {
        ok: true,
        runsc: options.runscVersion,
        languages: options.languages.list.map((l) => `${l.language} ${l.version}`),
        ...status,
      });
    }
    if (!tokenMatches(req.headers.authorization, options.tokenDigest))
      throw new ApiRefusal(401, "invalid_sandbox_token", "this API answers the hub's gateway only");
    const keyId = String(req.headers[KEY_ID_HEADER] ?? "");
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(keyId))
      throw new ApiRefusal(400, "missing_key_id", `the gateway sent no usable ${KEY_ID_HEADER}`);
    const key = { id: keyId, limits: keyLimitsFrom(req.headers[KEY_LIMITS_HEADER]) };

    if (url.pathname === SANDBOX_PATHS.languages && req.method === "GET")
      return json(res, 200, { languages: options.languages.list });
    if (url.pathname === SANDBOX_PATHS.executions && req.method === "POST") {
      const parsed = executionRequestSchema.safeParse(await readBody(req));
      if (!parsed.success) throw new ApiRefusal(400, "invalid_request", issues(parsed.error));
      return json(res, 200, await executor.execute(parsed.data, key));
    }
    if (url.pathname === SANDBOX_PATHS.sessions && req.method === "POST") {
      const parsed = sessionRequestSchema.safeParse(await readBody(req));
      if (!parsed.success) throw new ApiRefusal(400, "invalid_request", issues(parsed.error));
      return json(res, 201, await executor.createSession(parsed.data, key));
    }
    const session = new RegExp(`^${SANDBOX_PATHS.sessions}/([A-Za-z0-9_]{1,64})$`).exec(url.pathname);
    if (session && req.method === "GET") return json(res, 200, executor.getSession(session[1], keyId));
    if (session && req.method === "DELETE") {
      executor.deleteSession(session[1], keyId);
      return json(res, 200, { id: session[1], deleted: true });
    }
    throw new ApiRefusal(
      404,
      "not_found",
      `no ${req.method} ${url.pathname} here; see GET ${SANDBOX_PATHS.languages}, POST ${SANDBOX_PATHS.executions}, POST ${SANDBOX_PATHS.sessions}`,
    );
  };
  return http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) return res.destroy();
      if (error instanceof ApiRefusal) return refuse(res, error);
      log.error("sandbox API error", { error: errorText(error), path: req.url?.split("?")[0] });
      refuse(res, new ApiRefusal(500, "sandbox_error", "The sandbox API failed to handle the request."));
    });
  });
}

export function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}
