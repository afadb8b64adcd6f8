import type { IncomingMessage, ServerResponse } from "node:http";
import type { HoldLimits } from "../../holding/core";
import { HolderMetrics } from "../../holding/metrics";
import { createHoldHandler, HoldHandler, HolderView, OffAnswerLike } from "../../holding/proxy";
import { OFF_BACKEND_NAME } from "./contract";
import type { Controller } from "./controller";
import { Fetcher, healthy } from "./signals";

/**
 * Why the holder lives in the controller, on its off port: a hold is only worth making while this
 * controller is waking the GPU, and it alone knows that (the decision, the dispatch under way, the
 * pin, the budget), counts demand, and already reads every replica's health over the VPC. A hold
 * never wakes a GPU the budget forbids: it waits only while the off answer's state is `waking`,
 * and a decision that refuses the wake ends every hold at the next poll.
 */

/** The coder route's body limit (services/routes.ts CHAT_BODY_BYTES: 10 MiB), held here as the route would. */
const CHAT_BODY_BYTES = 10 * 1024 * 1024;
/** Held request bodies at most, in the controller's 128 MiB container. */
export const HELD_BODY_BYTES = 24 * 1024 * 1024;
/** A replica's health is looked up at most this often while requests are held. */
const HEALTH_CACHE_MS = 500;

export function holdLimits(holding: {
  readonly maxSeconds: number;
  readonly maxRequests: number;
  readonly maxPerKey: number;
}): HoldLimits {
  return {
    maxSeconds: holding.maxSeconds,
    maxRequests: holding.maxRequests,
    maxPerKey: holding.maxPerKey,
    maxBodyBytes: HELD_BODY_BYTES,
  };
}

export function controllerHolderView(
  controller: Controller,
  fetcher: Fetcher,
  clock: () => number,
  metrics?: HolderMetrics,
): HolderView {
  let cached: { atMs: number; url: string | undefined } | undefined;
  return {
    async readyReplica() {
      const now = clock();
      if (cached && now - cached.atMs < HEALTH_CACHE_MS) return cached.url;
      let url: string | undefined;
      for (const replica of controller.holdingView.replicas) {
        if (await healthy(fetcher, replica.healthUrl, 2000)) {
          url = new URL(replica.healthUrl).origin;
          break;
        }
      }
      cached = { atMs: clock(), url };
      return url;
    },
    wakeState() {
      const answer = controller.offAnswerNow();
      return answer.state === "waking"
        ? { kind: "waking", readyInSeconds: answer.retryAfterSeconds }
        : { kind: "not-waking" };
    },
    offAnswer(): OffAnswerLike {
      const answer = controller.offAnswerNow();
      return {
        status: answer.status,
        headers: {
          "retry-after": String(answer.retryAfterSeconds),
          "x-hub-gpu-state": answer.state,
          "x-hub-backend": OFF_BACKEND_NAME,
        },
        body: answer.body,
      };
    },
    arrived: (allowed) => controller.holderArrived(allowed),
    finished: (outcome, heldSeconds) => {
      controller.holderFinished();
      metrics?.observe(outcome, heldSeconds);
    },
  };
}

/**
 * The hold handler for the off port, following the config file: rebuilt when the deploy changes
 * the holding settings (requests held under the old ones finish there). Undefined while the file
 * has no holding section: the off port then answers the 503 alone.
 */
export function holderFollowingFile(
  controller: Controller,
  fetcher: Fetcher,
  clock: () => number,
): {
  current: () => ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  drain: (timeoutMs: number) => Promise<void>;
} {
  const metrics = new HolderMetrics(controller.metrics.registry, () => current?.queue.size ?? 0);
  const view = controllerHolderView(controller, fetcher, clock, metrics);
  let key = "";
  let current: HoldHandler | undefined;
  const handlers: HoldHandler[] = [];
  const pick = () => {
    const holding = controller.holdingView.holding;
    if (!holding) return undefined;
    const next = JSON.stringify(holding);
    if (next !== key || !current) {
      key = next;
      current = createHoldHandler(view, {
        limits: holdLimits(holding),
        fallbackUrl: holding.fallbackUrl ?? undefined,
        maxBodyBytes: CHAT_BODY_BYTES,
        clock,
      });
      handlers.push(current);
    }
    return current.handle;
  };
  return {
    current: pick,
    drain: async (timeoutMs) => void (await Promise.all(handlers.map((h) => h.drain(timeoutMs)))),
  };
}
