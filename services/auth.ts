import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { HEALTH_PATH } from "../programs/gatekeeper/protocol";
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
export function ipRateLimit(hub: HubConfig): { readonly perMinute: number; readonly burst: number; readonly retryAfterSeconds: number } {
  const perMinute = hub.settings.rateLimitPerMinute * IP_RATE_FACTOR;
  // Traefik answers Retry-After = ceil(time to the next token) (ratelimiter/rate_limiter.go):
  // at most one token's interval.
  return { perMinute, burst: hub.settings.rateLimitBurst * IP_RATE_FACTOR, retryAfterSeconds: Math.max(1, Math.ceil(60 / perMinute)) };
}

const ROOT = `${CPU_CACHE_MOUNT}/gatekeeper`;
/** Host paths: the bundled program, the keys file (watched), and the audit spool on the volume. */
export const GATEKEEPER_DIRS = {
  app: `${ROOT}/app`,
  keys: `${ROOT}/keys`,
  spool: `${CPU_CACHE_MOUNT}/audit`,
} as const;
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
    },
    // The backends' key goes out on allowed requests only; the database URL holds a password; the
    // TLS key is the forwardAuth port's (the certificate is public, carried the same way as its key).
    secretEnv: { GATEKEEPER_BACKEND_KEY: "hubApiKey", DATABASE_URL: "auditDatabaseUrl", GATEKEEPER_TLS_CERT: "gatekeeperTlsCert", GATEKEEPER_TLS_KEY: "gatekeeperTlsKey" },
    port: GATEKEEPER_PORT,
    mounts: [
      { hostPath: GATEKEEPER_DIRS.app, containerPath: "/app", readOnly: true },
      { hostPath: GATEKEEPER_DIRS.keys, containerPath: "/keys", readOnly: true },
      { hostPath: GATEKEEPER_DIRS.spool, containerPath: "/spool" },
    ],
    memoryLimitMiB: 256,
    health: {
      path: HEALTH_PATH,
      // node:alpine has no curl; Node 22's fetch does the probe.
      test: ["CMD", "node", "-e", `fetch('http://127.0.0.1:${GATEKEEPER_PORT}${HEALTH_PATH}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 20,
      retries: 3,
    },
  };
}
