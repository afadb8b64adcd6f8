import type { DistinctHeaders } from "./credentials";
import { AUTH_PATH, HEALTH_PATH, METRICS_PATH } from "./protocol";

/**
 * What the gatekeeper's two listeners share (server.ts: HTTP/1.1 on the plain port; tls-listener.ts:
 * HTTP/2 over TLS for Traefik's forwardAuth): the request as the decision reads it, and the answer.
 */

/** One /auth request, however it came. */
export interface AuthRequest {
  /** The `scope` query parameter, null when absent. */
  readonly scope: string | null;
  readonly headers: DistinctHeaders;
  /** The TCP peer, used when the request carries no X-Forwarded-For. */
  readonly socketAddress: string | undefined;
}

/** What to send back: header names in lower case (HTTP/2 requires it; HTTP/1.1 does not mind). */
export interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
}

export interface OpenAiError {
  readonly error: { readonly message: string; readonly type: string; readonly code: string };
}

export const errorBody = (message: string, type: string, code: string): OpenAiError => ({
  error: { message, type, code },
});

/** A JSON answer: OpenAI's error shape, or a health report. */
export function jsonAnswer(status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): Answer {
  const text = JSON.stringify(body);
  return {
    status,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
      ...headers,
      "content-length": String(Buffer.byteLength(text)),
    },
    body: text,
  };
}

export const notFound = (pathname: string): Answer =>
  jsonAnswer(
    404,
    errorBody(
      `No such gatekeeper endpoint: ${pathname.slice(0, 100)}. Use ${AUTH_PATH}?scope=<scope>, ${HEALTH_PATH} or ${METRICS_PATH}.`,
      "invalid_request_error",
      "not_found",
    ),
  );

/** A request target split at its query. */
export function splitTarget(target: string): { readonly pathname: string; readonly query: string } {
  const queryStart = target.indexOf("?");
  return queryStart < 0
    ? { pathname: target, query: "" }
    : { pathname: target.slice(0, queryStart), query: target.slice(queryStart + 1) };
}

/** The `scope` query parameter (the first, as URLSearchParams reads it), or null. */
export const scopeParameter = (query: string): string | null =>
  query ? new URLSearchParams(query).get("scope") : null;
