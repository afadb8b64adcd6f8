/**
 * The contract between Traefik's forwardAuth (services/gateway.ts) and the gatekeeper
 * (server.ts): one definition, so the two sides cannot drift apart.
 */
/** What an API key may be allowed to do; every route needs exactly one. */
export const SCOPES = ["llm", "ocr", "stt", "tts", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export const AUTH_PATH = "/auth";

/**
 * The largest limits the gatekeeper takes. A key (its own or the default) may go up to a million
 * a minute; a client address carries several keys (services/auth.ts renders ten keys' worth, and
 * the gatekeeper's backstop twice that), so its limits go to twenty times a key's.
 */
export const LIMIT_MAXIMUMS = { keyRatePerMinute: 1_000_000, keyBurst: 1_000_000, addressRatePerMinute: 20_000_000, addressBurst: 20_000_000 } as const;
export const HEALTH_PATH = "/healthz";

/** Headers Traefik must copy from an allowed answer into the forwarded request (forwardAuth.authResponseHeaders). */
export const AUTH_RESPONSE_HEADERS = ["Authorization", "X-Api-Key", "X-Hub-Key-Id", "X-Request-Id"] as const;
