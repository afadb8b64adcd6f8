import { BUDGET_CAP_METRIC } from "../../programs/autoscaler/budget-cap";
import { ColdStartStage, servingModel } from "../../programs/autoscaler/serving-model";
import { DEMAND_LABELS, DEMAND_METRIC } from "../../programs/autoscaler/demand";
import { PROMETHEUS_URL } from "../../services/grafana";
import type { Route } from "../../services/routes";
import type { HubConfig } from "../../stacks/hub-config";
import { KubeObject, labelsFor, NAMESPACE } from "./model";
import { GPU_WORKLOAD } from "./workloads";

/**
 * GPU replicas on Kubernetes scale with KEDA (the scaler the vLLM community uses, FACTS.md
 * "Autoscaling: what the peers do"); the cluster autoscaler adds a GPU node for each pending pod
 * and removes it once empty. KEDA combines three Prometheus readings into one replica count:
 *
 *   wanted = min( max(1 if the gatekeeper allowed a coder request within gpuIdleMinutes else 0,
 *                     ceil(running + waiting coder requests / (replica capacity x gpuTargetLoadPercent))),
 *                 the controller's budget ceiling )
 *
 * - 0 → 1 comes from the gateway's side: vLLM's own metrics vanish at zero replicas, and only a
 *   request the gatekeeper allowed for the coder's scope counts (its decisions counter, by scope
 *   and outcome), so nobody without a key can wake a GPU.
 * - The budget ceiling is the autoscaling controller's (BUDGET_CAP_METRIC, from its ledger of the
 *   month's GPU spend): the same guard as on droplets. Without a reading the ceiling is 0: no
 *   GPU runs on an unknown budget.
 * - The cooldown (1 → 0) and the scale-down window (n → n-1) exceed the modelled cold start, so
 *   KEDA never scales away a replica that is still loading.
 */

/** KEDA's polling interval: the autoscaler's tick, and a Prometheus scrape interval. */
export const KEDA_POLLING_SECONDS = 15;
/** Load must stay above target this long before another replica (the droplet controller's SCALE_UP_WINDOW_SECONDS). */
export const SCALE_UP_WINDOW_SECONDS = 60;
/** The Kubernetes HPA refuses a stabilization window above an hour. */
const HPA_MAX_WINDOW_SECONDS = 3600;

/** Stages of a droplet wake that a DOKS node does not have: no deploy pipeline (KEDA acts in-cluster), no cloud-init (the node image ships its runtime). */
const NOT_ON_KUBERNETES = new Set(["pipeline", "cloud-init"]);

export interface KubernetesColdStart {
  readonly stages: readonly ColdStartStage[];
  readonly totalSeconds: number;
}

/** A wake on DOKS: the node (a droplet), the image pull, the weights from the volume, vLLM's start, the first health check. */
export function kubernetesColdStart(hub: HubConfig): KubernetesColdStart {
  const model = servingModel(hub);
  if (!model.ok) throw new Error(`k8s: ${model.reason}`);
  const stages = model.model.coldStart.stages.filter((s) => !NOT_ON_KUBERNETES.has(s.name));
  return { stages, totalSeconds: stages.reduce((sum, s) => sum + s.seconds, 0) };
}

/** 1 → 0 after this long without activity, and n → n-1 after this long below target: the cold start, rounded up to whole minutes, plus one. */
export function scaleDownSeconds(coldStartSeconds: number): number {
  return Math.min(HPA_MAX_WINDOW_SECONDS, (Math.ceil(coldStartSeconds / 60) + 1) * 60);
}

/**
 * The droplet controller's demand signal (programs/autoscaler/demand.ts: the gatekeeper's allowed
 * coder decisions) over the window. increase() cannot see a series' first sample (the gatekeeper
 * creates a key's series at its first request), so series that did not exist a window ago count
 * as one request each: the first request after a quiet spell wakes the GPU.
 */
export function demandQuery(windowMinutes: number): string {
  const series = `${DEMAND_METRIC}{scope="${DEMAND_LABELS.scope}",outcome="${DEMAND_LABELS.outcome}"}`;
  return `(sum(increase(${series}[${windowMinutes}m])) or vector(0)) + (count(${series} unless ${series} offset ${windowMinutes}m) or vector(0))`;
}

/** Running + waiting requests across the coder replicas (vLLM's queue metrics, FACTS.md). */
export const loadQuery = (): string =>
  `(sum(vllm:num_requests_running{job="vllm",model="coder"}) or vector(0)) + (sum(vllm:num_requests_waiting{job="vllm",model="coder"}) or vector(0))`;

export const budgetQuery = (): string => `max(${BUDGET_CAP_METRIC})`;

export interface ScalingPlan {
  readonly coldStart: KubernetesColdStart;
  readonly cooldownSeconds: number;
  readonly replicaCapacity: number;
  readonly targetLoad: number;
  readonly formula: string;
  readonly queries: { readonly demand: string; readonly load: string; readonly budget: string };
}

export function scalingPlan(hub: HubConfig, routes: readonly Route[]): ScalingPlan {
  const model = servingModel(hub);
  if (!model.ok) throw new Error(`k8s: ${model.reason}`);
  const coder = routes.find((r) => r.name === "coder");
  if (!coder) throw new Error("k8s: the route table has no coder route to scale on");
  if (coder.scope !== DEMAND_LABELS.scope)
    throw new Error(`k8s: the coder route's scope ${coder.scope} is not the demand signal's ${DEMAND_LABELS.scope}`);
  const coldStart = kubernetesColdStart(hub);
  const capacity = model.model.replica.concurrentSequences;
  const targetLoad = hub.settings.gpuTargetLoadPercent / 100;
  // Requests one replica takes before another is wanted; a number KEDA's formula language reads as a float.
  const perReplica = Math.max(1, Math.round(capacity * targetLoad * 100) / 100);
  return {
    coldStart,
    cooldownSeconds: scaleDownSeconds(coldStart.totalSeconds),
    replicaCapacity: capacity,
    targetLoad,
    // Float literals: KEDA refuses a formula whose result is an int (pkg/scaling/modifiers/formula.go), and min/max keep the type of the operand they pick.
    formula: `min(max(demand > 0 ? 1.0 : 0.0, ceil(load / ${perReplica})), budget)`,
    queries: { demand: demandQuery(hub.settings.gpuIdleMinutes), load: loadQuery(), budget: budgetQuery() },
  };
}

/**
 * Prometheus as KEDA reaches it: KEDA runs in its own namespace, so the short Service name the
 * hub's own pods use (PROMETHEUS_URL) is qualified with the hub's namespace.
 */
export function prometheusUrlFromKeda(): string {
  const url = new URL(PROMETHEUS_URL);
  url.hostname = `${url.hostname}.${NAMESPACE}.svc.cluster.local`;
  return url.toString().replace(/\/$/, "");
}

const prometheusTrigger = (name: string, query: string) => ({
  type: "prometheus",
  name,
  metadata: {
    serverAddress: prometheusUrlFromKeda(),
    query,
    // Each reading is a count; the formula below turns them into replicas.
    threshold: "1",
    // No series (Prometheus down, controller not yet up) reads as 0: no wake, ceiling 0.
    ignoreNullValues: "true",
  },
});

/** The ScaledObject on the GPU StatefulSet. */
export function scaledObject(hub: HubConfig, plan: ScalingPlan): KubeObject {
  const s = hub.settings;
  return {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: {
      name: GPU_WORKLOAD.statefulSet,
      namespace: NAMESPACE,
      labels: labelsFor(GPU_WORKLOAD.statefulSet, "gpu-scaling"),
    },
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "StatefulSet", name: GPU_WORKLOAD.statefulSet },
      pollingInterval: KEDA_POLLING_SECONDS,
      cooldownPeriod: plan.cooldownSeconds,
      minReplicaCount: s.gpuMinNodes,
      maxReplicaCount: s.gpuMaxNodes,
      advanced: {
        horizontalPodAutoscalerConfig: {
          behavior: {
            scaleUp: {
              stabilizationWindowSeconds: SCALE_UP_WINDOW_SECONDS,
              policies: [{ type: "Pods", value: 1, periodSeconds: SCALE_UP_WINDOW_SECONDS }],
            },
            scaleDown: {
              stabilizationWindowSeconds: plan.cooldownSeconds,
              policies: [{ type: "Pods", value: 1, periodSeconds: 60 }],
            },
          },
        },
        scalingModifiers: { formula: plan.formula, target: "1", activationTarget: "0", metricType: "AverageValue" },
      },
      triggers: [
        prometheusTrigger("demand", plan.queries.demand),
        prometheusTrigger("load", plan.queries.load),
        prometheusTrigger("budget", plan.queries.budget),
      ],
    },
  };
}
