import { DROPLET_MIN_BILLED_SECONDS } from "../stacks/catalogue/droplets";
import { percentile, PolicyRun, ReplayModel } from "./replay";
import type { Trace } from "./traces";

/**
 * The cheapest schedule that serves every request on the GPU, knowing the future: one node,
 * created exactly one billed cold start before each busy period's first request (so it is ready
 * as the request arrives), removed from the routes as its last request completes. A quiet gap
 * is bridged when staying on costs less than tearing down and waking again (gap <= billed cold
 * start + teardown). Requests see the same replica model as every policy, so under overload the
 * oracle's single node times requests out too; it ignores gpuMinNodes, windows and the budget.
 */
export function oracle(
  trace: Trace,
  model: ReplayModel,
): PolicyRun & { readonly sessions: readonly { readonly createdAt: number; readonly destroyedAt: number }[] } {
  const { arrivals, inputTokens, outputTokens } = trace;
  const n = arrivals.length;
  const billedColdStart = model.coldStartSeconds - model.pipelineSeconds;
  const bridge = billedColdStart + model.destroySeconds;
  const waits = new Float64Array(n);
  const sessions: { createdAt: number; destroyedAt: number }[] = [];
  let served = 0,
    refused = 0;
  let freeAt = -Infinity;
  let sessionStart = NaN;
  let lastDone = -Infinity;
  for (let k = 0; k < n; k++) {
    const a = arrivals[k];
    if (Number.isNaN(sessionStart)) sessionStart = a - billedColdStart;
    else if (a - lastDone > bridge) {
      sessions.push({ createdAt: sessionStart, destroyedAt: lastDone + model.destroySeconds });
      sessionStart = a - billedColdStart;
    }
    const begin = Math.max(a, freeAt);
    if (begin - a > model.waitLimitSeconds) {
      refused++;
      lastDone = Math.max(lastDone, a);
      continue;
    }
    waits[served++] = begin - a;
    freeAt = begin + (inputTokens[k] + outputTokens[k]) / model.replicaTokensPerSecond;
    lastDone = Math.max(lastDone, freeAt);
  }
  sessions.push({ createdAt: sessionStart, destroyedAt: lastDone + model.destroySeconds });
  const billedSeconds = sessions.reduce(
    (sum, s) => sum + Math.max(DROPLET_MIN_BILLED_SECONDS, s.destroyedAt - s.createdAt),
    0,
  );
  const sorted = waits.subarray(0, served).sort();
  return {
    name: "oracle",
    gpuHours: billedSeconds / 3600,
    costUsd: (billedSeconds * model.nodeHourlyUsd) / 3600,
    requests: n,
    servedByGpu: served,
    servedByFallback: 0,
    refused,
    gpuShareOutsideColdStarts: n > 0 ? served / n : 0,
    waitP50s: percentile(sorted, 0.5),
    waitP95s: percentile(sorted, 0.95),
    scaleEvents: 2 * sessions.length,
    servedByGpuAfterHold: 0,
    heldThenFallback: 0,
    holdCapRefused: 0,
    holdP50s: 0,
    holdP95s: 0,
    extra: { arrivedDuringColdStart: 0, timedOut: refused, sessions: sessions.length },
    sessions,
  };
}
