import { BUDGET_LOOKAHEAD_HOURS } from "./decision";
import type { PolicyConfig } from "./types";

/**
 * The spend guard as a ceiling rather than a decision: the most GPU nodes whose next hour stays
 * within the month's GPU budget, never below the floor. It is the largest count `decide` would
 * wake or scale up to (decision.ts budgetAllows, BUDGET_LOOKAHEAD_HOURS); the controller publishes
 * it (metric BUDGET_CAP_METRIC) so a scaler that decides on its own, KEDA in the k8s tier, is held
 * to the same budget.
 */
export function budgetReplicaCap(
  policy: Pick<PolicyConfig, "minNodes" | "maxNodes" | "nodeHourlyUsd" | "gpuBudgetUsd">,
  monthToDateUsd: number,
): number {
  if (monthToDateUsd >= policy.gpuBudgetUsd) return policy.minNodes;
  const perNodeHour = policy.nodeHourlyUsd * BUDGET_LOOKAHEAD_HOURS;
  const affordable =
    perNodeHour > 0 ? Math.floor((policy.gpuBudgetUsd - monthToDateUsd) / perNodeHour + 1e-9) : policy.maxNodes;
  return Math.max(policy.minNodes, Math.min(policy.maxNodes, affordable));
}

/** The gauge that carries it (the controller's registry, programs/autoscaler/controller/metrics.ts). */
export const BUDGET_CAP_METRIC = "hub_autoscaler_budget_max_replicas";
