import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { HoldOutcome } from "./proxy";

/** The holder's Prometheus metrics, on the registry of the program it runs in (the controller's /metrics). */
export const HOLDER_METRIC_NAMES = {
  requests: "hub_holder_requests_total",
  held: "hub_holder_held_requests",
  holdSeconds: "hub_holder_hold_seconds",
} as const;

const OUTCOMES: readonly HoldOutcome[] = [
  "gpu",
  "gpu-after-hold",
  "fallback",
  "fallback-after-hold",
  "off",
  "off-after-hold",
  "refused",
  "bad-request",
  "client-gone",
];

export class HolderMetrics {
  private readonly requests: Counter<"outcome">;
  private readonly holdSeconds: Histogram;

  constructor(registry: Registry, held: () => number) {
    this.requests = new Counter({
      name: HOLDER_METRIC_NAMES.requests,
      help: "Coder requests the holder answered while no GPU replica was in the gateway's routes, by outcome (gpu, gpu-after-hold, fallback, fallback-after-hold, off, off-after-hold, refused, bad-request, client-gone).",
      labelNames: ["outcome"],
      registers: [registry],
    });
    this.holdSeconds = new Histogram({
      name: HOLDER_METRIC_NAMES.holdSeconds,
      help: "How long held requests waited for the GPU, seconds.",
      buckets: [5, 15, 30, 60, 120, 180, 300, 450, 600, 840],
      registers: [registry],
    });
    new Gauge({
      name: HOLDER_METRIC_NAMES.held,
      help: "Coder requests held now, waiting for the GPU to wake.",
      registers: [registry],
      collect() {
        this.set(held());
      },
    });
    for (const outcome of OUTCOMES) this.requests.inc({ outcome }, 0);
  }

  observe(outcome: HoldOutcome, heldSeconds?: number): void {
    this.requests.inc({ outcome });
    if (heldSeconds !== undefined) this.holdSeconds.observe(heldSeconds);
  }
}
