import { randomUUID } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Pool } from "pg";
import type { GatekeeperConfig } from "./config";
import { AddressLimiter, addressKey, clientAddress } from "./address-limit";
import type { CredentialProblem, DistinctHeaders } from "./credentials";
import { presentedCredential, presentedTokens } from "./credentials";
import type { DecisionRecord, DenyReason, ExecutionRecord } from "./decision";
import { executionReportSchema, SANDBOX_SCOPE } from "../sandbox/protocol";
import { adminContextFor, handleAdmin, isAdminPath } from "./admin";
import { cacheFileIn, KeyRegistry, type KeyRegistryStatus } from "./key-registry";
import { FileKeyStore, type RuntimeKeyStore } from "./key-store";
import { PostgresKeyStore } from "./key-store-pg";
import { secondsToNextUtcDay, UsageCounter } from "./usage";
import type { ApiKey, KeyStore, Scope } from "./keys";
import { isScope } from "./keys";
import type { Logger } from "./log";
import { errorText, jsonLogger } from "./log";
import type { Outcome } from "./metrics";
import { GatekeeperMetrics, METRICS_PATH, metricsCallerAllowed, scopeLabel } from "./metrics";
import type { RateLimit } from "./rate-limit";
import { RateLimiter } from "./rate-limit";
import type { SecretContext } from "./request-id";
import { mayCarrySecret, requestIdFrom } from "./request-id";
import type { ShipperStatus } from "./shipper";
import { AuditShipper } from "./shipper";
import { Spool } from "./spool";
import type { Answer, AuthRequest, OpenAiError } from "./answer";
import { errorBody, jsonAnswer, notFound, scopeParameter, splitTarget } from "./answer";
import { TlsListener } from "./tls-listener";

/**
 * The gatekeeper's HTTP side: `GET /auth?scope=<scope>` for Traefik's forwardAuth, `GET /healthz`
 * for Docker, `GET /metrics` for Prometheus (VPC and loopback only). Every /auth decision about a
 * key is appended to the audit spool before it is answered; when the spool cannot take it the
 * request is refused (503): the audit log is the point of this program. The per-address limit
 * comes first and is not spooled: it exists so that a flood costs neither a key's budget nor an
 * audit write per request (it is counted in the metrics and logged once per address and spell).
 */

export { AUTH_PATH, AUTH_RESPONSE_HEADERS, EXECUTIONS_PATH, HEALTH_PATH } from "./protocol";
export type { Answer, AuthRequest, OpenAiError } from "./answer";
import { AUTH_PATH, EXECUTIONS_PATH, HEALTH_PATH, KEY_WAIT_HEADER } from "./protocol";

/** An execution report is a few hundred bytes; anything much larger is not one. */
const MAX_REPORT_BYTES = 8192;

/** The key's wait policy for a waking GPU, when it has one (programs/holding/core.ts parses it). */
export function keyWaitHeader(key: ApiKey): Record<string, string> {
  const parts = [
    ...(key.waitSeconds !== undefined ? [`default=${key.waitSeconds}`] : []),
    ...(key.maxWaitSeconds !== undefined ? [`max=${key.maxWaitSeconds}`] : []),
  ];
  return parts.length ? { [KEY_WAIT_HEADER]: parts.join(", ") } : {};
}

// ---- the decision, as a pure function ---------------------------------------------------------

export interface DecisionInput {
  /** The `scope` query parameter, null when absent. */
  readonly scope: string | null;
  readonly headers: DistinctHeaders;
  /** Undefined when no valid keys file has been read yet. */
  readonly keys: KeyStore | undefined;
  readonly limiter: RateLimiter;
  readonly defaultLimit: RateLimit;
  readonly nowMs: number;
  /** Allowed requests of a key today (usage.ts), for keys with a daily quota. @default - no quota is enforced */
  readonly usage?: { used(keyId: string, nowMs: number): number };
}

export type Decision =
  | {
      readonly allowed: true;
      readonly status: 200;
      readonly reason: "allowed";
      readonly key: ApiKey;
      readonly scope: Scope;
    }
  | {
      readonly allowed: false;
      readonly status: 401 | 403 | 429 | 503;
      readonly reason: DenyReason;
      readonly keyId: string | null;
      readonly body: OpenAiError;
      readonly retryAfterSeconds?: number;
    };

const CREDENTIAL_MESSAGES: Readonly<Record<CredentialProblem, string>> = {
  missing_key: "You didn't provide an API key. Send it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`.",
  malformed_key:
    "The API key is not in the expected format: send `Authorization: Bearer ihk_...` or `X-Api-Key: ihk_...`.",
  oversized_credential: "The credential header is too long to be an API key.",
  conflicting_keys: "The request carries more than one different API key; send exactly one.",
};

/** The key's own limit where it sets one, else the gatekeeper's default; the same on every service. */
export const limitFor = (key: ApiKey, defaultLimit: RateLimit): RateLimit => ({
  ratePerMinute: key.ratePerMinute ?? defaultLimit.ratePerMinute,
  burst: key.burst ?? defaultLimit.burst,
});

export function decide(input: DecisionInput): Decision {
  const deny = (
    status: 401 | 403 | 429 | 503,
    reason: DenyReason,
    keyId: string | null,
    body: OpenAiError,
    retryAfterSeconds?: number,
  ): Decision => ({ allowed: false, status, reason, keyId, body, retryAfterSeconds });
  const { scope, keys } = input;
  // A route configured with a scope this program does not know is a deployment bug: fail closed.
  // 503, never 500: every 500 a client could get at the door is Traefik's own (GATEKEEPER_FAILURE_STATUS).
  if (scope === null || !isScope(scope)) {
    return deny(
      503,
      "bad_scope",
      null,
      errorBody(
        "The gateway's authorisation settings name an unknown service scope, so the request was refused. Please tell the hub's operator.",
        "server_error",
        "gatekeeper_misconfigured",
      ),
    );
  }
  if (!keys)
    return deny(
      503,
      "keys_unavailable",
      null,
      errorBody(
        "The gateway has no API keys loaded, so no request can be authorised. Please tell the hub's operator.",
        "server_error",
        "keys_unavailable",
      ),
    );
  const credential = presentedCredential(input.headers);
  if (credential.kind === "problem") {
    return deny(
      401,
      credential.problem,
      null,
      errorBody(
        CREDENTIAL_MESSAGES[credential.problem],
        "invalid_request_error",
        credential.problem === "missing_key" ? "missing_api_key" : "invalid_api_key",
      ),
    );
  }
  const key = keys.find(credential.key);
  if (!key)
    return deny(
      401,
      "unknown_key",
      null,
      errorBody("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    );
  if (key.revoked)
    return deny(
      401,
      "revoked_key",
      key.id,
      errorBody("This API key has been revoked.", "invalid_request_error", "invalid_api_key"),
    );
  if (!key.scopes.has(scope))
    return deny(
      403,
      "scope_denied",
      key.id,
      errorBody(`This API key may not use the ${scope} service.`, "invalid_request_error", "insufficient_scope"),
    );
  if (key.dailyQuota !== undefined && input.usage && input.usage.used(key.id, input.nowMs) >= key.dailyQuota) {
    const retry = secondsToNextUtcDay(input.nowMs);
    return deny(
      429,
      "quota_exceeded",
      key.id,
      errorBody(
        `Daily quota reached for this API key: ${key.dailyQuota} requests per UTC day. It starts again at 00:00 UTC, in ${retry} s.`,
        "requests",
        "quota_exceeded",
      ),
      retry,
    );
  }
  const limit = limitFor(key, input.defaultLimit);
  // Only here, with a known, live key that may use this service, is a token taken.
  const rate = input.limiter.take(key.id, scope, limit, input.nowMs);
  if (!rate.allowed) {
    return deny(
      429,
      "rate_limited",
      key.id,
      errorBody(
        `Rate limit reached for this API key on the ${scope} service: ${limit.ratePerMinute} requests per minute, bursts of ${limit.burst}. Try again in ${rate.retryAfterSeconds} s.`,
        "requests",
        "rate_limit_exceeded",
      ),
      rate.retryAfterSeconds,
    );
  }
  return { allowed: true, status: 200, reason: "allowed", key, scope };
}

// ---- what goes into the audit record ----------------------------------------------------------

/** A header's value as Node's `req.headers` gives it: repeated values joined, so a repeated X-Request-Id is no plain token. */
const joined = (values: readonly string[] | undefined): string | undefined => values?.join(", ");
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g;

export { requestIdFrom };

/** Stands in for a path segment that looked like a secret. */
export const REDACTED_SEGMENT = "[redacted]";

/**
 * X-Forwarded-Uri without query string or fragment (an `api_key=` there must not be logged), and
 * without any segment that could be a secret (a key pasted into a URL: request-id.ts).
 */
export function pathFrom(forwardedUri: string | undefined, context: SecretContext = { secrets: [] }): string | null {
  if (!forwardedUri) return null;
  const end = forwardedUri.search(/[?#]/);
  const path = (end < 0 ? forwardedUri : forwardedUri.slice(0, end)).replace(CONTROL_CHARACTERS, "").slice(0, 512);
  if (!path) return null;
  return path
    .split("/")
    .map((segment) => (segment && mayCarrySecret(segment, context) ? REDACTED_SEGMENT : segment))
    .join("/");
}

const methodFrom = (header: string | undefined): string | null =>
  header && /^[A-Z]{1,16}$/.test(header) ? header : null;
const scopeForRecord = (scope: string | null): string => (scope ?? "").replace(CONTROL_CHARACTERS, "").slice(0, 32);

// ---- the server -------------------------------------------------------------------------------

export interface HealthReport {
  readonly status: "ok" | "unhealthy";
  readonly keys: KeyRegistryStatus;
  readonly spool: {
    readonly writable: boolean;
    readonly dir: string;
    readonly segment: number;
    readonly unshippedBytes: number | null;
    readonly decisions: number;
    readonly commits: number;
  };
  readonly database: ({ readonly configured: true } & ShipperStatus) | { readonly configured: false };
}

export interface Gatekeeper {
  readonly server: http.Server;
  readonly keys: KeyRegistry;
  readonly usage: UsageCounter;
  readonly spool: Spool;
  readonly shipper: AuditShipper | undefined;
  readonly metrics: GatekeeperMetrics;
  readonly addresses: AddressLimiter;
  /**
   * Listens on the configured host and port (0 picks a free one), and on the TLS port when a
   * certificate is configured; resolves with the plain port.
   */
  listen(): Promise<number>;
  /** The HTTP/2-over-TLS port Traefik's forwardAuth uses, once listening; undefined without a certificate. */
  readonly tlsPort: number | undefined;
  health(): Promise<HealthReport>;
  /** Stops accepting, answers what is in flight, flushes the spool, ships what it can, closes. */
  close(): Promise<void>;
}

export interface GatekeeperOptions {
  readonly config: GatekeeperConfig;
  /** @default - JSON lines on stdout and stderr */
  readonly log?: Logger;
  /** Poll interval of the keys file. @default 1000 */
  readonly keysPollMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

export async function startGatekeeper(options: GatekeeperOptions): Promise<Gatekeeper> {
  const { config } = options;
  const log = options.log ?? jsonLogger;
  const now = options.now ?? Date.now;
  const limiter = new RateLimiter();
  const defaultLimit: RateLimit = { ratePerMinute: config.defaultRatePerMinute, burst: config.defaultBurst };
  let pool: Pool | undefined;
  if (config.databaseUrl) {
    pool = new Pool({
      connectionString: config.databaseUrl,
      max: 3,
      connectionTimeoutMillis: 3000,
      query_timeout: 15_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: "inference-hub-gatekeeper",
    });
    // Without a listener an idle connection dropped by the server would crash the process.
    pool.on("error", (error) => log.warn("audit database connection lost", { error: errorText(error) }));
  }
  // Runtime keys: in the audit database when there is one (every replica shares it), else in the state directory.
  const runtimeStore: RuntimeKeyStore | undefined =
    pool && config.databaseUrl
      ? new PostgresKeyStore(pool, config.databaseUrl, log)
      : config.stateDir
        ? await FileKeyStore.open(config.stateDir, log)
        : undefined;
  const keys = new KeyRegistry(
    config.keysFile,
    runtimeStore,
    log,
    (store) => limiter.retainOnly(store.ids()),
    pool && config.stateDir ? cacheFileIn(config.stateDir) : undefined,
  );
  if (pool && config.stateDir)
    await import("node:fs/promises").then((fsp) => fsp.mkdir(config.stateDir!, { recursive: true, mode: 0o700 }));
  await keys.start(options.keysPollMs);
  const usage = new UsageCounter(runtimeStore, log, now());
  await usage.sync(now());
  usage.start();

  const spool = await Spool.open({
    dir: config.spoolDir,
    segmentBytes: config.spoolSegmentBytes,
    keepSegments: config.spoolKeepSegments,
    retainUnshipped: config.databaseUrl !== undefined,
    commitsInFlight: config.spoolCommitsInFlight,
    log,
  });
  let shipper: AuditShipper | undefined;
  if (pool) {
    shipper = new AuditShipper({
      spool,
      pool,
      log,
      batchRows: config.auditBatchRows,
      maxDelayMs: config.auditBatchDelayMs,
      onFailure: () => metrics.shipFailures.inc(),
    });
  }
  const metrics = new GatekeeperMetrics(
    {
      // Without a database nothing is waiting to be shipped: the rotated spool is the log.
      pendingRecords: () => shipper?.pendingRecords() ?? 0,
      oldestPendingAgeSeconds: (nowMs) => shipper?.oldestPendingAgeSeconds(nowMs) ?? 0,
      diskFull: () => !spool.writable,
    },
    now,
  );
  shipper?.start();
  const addresses = new AddressLimiter({
    ratePerMinute: config.addressRatePerMinute,
    burst: config.addressBurst,
    maxAddresses: config.addressTableSize,
  });
  const addressLimitBody = errorBody(
    `Too many requests from this client address: the gateway allows ${config.addressRatePerMinute} per minute per address (bursts of ${config.addressBurst}), across all keys. Slow down and retry after the Retry-After interval.`,
    "requests",
    "rate_limit_exceeded",
  );

  // Built once: an allowed answer adds only the key id and the request id.
  const allowedHeaders = {
    authorization: `Bearer ${config.backendKey}`,
    "x-api-key": config.backendKey,
    "cache-control": "no-store",
    "content-length": "0",
  } as const;
  const backendKeySecrets = [config.backendKey];

  const outcomeOf = (decision: Decision): Outcome => {
    if (decision.allowed) return "allowed";
    switch (decision.status) {
      case 401:
        return "unauthorized";
      case 403:
        return "forbidden";
      case 429:
        return "rate_limited";
      default:
        // 503: a route with an unknown scope, or no keys loaded; nothing could be authorised.
        return "unavailable";
    }
  };

  /**
   * The decision for one /auth request. Nothing here blocks the event loop: the one wait is the
   * spool's group commit, which runs in libuv's thread pool, and the answer goes out only once the
   * decision is on disk.
   */
  async function authorise(request: AuthRequest): Promise<Answer> {
    const startedAt = performance.now();
    const nowMs = now();
    const { headers, scope } = request;
    const clientAddr = clientAddress(headers["x-forwarded-for"], request.socketAddress, config.forwardedHops);
    const observe = (keyId: string | null, outcome: Outcome) =>
      metrics.observe(scopeLabel(scope), keyId, outcome, (performance.now() - startedAt) / 1000);
    if (clientAddr !== null) {
      const byAddress = addresses.take(addressKey(clientAddr), nowMs);
      if (!byAddress.allowed) {
        if (byAddress.startedLimiting)
          log.warn(
            "client address over its limit; refusing its requests until it slows down (not written to the audit spool one by one)",
            { client_addr: clientAddr, ratePerMinute: config.addressRatePerMinute, burst: config.addressBurst },
          );
        observe(null, "address_rate_limited");
        return jsonAnswer(429, addressLimitBody, { "retry-after": String(byAddress.retryAfterSeconds) });
      }
      if (byAddress.endedLimiting)
        log.info("client address back under its limit", {
          client_addr: clientAddr,
          refused: byAddress.endedLimiting.refused,
        });
    }
    const decisionId = randomUUID();
    const store = keys.current;
    const decision = decide({ scope, headers, keys: store, limiter, defaultLimit, nowMs, usage });
    // What a client controls and the gatekeeper echoes or stores must not carry a secret.
    const secretContext: SecretContext = {
      secrets: [...presentedTokens(headers), ...backendKeySecrets],
      isKeyId: store ? (id) => store.hasId(id) : undefined,
    };
    const requestId = requestIdFrom(joined(headers["x-request-id"]), decisionId, secretContext);
    const record: DecisionRecord = {
      decision_id: decisionId,
      decided_at: new Date(nowMs).toISOString(),
      request_id: requestId,
      key_id: decision.allowed ? decision.key.id : decision.keyId,
      scope: scopeForRecord(scope),
      method: methodFrom(joined(headers["x-forwarded-method"])),
      path: pathFrom(joined(headers["x-forwarded-uri"]), secretContext),
      client_addr: clientAddr,
      allowed: decision.allowed,
      reason: decision.reason,
      status: decision.status,
    };
    try {
      await spool.append(record);
    } catch {
      // Logged by the spool. Not auditable means not allowed, and a request not let through keeps its token.
      if (decision.allowed) limiter.refund(decision.key.id, decision.scope, limitFor(decision.key, defaultLimit));
      observe(record.key_id, "unavailable");
      return jsonAnswer(
        503,
        errorBody(
          "The gateway cannot record this request in its audit log right now, so it was refused. Please try again shortly.",
          "server_error",
          "audit_unavailable",
        ),
        { "x-request-id": requestId },
      );
    }
    observe(record.key_id, outcomeOf(decision));
    if (decision.allowed) {
      usage.record(decision.key.id, nowMs);
      return {
        status: 200,
        headers: {
          ...allowedHeaders,
          "x-hub-key-id": decision.key.id,
          "x-request-id": requestId,
          // Always on the sandbox's requests, so no client can supply its own (Traefik replaces it).
          ...(decision.scope === SANDBOX_SCOPE ? { "x-hub-sandbox-limits": decision.key.sandboxLimits } : {}),
          // Only the coder route holds (programs/holding/).
          ...(decision.scope === "llm" ? keyWaitHeader(decision.key) : {}),
        },
      };
    }
    const extra: Record<string, string> = { "x-request-id": requestId };
    if (decision.status === 401) extra["www-authenticate"] = 'Bearer realm="inference-hub"';
    if (decision.retryAfterSeconds !== undefined) extra["retry-after"] = String(decision.retryAfterSeconds);
    return jsonAnswer(decision.status, decision.body, extra);
  }

  /** authorise(), and an answer even if it throws: 503 (never 500, which is Traefik's own at the door). */
  const answerAuth = (request: AuthRequest): Promise<Answer> =>
    authorise(request).catch((error: unknown) => {
      log.error("auth request failed", { error: errorText(error) });
      return jsonAnswer(
        503,
        errorBody(
          "The gateway failed to authorise this request. Retry shortly; tell the hub's operator if this persists.",
          "server_error",
          "gatekeeper_error",
        ),
      );
    });

  /**
   * POST /executions: the sandbox front's report of one execution (programs/sandbox/front/), from
   * the Docker network only, appended to the spool like a decision and shipped to
   * gatekeeper.sandbox_executions. Answered once it is on disk.
   */
  async function recordExecution(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== "POST" || !metricsCallerAllowed(req.socket.remoteAddress, req.headers)) {
      sendJson(
        res,
        403,
        errorBody(
          "Execution reports come from the sandbox front on the gateway node's network only.",
          "invalid_request_error",
          "forbidden",
        ),
      );
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_REPORT_BYTES) {
        sendJson(
          res,
          413,
          errorBody(
            `An execution report is at most ${MAX_REPORT_BYTES} bytes.`,
            "invalid_request_error",
            "report_too_large",
          ),
        );
        return;
      }
      chunks.push(chunk);
    }
    let parsed: ReturnType<typeof executionReportSchema.safeParse>;
    try {
      parsed = executionReportSchema.safeParse(JSON.parse(Buffer.concat(chunks).toString("utf8")));
    } catch {
      parsed = executionReportSchema.safeParse(undefined);
    }
    if (!parsed.success) {
      sendJson(
        res,
        400,
        errorBody(
          `Not an execution report: ${parsed.error.issues
            .map((i) => `${i.path.join(".") || "body"}: ${i.message}`)
            .join("; ")
            .slice(0, 500)}`,
          "invalid_request_error",
          "invalid_report",
        ),
      );
      return;
    }
    const report = parsed.data;
    const executionId = randomUUID();
    const record: ExecutionRecord = {
      execution_id: executionId,
      reported_at: new Date(now()).toISOString(),
      // The front got it from this gatekeeper; checked again, as anything stored must carry no secret.
      request_id: requestIdFrom(report.request_id, executionId, { secrets: [config.backendKey] }),
      key_id: report.key_id,
      language: report.language,
      version: report.version,
      session: report.session,
      outcome: report.outcome,
      status: report.status,
      exit_code: report.exit_code,
      signal: report.signal,
      limits_hit: report.limits_hit,
      wall_ms: report.wall_ms,
      cpu_ms: report.cpu_ms,
      memory_bytes: report.memory_bytes,
      output_bytes: report.output_bytes,
      duration_ms: report.duration_ms,
    };
    try {
      await spool.append(record);
    } catch {
      sendJson(
        res,
        503,
        errorBody("The audit spool cannot be written right now.", "server_error", "audit_unavailable"),
      );
      return;
    }
    sendJson(res, 200, { execution_id: executionId });
  }

  async function health(): Promise<HealthReport> {
    const keyStatus = keys.status();
    const dirWritable = await access(config.spoolDir, fsConstants.W_OK).then(
      () => true,
      () => false,
    );
    const writable = dirWritable && spool.writable;
    const unshippedBytes = shipper
      ? await spool.bytesAfter(shipper.shippedUpTo ?? (await spool.shippingStart())).catch(() => null)
      : null;
    return {
      status: keyStatus.loaded && writable ? "ok" : "unhealthy",
      keys: keyStatus,
      // Since the start: decisions ÷ commits is how well group commit batches.
      spool: {
        writable,
        dir: config.spoolDir,
        segment: spool.currentSegment,
        unshippedBytes,
        decisions: spool.committedRecords,
        commits: spool.commits,
      },
      // Reported, never a reason to be unhealthy: the spool holds the rows through an outage.
      database: shipper ? { configured: true, ...shipper.status() } : { configured: false },
    };
  }

  const adminContext = adminContextFor({
    registry: keys,
    usage,
    log,
    now,
    config,
    audit: async () =>
      shipper
        ? {
            configured: true,
            connected: shipper.status().connected ?? undefined,
            lastError: shipper.status().lastError,
          }
        : { configured: false },
  });

  const server = http.createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    const { pathname, query } = splitTarget(req.url ?? "/");
    if (pathname === AUTH_PATH) {
      void answerAuth({
        scope: scopeParameter(query),
        headers: req.headersDistinct,
        socketAddress: req.socket.remoteAddress,
      }).then((answer) => send(res, answer));
      return;
    }
    if (isAdminPath(pathname)) {
      handleAdmin(req, pathname, (status, body) => sendJson(res, status, body), adminContext).catch(
        (error: unknown) => {
          log.error("admin request failed", { error: errorText(error) });
          if (!res.headersSent)
            sendJson(
              res,
              500,
              errorBody("The admin request failed inside the gatekeeper.", "server_error", "gatekeeper_error"),
            );
        },
      );
      return;
    }
    if (pathname === METRICS_PATH) {
      if (!metricsCallerAllowed(req.socket.remoteAddress, req.headers)) {
        send(
          res,
          jsonAnswer(
            403,
            errorBody(
              "The gatekeeper's metrics are readable only from inside the VPC or the node itself, not through the gateway.",
              "invalid_request_error",
              "forbidden",
            ),
          ),
        );
        return;
      }
      metrics.text().then(
        (text) =>
          send(res, {
            status: 200,
            headers: {
              "content-type": metrics.contentType,
              "cache-control": "no-store",
              "content-length": String(Buffer.byteLength(text)),
            },
            body: text,
          }),
        (error: unknown) =>
          send(res, jsonAnswer(500, errorBody(`metrics failed: ${errorText(error)}`, "server_error", "metrics_error"))),
      );
      return;
    }
    if (pathname === EXECUTIONS_PATH) {
      recordExecution(req, res).catch((error: unknown) => {
        log.error("execution report failed", { error: errorText(error) });
        if (!res.headersSent)
          sendJson(
            res,
            500,
            errorBody("The gatekeeper failed to record the execution.", "server_error", "gatekeeper_error"),
          );
      });
      return;
    }
    if (pathname === HEALTH_PATH) {
      health().then(
        (report) => send(res, jsonAnswer(report.status === "ok" ? 200 : 503, report)),
        (error: unknown) => send(res, jsonAnswer(503, { status: "unhealthy", error: errorText(error) })),
      );
      return;
    }
    send(res, notFound(pathname));
  });
  // Longer than the idle timeout of Traefik's clients, so Traefik closes idle connections first
  // and never reuses one this side is closing.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.requestTimeout = 30_000;
  const tls = config.tls ? new TlsListener({ tls: config.tls, log, answerAuth }) : undefined;

  let closing: Promise<void> | undefined;
  return {
    server,
    keys,
    usage,
    spool,
    shipper,
    metrics,
    addresses,
    get tlsPort() {
      return tls?.port;
    },
    listen: async () => {
      const port = await new Promise<number>((resolve, reject) => {
        server.once("error", reject);
        server.listen(config.port, config.host, () => {
          server.off("error", reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
      await tls?.listen(config.host);
      return port;
    },
    health,
    close: () =>
      (closing ??= (async () => {
        await Promise.all([
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
          }),
          tls?.close(),
        ]);
        await spool.close();
        await usage.stop();
        await keys.close();
        await shipper?.stop();
        await pool?.end().catch(() => undefined);
      })()),
  };
}

const sendJson = (res: http.ServerResponse, status: number, body: unknown): void => send(res, jsonAnswer(status, body));

function send(res: http.ServerResponse, answer: Answer): void {
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
}
