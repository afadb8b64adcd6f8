import { decide, initialState, insideWindowsAt } from "../../../programs/autoscaler/decision";
import { LEARNING_DEFAULTS, LearningTuning } from "../../../programs/autoscaler/learning";
import type { PolicyConfig } from "../../../programs/autoscaler/types";
import { GpuWindow, parseWindows } from "../../../stacks/windows";
import type { Controller } from "./replay";

/**
 * The policies the simulator puts side by side. `autoscaler` and `reactive` are the controller's
 * own decision function (programs/autoscaler/decision.ts); the others are schedules.
 */

/** The seed design's 40 GPU hours a month as a fixed schedule: one 9-hour working day a week (9 h x 52 / 12 = 39 h a month). */
export const SEED_MONTHLY_SCHEDULE = "mon 09:00-18:00 UTC";

export const alwaysOn = (nodes: number): Controller => () => nodes;

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
    const decision = decide(config, { nowMs: view.nowMs, nodes: { ready: view.ready, starting: view.starting, draining: view.draining }, coderRequests: view.coderRequests, replicas: view.replicas, monthToDateUsd: view.monthToDateUsd }, state, tuning);
    state = decision.state;
    return decision.wantedNodes;
  };
}

/** Wake on the first request, off after a fixed idle time: the baseline the issue names. */
export function reactiveConfig(config: PolicyConfig, idleSeconds = config.idleSeconds): PolicyConfig {
  return { ...config, predictive: false, idleSeconds };
}
