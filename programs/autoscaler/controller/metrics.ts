import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { BUDGET_CAP_METRIC } from "../budget-cap";
import type { DecisionReason } from "../types";

/**
 * The controller's Prometheus metrics (owners.md "Controller metrics": dashboards and alerts use
 * these names). Its own registry, so nothing else in the process leaks into /metrics.
 */
export const METRIC_NAMES = {
  wantedNodes: "hub_autoscaler_wanted_nodes",
  nodes: "hub_autoscaler_nodes",
  decisions: "hub_autoscaler_decisions_total",
  monthSpend: "hub_autoscaler_month_spend_usd",
  gpuBudget: "hub_autoscaler_gpu_budget_usd",
  ledgerFloor: "hub_autoscaler_ledger_floor_usd",
  signalsUp: "hub_autoscaler_signals_up",
  dispatchFailures: "hub_autoscaler_dispatch_failures_total",
  dispatchPending: "hub_autoscaler_dispatch_pending",
  wakeReady: "hub_autoscaler_wake_ready_seconds",
  budgetMaxReplicas: BUDGET_CAP_METRIC,
} as const;

/** Wake → ready: seconds to an hour and a half (a first start downloads the weights). */
const WAKE_BUCKETS = [60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400];

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly wantedNodes = new Gauge({
    name: METRIC_NAMES.wantedNodes,
    help: "GPU nodes the decision wants.",
    registers: [this.registry],
  });
  readonly nodes = new Gauge({
    name: METRIC_NAMES.nodes,
    help: "GPU nodes by state: ready (answering), starting (asked for or loading), draining (left the routes, still serving).",
    labelNames: ["state"] as const,
    registers: [this.registry],
  });
  readonly decisions = new Counter({
    name: METRIC_NAMES.decisions,
    help: "Decisions taken, by reason (programs/autoscaler/types.ts DecisionReason).",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly monthSpend = new Gauge({
    name: METRIC_NAMES.monthSpend,
    help: "GPU spend this calendar month (UTC) from the ledger, USD.",
    registers: [this.registry],
  });
  readonly gpuBudget = new Gauge({
    name: METRIC_NAMES.gpuBudget,
    help: "What the month's GPU spend may reach: budgetUsd less the always-on costs, USD.",
    registers: [this.registry],
  });
  readonly ledgerFloor = new Gauge({
    name: METRIC_NAMES.ledgerFloor,
    help: "The month's spend is taken as at least this, USD: 0 normally; set when the ledger was lost (the worst case, or DigitalOcean's figure) or DigitalOcean's month-to-date usage was above it.",
    registers: [this.registry],
  });
  readonly signalsUp = new Gauge({
    name: METRIC_NAMES.signalsUp,
    help: "1 when this tick's signals (the gatekeeper's allowed llm count, and vLLM's queue for every ready replica) were read, else 0.",
    registers: [this.registry],
  });
  readonly dispatchFailures = new Counter({
    name: METRIC_NAMES.dispatchFailures,
    help: "Dispatches to the deploy pipeline that failed (each attempt).",
    registers: [this.registry],
  });
  readonly dispatchPending = new Gauge({
    name: METRIC_NAMES.dispatchPending,
    help: "1 while a dispatch awaits a retry, else 0.",
    registers: [this.registry],
  });
  readonly budgetMaxReplicas = new Gauge({
    name: METRIC_NAMES.budgetMaxReplicas,
    help: "Most GPU nodes whose next hour the month's GPU budget still allows (never below gpuMinNodes): KEDA's ceiling in the k8s tier.",
    registers: [this.registry],
  });
  readonly wakeReady = new Histogram({
    name: METRIC_NAMES.wakeReady,
    help: "From a wake request to the first replica ready, seconds.",
    buckets: WAKE_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    // Every state and reason exported from the first scrape, so a query never meets a missing series.
    for (const state of ["ready", "starting", "draining"]) this.nodes.set({ state }, 0);
  }

  decided(reason: DecisionReason): void {
    this.decisions.inc({ reason });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
