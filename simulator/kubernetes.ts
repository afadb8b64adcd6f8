import { GPU_NODE_UNNEEDED_TIME } from "../infra/kubernetes/model";
import { kubernetesRoutes } from "../infra/kubernetes/manifests";
import { SCALE_UP_WINDOW_SECONDS, scalingPlan } from "../infra/kubernetes/scaling";
import type { ServingModel } from "../programs/autoscaler/serving-model";
import type { PolicyConfig } from "../programs/autoscaler/types";
import type { HubConfig } from "../stacks/hub-config";
import { oracle } from "./oracle";
import { alwaysOn, kedaController, KedaRule } from "./policies";
import { PolicyRun, replay, ReplayModel } from "./replay";
import type { Trace } from "./traces";

/**
 * The k8s tier in the simulator: KEDA's rule instead of the droplet controller's pipeline. A new
 * replica is a new DOKS node: no deploy pipeline and no cloud-init (infra/kubernetes/scaling.ts
 * kubernetesColdStart), several may start at once (no stack lock), and an emptied node bills until
 * the cluster autoscaler removes it (GPU_NODE_UNNEEDED_TIME) and then its teardown.
 */

const minutes = (text: string): number => Number(/^(\d+)m$/.exec(text)?.[1] ?? NaN);

export function kubernetesReplay(
  hub: HubConfig,
  model: ServingModel,
  base: ReplayModel,
): { replayModel: ReplayModel; rule: KedaRule } {
  const plan = scalingPlan(hub, kubernetesRoutes(hub).routes);
  return {
    replayModel: {
      ...base,
      pipelineSeconds: 0,
      coldStartSeconds: plan.coldStart.totalSeconds,
      changeSeconds: base.tickSeconds,
      destroySeconds: minutes(GPU_NODE_UNNEEDED_TIME) * 60 + model.coldStart.destroySeconds,
    },
    rule: {
      demandWindowSeconds: hub.settings.gpuIdleMinutes * 60,
      perReplica: plan.replicaCapacity * plan.targetLoad,
      cooldownSeconds: plan.cooldownSeconds,
      downWindowSeconds: plan.cooldownSeconds,
      upWindowSeconds: SCALE_UP_WINDOW_SECONDS,
    },
  };
}

/** The k8s tier's rows: always on, KEDA as configured, and the oracle on the same node model. */
export function kubernetesPolicies(
  trace: Trace,
  policy: PolicyConfig,
  replayModel: ReplayModel,
  rule: KedaRule,
): PolicyRun[] {
  return [
    replay("always-on", trace, replayModel, alwaysOn(Math.max(1, policy.minNodes))),
    replay("keda", trace, replayModel, kedaController(rule, policy)),
    oracle(trace, replayModel),
  ];
}
