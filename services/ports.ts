/** Ports the hub listens on. Firewalls (infra/) and service specs (services/) share these. */
export const PUBLIC_PORTS = {
  http: 80,
  https: 443,
  /** The existing hub's clients call port 8100. */
  legacy: 8100,
} as const;

/** Traefik's Prometheus metrics: reachable from inside the VPC only. */
export const GATEWAY_METRICS_PORT = 8082;

/**
 * Traefik's own loopback entry point inside its container: the forwardAuth hops (per-address
 * limit, gatekeeper) go through it so that their errors can be rewritten without touching a
 * backend's (services/gateway.ts). Never published.
 */
export const GATEWAY_INTERNAL_PORT = 8083;

export const SSH_PORT = 22;

/** vLLM processes on a GPU node, reached by the gateway over the VPC. */
export const GPU_SERVICE_PORTS = { coder: 8000, ocr: 8001 } as const;
