import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { HEALTH_PATH } from "../programs/gatekeeper/protocol";
import type { StatusContext } from "../programs/gatekeeper/status";
import { CONTROLLER_PORT, STATUS_PATH } from "../programs/autoscaler/controller/contract";
import { GATEWAY_METRICS_PORT } from "./ports";
import { AUTOSCALER_CONTAINER, autoscalerRuns, routeTable } from "./routes";
import { NODE_IMAGE } from "./images";
import type { ServiceSpec } from "./spec";

/** The API-key gatekeeper (programs/gatekeeper/): Traefik's forwardAuth asks it about every request. */
export const GATEKEEPER_CONTAINER = "gatekeeper";
/** Health, metrics and /auth over plain HTTP/1.1: Docker's health check and Prometheus use it. */
export const GATEKEEPER_PORT = 8080;
/**
 * HTTP/2 over TLS, /auth only: what Traefik's forwardAuth asks, on one kept-alive connection
 * (programs/gatekeeper/tls-listener.ts says why).
 */
export const GATEKEEPER_TLS_PORT = 8443;

/** One address may carry several keys (an office behind NAT): ten keys' worth. */
export const IP_RATE_FACTOR = 10;

/** The per-address limit: ten keys' worth of the per-key default. */
export function ipRateLimit(hub: HubConfig): {
  readonly perMinute: number;
  readonly burst: number;
  readonly retryAfterSeconds: number;
} {
  const perMinute = hub.settings.rateLimitPerMinute * IP_RATE_FACTOR;
  // Traefik answers Retry-After = ceil(time to the next token) (ratelimiter/rate_limiter.go):
  // at most one token's interval.
  return {
    perMinute,
    burst: hub.settings.rateLimitBurst * IP_RATE_FACTOR,
    retryAfterSeconds: Math.max(1, Math.ceil(60 / perMinute)),
  };
}

const ROOT = `${CPU_CACHE_MOUNT}/gatekeeper`;
/** Host paths: the bundled program, the keys file (watched), and the audit spool on the volume. */
export const GATEKEEPER_DIRS = {
  app: `${ROOT}/app`,
  keys: `${ROOT}/keys`,
  /** Runtime keys and their usage (without a database), the database's cache (with one): no deploy writes here. */
  state: `${ROOT}/state`,
  spool: `${CPU_CACHE_MOUNT}/audit`,
} as const;
/** Where the container sees its state directory (not /state, which is the controller's). */
export const GATEKEEPER_STATE_PATH = "/gatekeeper-state";

/** What /admin/status reports that only the deploy knows (programs/gatekeeper/status.ts). */
export function gatekeeperStatusContext(hub: HubConfig): StatusContext {
  return {
    tier: hub.tier,
    region: hub.region,
    ...(hub.gateway.domain ? { domain: hub.gateway.domain } : {}),
    budgetUsd: hub.budgetUsd,
    monthlyCostUsd: Math.round(hub.cost.monthlyUsd * 100) / 100,
    gpuNodes: hub.gpu?.on ? hub.gpu.count : 0,
    backends: statusBackends(hub),
  };
}

/** Every container backend of the route table, once, at its health path. */
function statusBackends(hub: HubConfig): { service: string; url: string }[] {
  const seen = new Map<string, string>();
  for (const route of routeTable(hub)) {
    for (const b of [...route.primary, ...(route.fallback && route.fallback !== "gpu-off" ? [route.fallback] : [])]) {
      if (b.address.kind === "container" && !seen.has(b.service))
        seen.set(b.service, `http://${b.address.container}:${b.port}${b.healthPath}`);
    }
  }
  return [...seen].map(([service, url]) => ({ service, url }));
}
export const GATEKEEPER_FILES = {
  bundle: `${GATEKEEPER_DIRS.app}/gatekeeper.js`,
  keys: `${GATEKEEPER_DIRS.keys}/keys.json`,
} as const;

export function gatekeeperSpec(hub: HubConfig): ServiceSpec {
  return {
    name: GATEKEEPER_CONTAINER,
    role: "gatekeeper",
    program: "gatekeeper",
    node: CPU_NODE_NAME,
    image: NODE_IMAGE,
    command: ["node", "/app/gatekeeper.js"],
    env: {
      NODE_ENV: "production",
      GATEKEEPER_PORT: String(GATEKEEPER_PORT),
      GATEKEEPER_KEYS_FILE: "/keys/keys.json",
      GATEKEEPER_SPOOL_DIR: "/spool",
      GATEKEEPER_DEFAULT_RATE_PER_MINUTE: String(hub.settings.rateLimitPerMinute),
      GATEKEEPER_DEFAULT_BURST: String(hub.settings.rateLimitBurst),
      // The per-address limit of every API route, checked before the key: forwardAuth asks the
      // gatekeeper directly and sets X-Forwarded-For to the client's address itself, so there is
      // no hop in between (GATEKEEPER_FORWARDED_HOPS stays 0).
      GATEKEEPER_ADDRESS_RATE_PER_MINUTE: String(ipRateLimit(hub).perMinute),
      GATEKEEPER_ADDRESS_BURST: String(ipRateLimit(hub).burst),
      GATEKEEPER_TLS_PORT: String(GATEKEEPER_TLS_PORT),
      GATEKEEPER_STATE_DIR: GATEKEEPER_STATE_PATH,
      // Traefik's metrics entry point on the node's Docker network: each backend's health and the certificate.
      GATEKEEPER_GATEWAY_METRICS_URL: `http://gateway:${GATEWAY_METRICS_PORT}/metrics`,
      ...(autoscalerRuns(hub)
        ? { GATEKEEPER_CONTROLLER_URL: `http://${AUTOSCALER_CONTAINER}:${CONTROLLER_PORT}${STATUS_PATH}` }
        : {}),
      GATEKEEPER_STATUS_CONTEXT: JSON.stringify(gatekeeperStatusContext(hub)),
    },
    // The backends' key goes out on allowed requests only; the database URL holds a password; the
    // TLS key is the forwardAuth port's (the certificate is public, carried the same way as its key).
    secretEnv: {
      GATEKEEPER_BACKEND_KEY: "hubApiKey",
      DATABASE_URL: "auditDatabaseUrl",
      GATEKEEPER_TLS_CERT: "gatekeeperTlsCert",
      GATEKEEPER_TLS_KEY: "gatekeeperTlsKey",
    },
    port: GATEKEEPER_PORT,
    mounts: [
      { hostPath: GATEKEEPER_DIRS.app, containerPath: "/app", readOnly: true },
      { hostPath: GATEKEEPER_DIRS.keys, containerPath: "/keys", readOnly: true },
      { hostPath: GATEKEEPER_DIRS.spool, containerPath: "/spool" },
      { hostPath: GATEKEEPER_DIRS.state, containerPath: GATEKEEPER_STATE_PATH },
    ],
    memoryLimitMiB: 256,
    health: {
      path: HEALTH_PATH,
      // node:alpine has no curl; Node 22's fetch does the probe.
      test: [
        "CMD",
        "node",
        "-e",
        `fetch('http://127.0.0.1:${GATEKEEPER_PORT}${HEALTH_PATH}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
      ],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 20,
      retries: 3,
    },
  };
}
