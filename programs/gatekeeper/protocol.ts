/**
 * The contract between Traefik's forwardAuth (services/gateway.ts) and the gatekeeper
 * (server.ts): one definition, so the two sides cannot drift apart.
 */
/** What an API key may be allowed to do; every route needs exactly one. */
export const SCOPES = ["llm", "ocr", "stt", "tts", "admin", "sandbox"] as const;
export type Scope = (typeof SCOPES)[number];

export const AUTH_PATH = "/auth";
export const HEALTH_PATH = "/healthz";
/** The sandbox front's execution reports (programs/sandbox/front/): private callers only, never routed. */
export const EXECUTIONS_PATH = "/executions";

/** Headers Traefik must copy from an allowed answer into the forwarded request (forwardAuth.authResponseHeaders). */
export const AUTH_RESPONSE_HEADERS = ["Authorization", "X-Api-Key", "X-Hub-Key-Id", "X-Request-Id", "X-Hub-Sandbox-Limits"] as const;
