import { budgetReplicaCap } from "../programs/autoscaler/budget-cap";
import { decide, initialState, insideWindowsAt } from "../programs/autoscaler/decision";
import { LEARNING_DEFAULTS, LearningTuning } from "../programs/autoscaler/learning";
import type { PolicyConfig } from "../programs/autoscaler/types";
import { GpuWindow, parseWindows } from "../stacks/windows";
import type { Controller } from "./replay";

/**
 * The policies the simulator puts side by side. `autoscaler` and `reactive` are the controller's
 * own decision function (programs/autoscaler/decision.ts); the others are schedules.
 */

/** The seed design's 40 GPU hours a month as a fixed schedule: one 9-hour working day a week (9 h x 52 / 12 = 39 h a month). */
export const SEED_MONTHLY_SCHEDULE = "mon 09:00-18:00 UTC";

export const alwaysOn =
  (nodes: number): Controller =>
  () =>
    nodes;

export function scheduled(windows: readonly GpuWindow[]): Controller {
  return (view) => (insideWindowsAt(windows, view.nowMs) ? 1 : 0);
}

export function seedMonthly(): Controller {
  return scheduled(parseWindows([SEED_MONTHLY_SCHEDULE]).windows);
}

/** The decision function, fed what the controller would read from the gateway and vLLM. */
export function decisionController(config: PolicyConfig, tuning: LearningTuning = LEARNING_DEFAULTS): Controller {
  let state = initialState();
  return (view) => {
    const decision = decide(
      config,
      {
        nowMs: view.nowMs,
        nodes: { ready: view.ready, starting: view.starting, draining: view.draining },
        coderRequests: view.coderRequests,
        replicas: view.replicas,
        monthToDateUsd: view.monthToDateUsd,
      },
      state,
      tuning,
    );
    state = decision.state;
    return decision.wantedNodes;
  };
}

/** Wake on the first request, off after a fixed idle time: the baseline the issue names. */
export function reactiveConfig(config: PolicyConfig, idleSeconds = config.idleSeconds): PolicyConfig {
  return { ...config, predictive: false, idleSeconds };
}

/** The ScaledObject's HPA policies: one replica per 60 s either way (infra/kubernetes/scaling.ts). */
const POLICY_PERIOD_SECONDS = 60;

/** KEDA's rule in the k8s tier (infra/kubernetes/scaling.ts), as it acts every polling interval. */
export interface KedaRule {
  /** A coder request within this window keeps one replica wanted. */
  readonly demandWindowSeconds: number;
  /** Running + waiting requests one replica takes before another is wanted. */
  readonly perReplica: number;
  /** 1 → 0 only this long after the last active reading (KEDA cooldownPeriod). */
  readonly cooldownSeconds: number;
  /** n → n-1 on the highest recommendation of this window; n → n+1 on the lowest of upWindowSeconds (the HPA's stabilization). */
  readonly downWindowSeconds: number;
  readonly upWindowSeconds: number;
}

/**
 * KEDA on the formula min(max(demand > 0 ? 1 : 0, ceil(load / perReplica)), budget) with the
 * HPA's stabilization windows and KEDA's cooldown, capped by the controller's budget ceiling
 * (budgetReplicaCap on the replay's month-to-date spend) and the policy's min and max.
 */
export function kedaController(rule: KedaRule, policy: PolicyConfig): Controller {
  let lastRequestMs = -Infinity;
  let lastActiveMs = -Infinity;
  let current = policy.minNodes;
  // The HPA policies: at most one replica added or removed per POLICY_PERIOD_SECONDS.
  let lastChangeMs = -Infinity;
  const history: { atMs: number; wanted: number }[] = [];
  return (view) => {
    if (view.coderRequests > 0) lastRequestMs = view.nowMs;
    const demand = view.nowMs - lastRequestMs <= rule.demandWindowSeconds * 1000 ? 1 : 0;
    const load = view.replicas.reduce((sum, r) => sum + r.running + r.waiting, 0);
    const cap = budgetReplicaCap(policy, view.monthToDateUsd);
    const raw = Math.max(
      policy.minNodes,
      Math.min(policy.maxNodes, cap, Math.max(demand, Math.ceil(load / rule.perReplica))),
    );
    if (raw > 0) lastActiveMs = view.nowMs;
    history.push({ atMs: view.nowMs, wanted: raw });
    while (
      history.length &&
      history[0].atMs < view.nowMs - Math.max(rule.downWindowSeconds, rule.upWindowSeconds) * 1000
    )
      history.shift();
    const within = (seconds: number) =>
      history.filter((h) => h.atMs >= view.nowMs - seconds * 1000).map((h) => h.wanted);
    if (raw === 0) {
      // KEDA deactivates only after the cooldown; the budget ceiling acts at once.
      if (cap === 0 || view.nowMs - lastActiveMs >= rule.cooldownSeconds * 1000) current = policy.minNodes;
      return current;
    }
    // 0 → 1 is KEDA's own step, at once; beyond it the HPA: up on the lowest recommendation of its
    // window, down on the highest of its, one replica at a time.
    const mayChange = view.nowMs - lastChangeMs >= POLICY_PERIOD_SECONDS * 1000;
    const before = current;
    if (current === 0) current = Math.min(raw, 1);
    else if (raw > current && mayChange)
      current = Math.max(current, Math.min(current + 1, ...within(rule.upWindowSeconds)));
    else if (raw < current && mayChange) {
      const highest = Math.max(...within(rule.downWindowSeconds));
      if (highest < current) current = Math.max(highest, current - 1);
    }
    if (current !== before) lastChangeMs = view.nowMs;
    current = Math.min(current, cap, policy.maxNodes);
    return current;
  };
}
