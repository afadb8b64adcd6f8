import type { DecisionReason } from "../types";

/**
 * What the coder route answers while no GPU replica is ready and the stack has no CPU stand-in:
 * HTTP 503 in OpenAI's error shape, naming the state, with Retry-After. The code stays `gpu_off`
 * (what clients and the README's error table already know); the message and the
 * `X-Hub-Gpu-State` header say which off it is. Such a request came through the door (the
 * gatekeeper allowed it), so it is demand: the server counts it and asks for a tick at once, so it also wakes the GPU.
 */

export type GpuOffState = "waking" | "budget-spent" | "pinned-off" | "advice" | "blind";

export interface OffView {
  readonly nowMs: number;
  readonly acting: boolean;
  readonly lastReason?: DecisionReason;
  readonly pin?: { readonly nodes: number; readonly untilMs: number };
  /** When the wake now under way was asked for; undefined when none is. */
  readonly wakeSinceMs?: number;
  readonly coldStartSeconds: number;
  readonly monthToDateUsd: number;
  readonly gpuBudgetUsd: number;
}

export interface OffAnswer {
  readonly status: 503;
  readonly state: GpuOffState;
  readonly retryAfterSeconds: number;
  readonly body: {
    readonly error: { readonly message: string; readonly type: "server_error"; readonly code: "gpu_off" };
  };
}

/** Retry-After is bounded: a client should come back within the hour whatever the state. */
const MAX_RETRY_AFTER_SECONDS = 3600;
const MIN_RETRY_AFTER_SECONDS = 5;
const clamp = (s: number) => Math.round(Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(MIN_RETRY_AFTER_SECONDS, s)));

export function offAnswer(view: OffView): OffAnswer {
  const answer = (state: GpuOffState, retryAfterSeconds: number, message: string): OffAnswer => ({
    status: 503,
    state,
    retryAfterSeconds: clamp(retryAfterSeconds),
    body: { error: { message, type: "server_error", code: "gpu_off" } },
  });
  const spend = `$${view.monthToDateUsd.toFixed(2)} of $${view.gpuBudgetUsd.toFixed(2)}`;
  if (view.pin && view.pin.nodes === 0 && view.nowMs < view.pin.untilMs) {
    return answer(
      "pinned-off",
      (view.pin.untilMs - view.nowMs) / 1000,
      `The GPU of this inference hub is pinned off by its operator until ${new Date(view.pin.untilMs).toISOString()}; the coding model is not served until then.`,
    );
  }
  if (
    view.lastReason === "budget-spent" ||
    view.lastReason === "budget-refuses-wake" ||
    view.monthToDateUsd >= view.gpuBudgetUsd
  ) {
    return answer(
      "budget-spent",
      MAX_RETRY_AFTER_SECONDS,
      `The GPU of this inference hub stays off: this month's GPU budget is spent or would be passed by waking it (${spend}). The coding model is served again next month, or once the operator raises budgetUsd.`,
    );
  }
  if (!view.acting) {
    return answer(
      "advice",
      600,
      "The GPU of this inference hub is off. Its autoscaler runs in advice mode (no dispatch token): it has logged that the GPU should wake, but the operator must turn it on (npm run hub -- gpu on).",
    );
  }
  if (view.lastReason === "hold-metrics-missing") {
    return answer(
      "blind",
      60,
      "The GPU of this inference hub is off, and its autoscaler cannot read the gatekeeper's request counts right now, so it holds the GPU as it is. Retry shortly; tell the operator if this persists.",
    );
  }
  const elapsed = view.wakeSinceMs === undefined ? 0 : Math.max(0, (view.nowMs - view.wakeSinceMs) / 1000);
  const left = Math.max(0, view.coldStartSeconds - elapsed);
  const when = left > 0 ? `ready in about ${Math.ceil(left / 60)} min` : "ready any moment now";
  return answer(
    "waking",
    left,
    `The GPU of this inference hub is waking up for this request (${when}). Retry after the Retry-After interval.`,
  );
}
