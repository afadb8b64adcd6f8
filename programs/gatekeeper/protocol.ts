/**
 * The contract between Traefik's forwardAuth (services/gateway.ts) and the gatekeeper
 * (server.ts): one definition, so the two sides cannot drift apart.
 */
/**
 * What an API key may be allowed to do; every route needs exactly one. `embeddings` is its own:
 * an indexing job's thousands of requests have a rate budget apart from chat, and a key for a
 * document pipeline need not be able to run the coder.
 */
export const SCOPES = ["llm", "ocr", "stt", "tts", "admin", "embeddings"] as const;
export type Scope = (typeof SCOPES)[number];

export const AUTH_PATH = "/auth";
export const HEALTH_PATH = "/healthz";

/** Headers Traefik must copy from an allowed answer into the forwarded request (forwardAuth.authResponseHeaders). */
export const AUTH_RESPONSE_HEADERS = ["Authorization", "X-Api-Key", "X-Hub-Key-Id", "X-Request-Id"] as const;
