/**
 * One authorisation decision as the audit log keeps it: the spool line and the database row have
 * the same fields. Never the key, a token, the prompt or the body.
 */

export const DENY_REASONS = [
  "missing_key",
  "malformed_key",
  "oversized_credential",
  "conflicting_keys",
  "unknown_key",
  "revoked_key",
  "scope_denied",
  "rate_limited",
  "address_rate_limited",
  "bad_scope",
  "keys_unavailable",
] as const;
export type DenyReason = (typeof DENY_REASONS)[number];
export type DecisionReason = "allowed" | DenyReason;

export interface DecisionRecord {
  /** Generated here, never taken from the client: the primary key that makes replays idempotent. */
  readonly decision_id: string;
  readonly decided_at: string;
  /** X-Request-Id when the client or Traefik sent a sane one, else the decision id. */
  readonly request_id: string;
  readonly key_id: string | null;
  /** The route's scope as Traefik asked for it (an unknown scope is recorded as given, truncated). */
  readonly scope: string;
  readonly method: string | null;
  /** X-Forwarded-Uri without its query string, which may carry secrets. */
  readonly path: string | null;
  /** The client's address: the rightmost X-Forwarded-For entry (Traefik's own), else the socket's peer (address-limit.ts). */
  readonly client_addr: string | null;
  readonly allowed: boolean;
  readonly reason: DecisionReason;
  readonly status: number;
}

const isStringOrNull = (v: unknown): boolean => v === null || typeof v === "string";

/** Shape check for lines read back from the spool (a torn or foreign line must not reach the database). */
export function isDecisionRecord(value: unknown): value is DecisionRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.decision_id === "string" &&
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(r.decision_id) &&
    typeof r.decided_at === "string" &&
    !Number.isNaN(Date.parse(r.decided_at)) &&
    typeof r.request_id === "string" &&
    isStringOrNull(r.key_id) &&
    typeof r.scope === "string" &&
    isStringOrNull(r.method) &&
    isStringOrNull(r.path) &&
    isStringOrNull(r.client_addr) &&
    typeof r.allowed === "boolean" &&
    typeof r.reason === "string" &&
    Number.isInteger(r.status)
  );
}
