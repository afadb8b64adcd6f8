import { PUBLIC_PORTS } from "../../services/ports";
import { DOKS_EXISTING_VOLUME, DOKS_STORAGE, KEDA_CHART } from "../../stacks/catalogue/kubernetes";
import type { HubConfig, KubernetesPlan } from "../../stacks/hub-config";
import { GPU_NODE_UNNEEDED_TIME } from "./model";
import { kubernetesRoutes } from "./manifests";
import { KEDA_POLLING_SECONDS, scalingPlan } from "./scaling";
import { modelCacheClaim } from "./storage";

/** What the plan shows of a k8s stack beyond the droplet sections: the cluster, the scaling rule, the volumes' binding. */
export interface KubernetesSummary {
  readonly release: KubernetesPlan["release"];
  readonly cpuPool: KubernetesPlan["cpuPool"];
  readonly gpuPool: KubernetesPlan["gpuPool"];
  readonly publicPorts: readonly number[];
  readonly scaling?: {
    readonly keda: string;
    readonly formula: string;
    readonly queries: Readonly<Record<string, string>>;
    readonly pollingSeconds: number;
    readonly cooldownSeconds: number;
    readonly coldStartSeconds: number;
    readonly coldStart: readonly { readonly name: string; readonly seconds: number; readonly unverified: boolean }[];
    readonly emptyNodeGoesAfter: string;
  };
  readonly modelCache: { readonly claims: readonly string[]; readonly storageClass: string; readonly note: string };
}

export function kubernetesSummary(hub: HubConfig): KubernetesSummary | undefined {
  const plan = hub.kubernetes;
  if (!plan) return undefined;
  const scaling = hub.coder.backend === "vllm" ? scalingPlan(hub, kubernetesRoutes(hub).routes) : undefined;
  return {
    release: plan.release,
    cpuPool: plan.cpuPool,
    gpuPool: plan.gpuPool,
    publicPorts: [PUBLIC_PORTS.http, PUBLIC_PORTS.https],
    ...(scaling
      ? {
          scaling: {
            keda: `${KEDA_CHART.chart} ${KEDA_CHART.version} (${KEDA_CHART.repo})`,
            formula: scaling.formula,
            queries: scaling.queries,
            pollingSeconds: KEDA_POLLING_SECONDS,
            cooldownSeconds: scaling.cooldownSeconds,
            coldStartSeconds: Math.round(scaling.coldStart.totalSeconds),
            coldStart: scaling.coldStart.stages.map((s) => ({
              name: s.name,
              seconds: Math.round(s.seconds),
              unverified: s.unverified,
            })),
            emptyNodeGoesAfter: GPU_NODE_UNNEEDED_TIME,
          },
        }
      : {}),
    modelCache: {
      claims: Array.from({ length: hub.modelCache.volumes }, (_, i) => modelCacheClaim(i)),
      storageClass: DOKS_STORAGE.retainClass,
      note: `the ${hub.modelCache.volumes} model-cache volume(s) and the CPU cache are the stack's own DigitalOcean volumes (protected, kept on destroy), bound by id with static PersistentVolumes and never formatted by the CSI driver (${DOKS_STORAGE.noFormatAttribute}), so a move from hybrid keeps the downloaded weights. ⚠ ${DOKS_EXISTING_VOLUME.source}: if DigitalOcean refuses the binding, the GPU pod stays Pending and the volume is untouched; nothing is reformatted or deleted.`,
    },
  };
}
