import { ALLOWED_OUTCOME, DECISIONS_METRIC, type Scope } from "../gatekeeper/protocol";

/**
 * What wakes a GPU: requests the door let through. The demand signal is the gatekeeper's own
 * decisions counter for the coder's scope with the outcome "allowed": a request counts once the
 * gatekeeper has found a live key with the `llm` scope under its rate limit, and never for a code
 * the door answers itself (401, 403, 429), a failure of the door (Traefik's 502/504 while the
 * gatekeeper is down, the gatekeeper's 503s), or a protocol the hub does not serve (gRPC and
 * gRPC-Web are refused with a 415 before any router reaches the gatekeeper). Every allowed request
 * on the coder paths counts, `GET /v1/models` included: a key holder may spend the budget.
 *
 * One place for every reader: the controller and `hub autoscale` (deltas per tick, signals.ts),
 * and a Kubernetes scaler (DEMAND_PROMQL, e.g. KEDA's Prometheus trigger).
 */

export const DEMAND_METRIC = DECISIONS_METRIC;
/** The routes whose traffic is the GPU's: the coder route's scope (services/routes.ts). */
export const DEMAND_SCOPE: Scope = "llm";
export const DEMAND_LABELS = { scope: DEMAND_SCOPE, outcome: ALLOWED_OUTCOME } as const;

/** Allowed `llm` requests per second over `window` (a Prometheus duration), summed over keys and gatekeeper restarts. */
export const demandPromQL = (window = "1m"): string =>
  `sum(rate(${DEMAND_METRIC}{scope="${DEMAND_SCOPE}",outcome="${ALLOWED_OUTCOME}"}[${window}]))`;

/** A Prometheus sample as signals.ts parses it. */
export interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * The demand counters in one scrape of the gatekeeper's /metrics: one value per series (one per
 * key id), keyed by the series' labels, for CounterDeltas. Empty when the gatekeeper has allowed
 * nothing since it started (the series appear at their first request); absent families mean
 * "nothing allowed", so the caller decides about an unreadable scrape, never this function.
 */
export function demandCounters(families: ReadonlyMap<string, readonly Sample[]>): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of families.get(DEMAND_METRIC) ?? []) {
    if (s.labels.scope !== DEMAND_SCOPE || s.labels.outcome !== ALLOWED_OUTCOME) continue;
    out.set(`key_id=${JSON.stringify(s.labels.key_id ?? "")}`, s.value);
  }
  return out;
}

/** Total allowed `llm` requests in one scrape (for a reader that wants one number). */
export const allowedLlmRequests = (families: ReadonlyMap<string, readonly Sample[]>): number =>
  [...demandCounters(families).values()].reduce((a, b) => a + b, 0);
