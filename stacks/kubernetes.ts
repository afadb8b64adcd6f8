import type { CpuSize, GpuSize } from "./catalogue/droplets";
import { HOURS_PER_MONTH } from "./catalogue/droplets";
import {
  DOKS_GPU_NODE,
  DOKS_GPU_SIZES,
  DOKS_NODE_RESERVE,
  DOKS_PRICES,
  DOKS_RELEASE,
  DOKS_SCALE_FROM_ZERO,
  DOKS_STORAGE,
} from "./catalogue/kubernetes";
import type { KubernetesPlan, Workload } from "./hub-config";
import { problem, Problem, Warning } from "./problems";
import type { ResolvedSettings } from "./presets";

/**
 * The `k8s` tier's plan-time decisions (DigitalOcean Kubernetes): which node pools, how many CPU
 * nodes the CPU workloads need, what DigitalOcean refuses or documents ambiguously. Pure, like the
 * rest of stacks/: infra/kubernetes/ renders the result.
 */

/** Memory a DOKS node keeps from pods (catalogue estimate). */
export const DOKS_NODE_RESERVED_GIB = DOKS_NODE_RESERVE.ramGiB;

/**
 * Each CPU pod asks for (and is limited to) its RAM estimate plus this share: the estimates are
 * unmeasured, as on droplets (services/coder.ts MEMORY_MARGIN), and a request is what the
 * scheduler packs by.
 */
export const POD_MEMORY_HEADROOM = 0.25;

/** A CPU pod's memory request and limit, MiB. */
export const podMemoryMiB = (ramGiB: number): number => Math.ceil(ramGiB * (1 + POD_MEMORY_HEADROOM) * 1024);

/** Services that exist on droplets only: DOKS runs its own node agent and, on GPU nodes, the DCGM exporter. */
const DROPLET_ONLY_PROGRAMS = new Set(["node-exporter"]);

/** Workloads of the CPU pool: the CPU node's, without what DOKS provides itself. */
export const kubernetesCpuWorkloads = (workloads: readonly Workload[]): Workload[] =>
  workloads.filter((w) => !DROPLET_ONLY_PROGRAMS.has(w.program));

/** First-fit decreasing by memory request: the fewest nodes of `allocatableGiB` the pods fit on (an estimate; the scheduler decides). */
export function packWorkloads(
  workloads: readonly Workload[],
  allocatableGiB: number,
): { nodes: Workload[][]; tooBig: Workload[] } {
  const nodes: { free: number; workloads: Workload[] }[] = [];
  const tooBig: Workload[] = [];
  const ramOf = (w: Workload) => podMemoryMiB(w.ramGiB ?? 0) / 1024;
  for (const w of [...workloads].sort((a, b) => ramOf(b) - ramOf(a))) {
    const ram = ramOf(w);
    if (ram > allocatableGiB) {
      tooBig.push(w);
      continue;
    }
    const node = nodes.find((n) => n.free >= ram);
    if (node) {
      node.free -= ram;
      node.workloads.push(w);
    } else nodes.push({ free: allocatableGiB - ram, workloads: [w] });
  }
  return { nodes: nodes.map((n) => n.workloads), tooBig };
}

export interface KubernetesResolution {
  readonly plan?: KubernetesPlan;
  readonly problems: readonly Problem[];
  readonly warnings: readonly Warning[];
}

/**
 * Checks a k8s stack against what DOKS offers and plans its pools. `cpu`/`gpu` are the catalogue
 * sizes (undefined when lookupSizes already refused them).
 */
export function resolveKubernetes(
  s: ResolvedSettings,
  cpu: CpuSize | undefined,
  gpu: GpuSize | undefined,
  cpuLoads: readonly Workload[],
): KubernetesResolution {
  const problems: Problem[] = [];
  const warnings: Warning[] = [];
  if (gpu && !DOKS_GPU_SIZES.includes(gpu.slug)) {
    problems.push(
      problem(
        ["gpuSize", "tier"],
        s.gpuSize,
        "is not a self-serve DOKS GPU node-pool size (DigitalOcean's supported-GPUs page: H200 and MI325X pools by contract only).",
        `Use one of ${DOKS_GPU_SIZES.join(", ")}; or tier ${gpu.gpuCount > 1 ? "multigpu" : "gpu or hybrid"} for ${s.gpuSize} droplets.`,
      ),
    );
  }
  if (!s.gpuEnabled)
    problems.push(
      problem(
        ["gpuEnabled", "tier"],
        false,
        "the k8s tier's GPU pool always exists; KEDA and the cluster autoscaler decide how many GPU nodes run (down to gpuMinNodes).",
        "Remove gpuEnabled; set gpuMinNodes to 0 to let the pool empty when idle.",
      ),
    );
  if (s.sandbox === "on")
    problems.push(
      problem(
        ["sandbox", "tier"],
        s.sandbox,
        "the sandbox runs the agents' code under gVisor on a droplet of its own; the k8s tier deploys no such node (DOKS nodes have no gVisor runtime).",
        "Set sandbox to none, or use a droplet tier (gpu, hybrid, multigpu) for the sandbox.",
      ),
    );
  if (s.autoscalerDispatchRepo !== undefined)
    warnings.push({
      keys: ["autoscalerDispatchRepo", "tier"],
      message:
        "is ignored in the k8s tier: KEDA and the cluster autoscaler scale the GPU pool; the controller there keeps the ledger and the budget ceiling only.",
    });
  if (s.gpuPinNodes !== undefined || s.gpuPinUntil !== undefined)
    problems.push(
      problem(
        ["gpuPinNodes", "gpuPinUntil", "tier"],
        s.gpuPinNodes ?? s.gpuPinUntil,
        "a pin holds droplets through the deploy pipeline; the k8s tier's GPU nodes follow KEDA.",
        "Remove gpuPinNodes and gpuPinUntil (npm run hub -- gpu unpin); raise gpuMinNodes for a floor.",
      ),
    );
  if (s.gpuMinNodes === 0) {
    warnings.push({
      keys: ["gpuMinNodes"],
      message: `is 0: the GPU pool is asked to autoscale from zero nodes, which DigitalOcean documents both ways (${DOKS_SCALE_FROM_ZERO.source}). If DigitalOcean refuses it, creating the GPU node pool fails and nothing of it is billed; set gpuMinNodes to 1 then (an always-on GPU node).`,
    });
  }
  if (!cpu || !gpu) return { problems, warnings };

  const allocatable = cpu.ramGiB - DOKS_NODE_RESERVED_GIB;
  const loads = kubernetesCpuWorkloads(cpuLoads);
  const packed = packWorkloads(loads, allocatable);
  for (const w of packed.tooBig) {
    problems.push(
      problem(
        "cpuSize",
        cpu.slug,
        `${w.role} (${w.program}) asks for ${(podMemoryMiB(w.ramGiB ?? 0) / 1024).toFixed(2)} GiB of RAM (its estimate plus ${POD_MEMORY_HEADROOM * 100}%); a ${cpu.slug} node leaves pods ${allocatable.toFixed(2)} GiB (${cpu.ramGiB} GiB less ${DOKS_NODE_RESERVED_GIB} GiB for the kubelet and DigitalOcean's DaemonSets).`,
        "Use a larger cpuSize (every CPU pool node has this size), or a smaller model for that service.",
      ),
    );
  }
  // DigitalOcean keeps at least one node in a cluster's default pool (limits page).
  const cpuNodes = Math.max(1, packed.nodes.length);
  const needed = loads.reduce((sum, w) => sum + podMemoryMiB(w.ramGiB ?? 0) / 1024, 0);
  const statePvcs: { name: string; sizeGiB: number }[] = [];
  if (s.monitoring)
    statePvcs.push(
      { name: "prometheus", sizeGiB: Math.max(1, Math.floor(s.cpuCacheGiB / 4)) + 1 },
      { name: "alertmanager", sizeGiB: 1 },
    );
  if (loads.some((w) => w.program === "grafana")) statePvcs.push({ name: "grafana", sizeGiB: 1 });
  if (loads.some((w) => w.program === "autoscaler")) statePvcs.push({ name: "autoscaler", sizeGiB: 1 });
  if (s.domain) statePvcs.push({ name: "gateway-acme", sizeGiB: 1 });
  const plan: KubernetesPlan = {
    release: { slug: DOKS_RELEASE.slug, kubernetes: DOKS_RELEASE.kubernetes, minor: DOKS_RELEASE.minor },
    cpuPool: {
      size: cpu.slug,
      nodes: cpuNodes,
      allocatableGiBPerNode: allocatable,
      ramNeededGiB: needed,
      placement: packed.nodes.map((ws) => ws.map((w) => w.role)),
    },
    gpuPool: {
      size: gpu.slug,
      minNodes: s.gpuMinNodes,
      maxNodes: s.gpuMaxNodes,
      gpusPerNode: gpu.gpuCount,
      resource: gpu.vendor === "amd" ? DOKS_GPU_NODE.amdResource : DOKS_GPU_NODE.nvidiaResource,
      // Expected GPU node-hours: the floor all month, or the expected on-demand hours, whichever is more.
      nodeHours: Math.max(s.gpuMinNodes * HOURS_PER_MONTH, s.gpuCount * s.gpuHoursPerMonth),
    },
    haControlPlane: false,
    loadBalancerNodes: 1,
    statePvcs,
    storageClass: DOKS_STORAGE.retainClass,
    prices: {
      haControlPlaneMonthlyUsd: DOKS_PRICES.haControlPlaneMonthlyUsd,
      loadBalancerNodeMonthlyUsd: DOKS_PRICES.loadBalancerNodeMonthlyUsd,
    },
  };
  return { plan, problems, warnings };
}
