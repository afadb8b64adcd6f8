/**
 * The contract between Traefik's forwardAuth (services/gateway.ts) and the gatekeeper
 * (server.ts): one definition, so the two sides cannot drift apart.
 */
/** What an API key may be allowed to do; every route needs exactly one. */
export const SCOPES = ["llm", "ocr", "stt", "tts", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export const AUTH_PATH = "/auth";
export const HEALTH_PATH = "/healthz";

/**
 * A key's own wait policy for a waking GPU (`default=120, max=600`; keys file waitSeconds and
 * maxWaitSeconds), set on allowed answers of keys that have one. Listed in authResponseHeaders, so
 * Traefik drops whatever a client sent under this name (programs/holding/core.ts reads it).
 */
export const KEY_WAIT_HEADER = "X-Hub-Key-Wait";

/** Headers Traefik must copy from an allowed answer into the forwarded request (forwardAuth.authResponseHeaders). */
export const AUTH_RESPONSE_HEADERS = ["Authorization", "X-Api-Key", "X-Hub-Key-Id", "X-Request-Id", KEY_WAIT_HEADER] as const;
