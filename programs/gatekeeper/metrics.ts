import { isIP } from "node:net";
import * as ipaddr from "ipaddr.js";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Scope } from "./protocol";
import { ALLOWED_OUTCOME, DECISIONS_METRIC, SCOPES } from "./protocol";

/**
 * The gatekeeper's Prometheus metrics, names shared with the dashboards and alerts
 * (prompts/owners.md "Gatekeeper metrics"): served at GET /metrics on the gatekeeper's own port, to
 * callers inside the VPC or on loopback only (metricsCallerAllowed).
 *
 * Label values are closed sets: scope is one of SCOPES or "none" (absent or unknown), outcome one of
 * OUTCOMES, and key_id a key the keys file lists or "none" (no key, or one the file does not know),
 * so a client can add no series by what it sends.
 */

export { METRICS_PATH } from "./protocol";

export const OUTCOMES = [
  ALLOWED_OUTCOME,
  "unauthorized",
  "forbidden",
  "rate_limited",
  "address_rate_limited",
  "unavailable",
] as const;
export type Outcome = (typeof OUTCOMES)[number];
export type ScopeLabel = Scope | "none";

export const METRIC_NAMES = {
  requests: DECISIONS_METRIC,
  decisionDuration: "hub_gatekeeper_decision_duration_seconds",
  spoolPending: "hub_gatekeeper_spool_pending_records",
  spoolOldestAge: "hub_gatekeeper_spool_oldest_pending_age_seconds",
  shipFailures: "hub_gatekeeper_ship_failures_total",
  diskFull: "hub_gatekeeper_disk_full",
} as const;

/** What the gauges read at scrape time. */
export interface SpoolGaugeSource {
  /** Decisions in the spool not yet in PostgreSQL (0 without a database). */
  pendingRecords(): number;
  /** Seconds since the oldest of them was decided (0 when none). */
  oldestPendingAgeSeconds(nowMs: number): number;
  /** True while the spool cannot write (disk full or an I/O error). */
  diskFull(): boolean;
}

export class GatekeeperMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"scope" | "key_id" | "outcome">;
  private readonly duration: Histogram<"outcome">;
  readonly shipFailures: Counter;
  /** At most scopes × (keys + 1) × outcomes entries: the label values are closed sets. */
  private readonly requestChildren = new Map<string, { inc(): void }>();
  private readonly durationChildren = new Map<Outcome, { observe(value: number): void }>();

  constructor(spool: SpoolGaugeSource, now: () => number = Date.now) {
    this.requests = new Counter({
      name: METRIC_NAMES.requests,
      help: 'Authorisation decisions, by route scope, key id ("none" without a known key) and outcome.',
      labelNames: ["scope", "key_id", "outcome"],
      registers: [this.registry],
    });
    // Decisions take about 0.1 ms of CPU plus the spool's group commit (ms); the buckets span both.
    this.duration = new Histogram({
      name: METRIC_NAMES.decisionDuration,
      help: "Time from a request's arrival to its answer, the spool write included.",
      labelNames: ["outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.shipFailures = new Counter({
      name: METRIC_NAMES.shipFailures,
      help: "Failed attempts to ship spooled decisions to PostgreSQL (each is retried).",
      registers: [this.registry],
    });
    new Gauge({
      name: METRIC_NAMES.spoolPending,
      help: "Decisions written to the spool and not yet in PostgreSQL.",
      registers: [this.registry],
      collect() {
        this.set(spool.pendingRecords());
      },
    });
    new Gauge({
      name: METRIC_NAMES.spoolOldestAge,
      help: "Age of the oldest decision not yet in PostgreSQL, seconds (0 when none).",
      registers: [this.registry],
      collect() {
        this.set(spool.oldestPendingAgeSeconds(now()));
      },
    });
    new Gauge({
      name: METRIC_NAMES.diskFull,
      help: "1 while the audit spool cannot write (disk full or I/O error) and requests are refused, else 0.",
      registers: [this.registry],
      collect() {
        this.set(spool.diskFull() ? 1 : 0);
      },
    });
    // Every outcome appears from the start (as 0), so rate() and absent() work before the first refusal.
    for (const outcome of OUTCOMES) this.duration.zero({ outcome });
  }

  observe(scope: ScopeLabel, keyId: string | null, outcome: Outcome, seconds: number): void {
    // prom-client hashes a label object on every call; the labelled children are looked up once.
    const key = `${scope}\u0000${keyId ?? "none"}\u0000${outcome}`;
    let counter = this.requestChildren.get(key);
    if (!counter) {
      counter = this.requests.labels({ scope, key_id: keyId ?? "none", outcome });
      this.requestChildren.set(key, counter);
    }
    counter.inc();
    let histogram = this.durationChildren.get(outcome);
    if (!histogram) {
      histogram = this.duration.labels({ outcome });
      this.durationChildren.set(outcome, histogram);
    }
    histogram.observe(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export const scopeLabel = (scope: string | null): ScopeLabel =>
  scope !== null && (SCOPES as readonly string[]).includes(scope) ? (scope as Scope) : "none";

/**
 * Who may read /metrics: a caller on loopback or a private network (the Docker network, the VPC),
 * and only directly. Anything Traefik proxies carries X-Forwarded-For (its proxy sets it on every
 * request), and forwardAuth only ever asks for /auth, so a request through a public entry point
 * cannot pass even if a route to this port were added by mistake.
 */
export function metricsCallerAllowed(
  socketAddress: string | undefined,
  headers: Readonly<Record<string, unknown>>,
): boolean {
  if (Object.keys(headers).some((name) => name.startsWith("x-forwarded-") || name === "forwarded")) return false;
  if (!socketAddress || !isIP(socketAddress)) return false;
  let address = ipaddr.parse(socketAddress);
  if (address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress())
    address = (address as ipaddr.IPv6).toIPv4Address();
  // ipaddr.js ranges: loopback 127/8 and ::1, private 10/8 172.16/12 192.168/16, uniqueLocal fc00::/7.
  return ["loopback", "private", "uniqueLocal"].includes(address.range());
}
