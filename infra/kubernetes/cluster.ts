import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { DOKS_GPU_MIN_KUBERNETES, DOKS_RELEASE } from "../../stacks/catalogue/kubernetes";
import type { KubernetesPlan } from "../../stacks/hub-config";
import { GPU_NODE_UNNEEDED_TIME, POOLS } from "./model";

/**
 * The DOKS cluster: a default pool of CPU nodes (DigitalOcean keeps at least one node there), and
 * a separate GPU pool the cluster autoscaler sizes between gpuMinNodes and gpuMaxNodes. DigitalOcean
 * installs the GPU device plugin itself (`nvidiaGpuDevicePlugin` / `amdGpuDevicePlugin`), so no
 * chart is needed for it. Pods find each pool by the label DigitalOcean puts on its nodes
 * (doks.digitalocean.com/node-pool: <pool name>).
 */

export type VersionChoice =
  | { readonly ok: true; readonly version: string; readonly note?: string }
  | { readonly ok: false; readonly problem: string };

const parse = (slug: string): number[] => (/^(\d+)\.(\d+)\.(\d+)-do\.(\d+)$/.exec(slug) ?? []).slice(1).map(Number);
const compare = (a: number[], b: number[]) => a.reduce((c, x, i) => c || x - (b[i] ?? 0), 0);

/**
 * The DOKS version to create: the newest patch of the catalogue's minor the region offers; else
 * the oldest newer minor (said so); never an older one, and never one below what GPU pools need.
 */
export function chooseDoksVersion(offered: readonly string[], minor: string = DOKS_RELEASE.minor): VersionChoice {
  const valid = offered.filter((v) => parse(v).length === 4).sort((a, b) => compare(parse(b), parse(a)));
  const [maj, min] = minor.split(".").map(Number);
  const same = valid.filter((v) => parse(v)[0] === maj && parse(v)[1] === min);
  if (same.length) return { ok: true, version: same[0] };
  const newer = valid.filter((v) => compare(parse(v).slice(0, 2), [maj, min]) > 0).reverse();
  const gpuFloor = [...DOKS_GPU_MIN_KUBERNETES.split(".").map(Number), 0];
  const usable = newer.find((v) => compare(parse(v), gpuFloor) >= 0);
  if (usable)
    return {
      ok: true,
      version: usable,
      note: `DOKS ${minor} is no longer offered; creating the nearest newer release, ${usable} (the tier was tested against ${DOKS_RELEASE.slug})`,
    };
  return {
    ok: false,
    problem: `DigitalOcean offers ${valid.length ? valid.join(", ") : "no DOKS version"}; the k8s tier needs ${minor} or newer (tested against ${DOKS_RELEASE.slug}).`,
  };
}

export interface DoksClusterArgs {
  readonly cloudName: string;
  readonly region: string;
  readonly version: pulumi.Input<string>;
  readonly plan: KubernetesPlan;
  readonly gpuVendor: "nvidia" | "amd";
  readonly tags: readonly pulumi.Input<string>[];
}

export class DoksCluster extends pulumi.ComponentResource {
  public readonly cluster: digitalocean.KubernetesCluster;
  public readonly gpuPool: digitalocean.KubernetesNodePool;
  /** The cluster's admin kubeconfig: a secret. */
  public readonly kubeconfig: pulumi.Output<string>;

  constructor(name: string, args: DoksClusterArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:kubernetes:DoksCluster", name, {}, opts);
    const { plan } = args;
    this.cluster = new digitalocean.KubernetesCluster(
      `${name}-doks`,
      {
        name: args.cloudName,
        region: args.region,
        version: args.version,
        ha: plan.haControlPlane,
        // Patch releases within the maintenance window; a new minor stays the operator's call.
        autoUpgrade: true,
        surgeUpgrade: true,
        nodePool: { name: POOLS.cpu, size: plan.cpuPool.size, nodeCount: plan.cpuPool.nodes, tags: [...args.tags] },
        // An empty GPU node goes after GPU_NODE_UNNEEDED_TIME rather than the autoscaler's default 10 minutes.
        clusterAutoscalerConfigurations: [
          { scaleDownUnneededTime: GPU_NODE_UNNEEDED_TIME, scaleDownUtilizationThreshold: 0.5 },
        ],
        ...(args.gpuVendor === "amd"
          ? { amdGpuDevicePlugin: { enabled: true } }
          : { nvidiaGpuDevicePlugin: { enabled: true } }),
        tags: [...args.tags],
        // Destroying the cluster (hub down, a tier switch) must leave the volumes bound to it: the stack's own.
        destroyAllAssociatedResources: false,
      },
      // A new version is DigitalOcean's upgrade to run (autoUpgrade), not a reason to replace the cluster.
      { parent: this, ignoreChanges: ["version"] },
    );
    this.gpuPool = new digitalocean.KubernetesNodePool(
      `${name}-gpu`,
      {
        clusterId: this.cluster.id,
        name: POOLS.gpu,
        size: plan.gpuPool.size,
        autoScale: true,
        minNodes: plan.gpuPool.minNodes,
        maxNodes: plan.gpuPool.maxNodes,
        tags: [...args.tags],
      },
      // The cluster autoscaler moves the node count; the stack sets only its range.
      { parent: this, ignoreChanges: ["nodeCount"] },
    );
    this.kubeconfig = pulumi.secret(this.cluster.kubeConfigs.apply((configs) => configs?.[0]?.rawConfig ?? ""));
    this.registerOutputs({ clusterId: this.cluster.id, gpuPoolId: this.gpuPool.id });
  }
}
