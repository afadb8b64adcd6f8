import * as http from "node:http";
import { HOLDER_HEALTH_PATH } from "../autoscaler/controller/contract";
import { chooseWait, HoldLimits, HoldQueue, KEY_WAIT_HEADER, parseKeyWait, WAIT_HEADER } from "./core";

/**
 * The holder's HTTP side: Traefik sends the coder route here whenever no GPU replica is in its
 * routes (the route's fallback). Each request is, in this order:
 * - forwarded to a replica that answers already (the routes file lags the replica by a deploy step);
 * - held, when it asks to wait (X-Hub-Wait, or its key's default) and the GPU is waking: a stream
 *   gets its 200 and an SSE comment every keepAliveMs at once, so no client or proxy times out;
 *   forwarded when a replica answers; at its deadline, answered as one that did not wait;
 * - else forwarded to the CPU stand-in, or answered with the stack's 503 (gpu_off, the state, Retry-After).
 * Only requests the gatekeeper let through reach this port (its X-Hub-Key-Id is required to hold).
 */

export interface OffAnswerLike {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: unknown;
}

export type HoldOutcome =
  | "gpu"
  | "gpu-after-hold"
  | "fallback"
  | "fallback-after-hold"
  | "off"
  | "off-after-hold"
  | "refused"
  | "bad-request"
  | "client-gone";

/** What the holder needs to know about the GPU; the controller implements it (a Kubernetes holder would too). */
export interface HolderView {
  /** The base URL of a replica that answers now, if any; asked every pollMs while requests are held. */
  readyReplica(): Promise<string | undefined>;
  /** A wait makes sense while the GPU is waking (or this request wakes it) and the budget allows it. */
  wakeState(): { readonly kind: "waking"; readonly readyInSeconds: number } | { readonly kind: "not-waking" };
  /** The stack's 503 for a request nothing serves. */
  offAnswer(): OffAnswerLike;
  /** Once per request, on arrival: demand, when it came through the door (`allowed`: it carries the gatekeeper's key id). */
  arrived(allowed: boolean): void;
  /** Once per request, when its answer ended; `heldSeconds` for a held one. */
  finished(outcome: HoldOutcome, heldSeconds?: number): void;
}

export interface HolderOptions {
  readonly limits: HoldLimits;
  /** The CPU stand-in's base URL (http://coder-fallback:8080), when the stack has one. */
  readonly fallbackUrl?: string;
  /** Largest request body read, bytes (the route's own limit). */
  readonly maxBodyBytes: number;
  /** @default 1000 */
  readonly pollMs?: number;
  /** @default 15000 */
  readonly keepAliveMs?: number;
  readonly clock?: () => number;
}

/** Traefik's health check of the holder (failover to the CPU stand-in when the controller is down). No public route maps here. */
export { HOLDER_HEALTH_PATH };
export const HELD_SECONDS_HEADER = "X-Hub-Held-Seconds";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
]);
/** Client-side headers that are the holder's business, not the backend's. */
const HOLDER_ONLY = new Set([WAIT_HEADER.toLowerCase(), KEY_WAIT_HEADER.toLowerCase()]);

const openAiError = (message: string, type: string, code: string) => ({ error: { message, type, code } });

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(text);
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | "too-large"> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve("too-large");
        req.resume();
        return;
      }
      parts.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });
}

function isStream(body: Buffer, contentType: string | undefined): boolean {
  if (!contentType?.includes("json")) return false;
  try {
    return (JSON.parse(body.toString("utf8")) as { stream?: unknown }).stream === true;
  } catch {
    return false;
  }
}

function forwardHeaders(req: http.IncomingMessage, bodyBytes: number): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || HOLDER_ONLY.has(name)) continue;
    out[name] = value;
  }
  out["content-length"] = String(bodyBytes);
  return out;
}

/** Sends the request to `base` and resolves with its response (or rejects when it cannot connect). */
function send(
  base: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: Buffer,
  onResponse: (res: http.IncomingMessage) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const url = new URL(req.url ?? "/", base);
    const out = http.request(url, { method: req.method, headers: forwardHeaders(req, body.length) }, (upstream) => {
      onResponse(upstream);
      upstream.on("end", resolve);
      upstream.on("error", reject);
      upstream.on("aborted", () => resolve());
    });
    out.on("error", reject);
    // The client left: so does the backend request (vLLM aborts a generation whose client is gone).
    res.once("close", () => {
      if (!res.writableEnded) out.destroy();
    });
    out.end(body);
  });
}

function copyResponseHeaders(upstream: http.IncomingMessage, extra: Record<string, string>): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream.headers))
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  if (upstream.headers["content-length"] !== undefined) headers["content-length"] = upstream.headers["content-length"];
  return { ...headers, ...extra };
}

export interface HoldHandler {
  readonly handle: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  readonly queue: HoldQueue;
  /** On shutdown: every hold ends now (answered as if it did not wait); resolves when the answers in flight are done, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<void>;
}

export function createHoldHandler(view: HolderView, options: HolderOptions): HoldHandler {
  const queue = new HoldQueue(options.limits);
  let draining = false;
  let active = 0;
  const clock = options.clock ?? Date.now;
  const pollMs = options.pollMs ?? 1000;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

  /** A plain proxy of the whole answer; for a stream whose headers were sent already, only its body. */
  async function relay(
    base: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    streamStarted: boolean,
    extra: Record<string, string>,
  ): Promise<void> {
    await send(base, req, res, body, (upstream) => {
      if (!streamStarted) {
        res.writeHead(upstream.statusCode ?? 502, copyResponseHeaders(upstream, extra));
        upstream.pipe(res);
        return;
      }
      if ((upstream.statusCode ?? 502) === 200) {
        upstream.pipe(res);
        return;
      }
      // The stream's 200 went out while it waited: an error answer becomes an error event, as OpenAI's streams carry them.
      const parts: Buffer[] = [];
      upstream.on("data", (c: Buffer) => parts.push(c));
      upstream.on("end", () => {
        let error: unknown;
        try {
          error = (JSON.parse(Buffer.concat(parts).toString("utf8")) as { error?: unknown }).error;
        } catch {
          error = undefined;
        }
        res.end(
          `data: ${JSON.stringify({ error: error ?? openAiError(`The coding model answered HTTP ${upstream.statusCode}.`, "server_error", "backend_error").error })}\n\n`,
        );
      });
    });
  }

  function answerOff(res: http.ServerResponse, streamStarted: boolean, extra: Record<string, string> = {}): void {
    const off = view.offAnswer();
    if (!streamStarted) {
      sendJson(res, off.status, off.body, { ...off.headers, ...extra });
      return;
    }
    const error = (off.body as { error?: unknown }).error;
    res.end(`data: ${JSON.stringify({ error })}\n\n`);
  }

  async function answerWithout(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    streamStarted: boolean,
    held: boolean,
    extra: Record<string, string>,
  ): Promise<HoldOutcome> {
    if (options.fallbackUrl) {
      try {
        await relay(options.fallbackUrl, req, res, body, streamStarted, extra);
        return held ? "fallback-after-hold" : "fallback";
      } catch {
        // The CPU stand-in is down: the 503 says what the GPU is doing instead.
      }
    }
    answerOff(res, streamStarted, extra);
    return held ? "off-after-hold" : "off";
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    active++;
    const arrivedMs = clock();
    const keyId = req.headers["x-hub-key-id"];
    view.arrived(typeof keyId === "string" && keyId !== "");
    let outcome: HoldOutcome = "client-gone";
    let heldSeconds: number | undefined;
    let gone = false;
    res.once("close", () => {
      gone = true;
    });
    try {
      const body = await readBody(req, options.maxBodyBytes);
      if (body === "too-large") {
        outcome = "bad-request";
        sendJson(
          res,
          413,
          openAiError(
            `The request body is larger than the ${options.maxBodyBytes} bytes this route accepts.`,
            "invalid_request_error",
            "request_too_large",
          ),
        );
        return;
      }
      const header = req.headers[WAIT_HEADER.toLowerCase()];
      const wait = chooseWait(
        Array.isArray(header) ? header[0] : header,
        parseKeyWait(req.headers[KEY_WAIT_HEADER.toLowerCase()] as string | undefined),
        options.limits,
      );
      if (!wait.ok) {
        outcome = "bad-request";
        sendJson(res, 400, openAiError(wait.message, "invalid_request_error", "invalid_wait"));
        return;
      }
      const ready = await view.readyReplica();
      if (ready) {
        try {
          await relay(ready, req, res, body, false, {});
          outcome = "gpu";
          return;
        } catch {
          // It stopped answering between the check and the request: answer as if it were not there.
        }
      }
      const state = view.wakeState();
      if (wait.seconds <= 0 || typeof keyId !== "string" || state.kind !== "waking") {
        outcome = await answerWithout(req, res, body, false, false, {});
        return;
      }
      const admission = queue.admit(keyId, wait.seconds, body.length, arrivedMs, state.readyInSeconds);
      if (admission.kind === "refused") {
        outcome = "refused";
        sendJson(res, 429, admission.body, { "retry-after": String(admission.retryAfterSeconds) });
        return;
      }
      const stream = isStream(body, req.headers["content-type"]);
      let keepAlive: NodeJS.Timeout | undefined;
      try {
        if (stream) {
          res.writeHead(200, {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
          });
          const comment = () => {
            const left = view.wakeState();
            res.write(
              `: waiting for the GPU${left.kind === "waking" ? ` (ready in about ${Math.ceil(left.readyInSeconds)} s)` : ""}; held up to ${wait.seconds} s\n\n`,
            );
          };
          comment();
          keepAlive = setInterval(comment, keepAliveMs);
        }
        let replica: string | undefined;
        while (!gone && clock() < admission.deadlineMs) {
          replica = await view.readyReplica();
          if (replica) break;
          // The decision may have changed under the hold (budget, pin): stop waiting for a GPU that will not come.
          if (draining || view.wakeState().kind !== "waking") break;
          await sleep(Math.min(pollMs, Math.max(1, admission.deadlineMs - clock())));
        }
        if (keepAlive) clearInterval(keepAlive);
        heldSeconds = Math.round((clock() - arrivedMs) / 100) / 10;
        queue.release(admission.ticket);
        if (gone) return;
        const extra = stream ? {} : { [HELD_SECONDS_HEADER.toLowerCase()]: String(heldSeconds) };
        if (replica) {
          try {
            await relay(replica, req, res, body, stream, extra);
            outcome = "gpu-after-hold";
            return;
          } catch {
            // As above: fall through to the answer without the GPU.
          }
        }
        outcome = await answerWithout(req, res, body, stream, true, extra);
      } finally {
        if (keepAlive) clearInterval(keepAlive);
        queue.release(admission.ticket);
      }
    } catch {
      if (!res.headersSent)
        sendJson(
          res,
          502,
          openAiError(
            "The coding model's answer was interrupted. Retry the request.",
            "server_error",
            "backend_unavailable",
          ),
        );
      else res.end();
    } finally {
      if (gone && !res.writableEnded) outcome = "client-gone";
      view.finished(outcome, heldSeconds);
      active--;
    }
  }

  return {
    queue,
    drain: async (timeoutMs) => {
      draining = true;
      const until = clock() + timeoutMs;
      while (active > 0 && clock() < until) await sleep(50);
    },
    handle: (req, res) => {
      if ((req.url ?? "").split("?")[0] === HOLDER_HEALTH_PATH) {
        req.resume();
        sendJson(res, 200, { status: "ok", held: queue.size });
        return;
      }
      void handle(req, res);
    },
  };
}
