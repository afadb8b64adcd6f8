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
 * a minute; a client address carries several keys (services/auth.ts renders ten keys' worth), so
 * its limits go to twenty times a key's, with room to spare.
 */
export const LIMIT_MAXIMUMS = { keyRatePerMinute: 1_000_000, keyBurst: 1_000_000, addressRatePerMinute: 20_000_000, addressBurst: 20_000_000 } as const;
export const HEALTH_PATH = "/healthz";
/** Prometheus text, to callers inside the VPC or on loopback only (metrics.ts). */
export const METRICS_PATH = "/metrics";

/** Headers Traefik must copy from an allowed answer into the forwarded request (forwardAuth.authResponseHeaders). */
export const AUTH_RESPONSE_HEADERS = ["Authorization", "X-Api-Key", "X-Hub-Key-Id", "X-Request-Id"] as const;

/**
 * The gatekeeper's decisions counter (metrics.ts), labels `scope`, `key_id` and `outcome`. Its
 * `outcome="allowed"` series for a scope count exactly the requests the door let through: the
 * autoscaler's demand signal (programs/autoscaler/demand.ts) reads them.
 */
export const DECISIONS_METRIC = "hub_gatekeeper_requests_total";
export const ALLOWED_OUTCOME = "allowed";
