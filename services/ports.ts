/** Ports the hub listens on. Firewalls (infra/) and service specs (services/) share these. */
export const PUBLIC_PORTS = {
  http: 80,
  https: 443,
  /** The existing hub's clients call port 8100. */
  legacy: 8100,
} as const;

/** Traefik's Prometheus metrics: reachable from inside the VPC only. */
export const GATEWAY_METRICS_PORT = 8082;

export const SSH_PORT = 22;

/** vLLM processes on a GPU node, reached by the gateway over the VPC. */
export const GPU_SERVICE_PORTS = { coder: 8000, ocr: 8001 } as const;
