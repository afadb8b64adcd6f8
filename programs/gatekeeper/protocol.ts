/**
 * The contract between Traefik's forwardAuth (services/gateway.ts) and the gatekeeper
 * (server.ts): one definition, so the two sides cannot drift apart.
 */
/**
 * What an API key may be allowed to do; every route needs exactly one. `embeddings` is its own:
 * an indexing job's thousands of requests have a rate budget apart from chat, and a key for a
 * document pipeline need not be able to run the coder.
 */
export const SCOPES = ["llm", "ocr", "stt", "tts", "admin", "sandbox", "embeddings"] as const;
export type Scope = (typeof SCOPES)[number];

export const AUTH_PATH = "/auth";

/**
 * The largest limits the gatekeeper takes. A key (its own or the default) may go up to a million
 * a minute; a client address carries several keys (services/auth.ts renders ten keys' worth), so
 * its limits go to twenty times a key's, with room to spare.
 */
export const LIMIT_MAXIMUMS = {
  keyRatePerMinute: 1_000_000,
  keyBurst: 1_000_000,
  addressRatePerMinute: 20_000_000,
  addressBurst: 20_000_000,
  keyDailyQuota: 1_000_000_000,
} as const;
export const HEALTH_PATH = "/healthz";
/** Prometheus text, to callers inside the VPC or on loopback only (metrics.ts). */
export const METRICS_PATH = "/metrics";

/**
 * A key's own wait policy for a waking GPU (`default=120, max=600`; keys file waitSeconds and
 * maxWaitSeconds), set on allowed answers of keys that have one. Listed in authResponseHeaders, so
 * Traefik drops whatever a client sent under this name (programs/holding/core.ts reads it).
 */
export const KEY_WAIT_HEADER = "X-Hub-Key-Wait";

/** Headers Traefik must copy from an allowed answer into the forwarded request (forwardAuth.authResponseHeaders). */
export const AUTH_RESPONSE_HEADERS = [
  "Authorization",
  "X-Api-Key",
  "X-Hub-Key-Id",
  "X-Request-Id",
  "X-Hub-Sandbox-Limits",
  KEY_WAIT_HEADER,
] as const;

/**
 * The gatekeeper's decisions counter (metrics.ts), labels `scope`, `key_id` and `outcome`. Its
 * `outcome="allowed"` series for a scope count exactly the requests the door let through: the
 * autoscaler's demand signal (programs/autoscaler/demand.ts) reads them.
 */
export const DECISIONS_METRIC = "hub_gatekeeper_requests_total";
export const ALLOWED_OUTCOME = "allowed";

/** The sandbox front's execution reports (programs/sandbox/front/): private callers only, never routed. */
export const EXECUTIONS_PATH = "/executions";

/**
 * The admin API (admin.ts), routed by Traefik to the gatekeeper for keys with the admin scope:
 * `GET|POST /admin/keys`, `POST /admin/keys/<id>/revoke|rotate`, `PATCH /admin/keys/<id>` (limits).
 * The CLI (`npm run hub -- keys ...`) speaks it.
 */
export const ADMIN_KEYS_PATH = "/admin/keys";
/** What is deployed and live (status.ts): `npm run hub -- status`. */
export const ADMIN_STATUS_PATH = "/admin/status";
