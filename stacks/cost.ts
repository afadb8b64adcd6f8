import { CpuSize, cpuHourly, GpuSize, HOURS_PER_MONTH } from "./catalogue/droplets";
import { gbToGiB, SNAPSHOT_PRICE_PER_GIB_MONTH, VOLUME_PRICE_PER_GIB_MONTH } from "./catalogue/storage";

export interface CostLine {
  readonly item: string;
  readonly detail: string;
  readonly monthlyUsd: number;
  /** Burn rate while this line is running, USD/h (volumes: their monthly price / 730). */
  readonly hourlyUsd: number;
}

export interface CostEstimate {
  readonly lines: readonly CostLine[];
  readonly monthlyUsd: number;
  /** USD/h right now: the CPU node, volumes, and GPU droplets only if they exist. */
  readonly hourlyNowUsd: number;
  /** USD/h with every GPU droplet on. */
  readonly hourlyGpuOnUsd: number;
  /** The seed design's own figures beside ours, where they differ. */
  readonly seedComparison: readonly {
    readonly item: string;
    readonly seed: string;
    readonly ours: string;
    readonly why: string;
  }[];
}

export interface CostInput {
  readonly cpuSize: CpuSize;
  readonly cpuCacheGiB: number;
  /** Absent in the cpu tier. */
  readonly gpu?: {
    readonly size: GpuSize;
    readonly count: number;
    readonly hoursPerMonth: number;
    readonly on: boolean;
  };
  readonly modelCacheGiB: number;
  readonly modelCacheVolumes: number;
  /** The k8s tier: a pool of CPU nodes, the control plane, the load balancer and the state claims. @default - droplets only */
  readonly kubernetes?: {
    readonly cpuNodes: number;
    readonly haControlPlane: boolean;
    readonly haControlPlaneMonthlyUsd: number;
    readonly loadBalancerNodes: number;
    readonly loadBalancerNodeMonthlyUsd: number;
    /** Claims beyond the model caches and the CPU cache volume (metrics, dashboards, ledger, certificates). */
    readonly stateVolumeGiB: number;
  };
  /** A baked GPU image is kept (gpuSnapshotId): its estimated size, GB. */
  readonly gpuImageGB?: number;
  /** The sandbox node, when `sandbox` is on. @default - none */
  readonly sandboxSize?: CpuSize;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** The seed design quoted these; we use DigitalOcean's published figures instead. */
export const SEED_FIGURES = {
  c4MonthlyUsd: 24,
  h100HourlyUsd: 4.49,
};

export function estimateCost(input: CostInput): CostEstimate {
  const lines: CostLine[] = [];
  const k8s = input.kubernetes;
  if (k8s) {
    const controlPlane = k8s.haControlPlane ? k8s.haControlPlaneMonthlyUsd : 0;
    lines.push({
      item: "Kubernetes control plane",
      detail: k8s.haControlPlane
        ? "DOKS, high-availability control plane"
        : `DOKS control plane, free (high availability would be $${k8s.haControlPlaneMonthlyUsd}/month)`,
      monthlyUsd: controlPlane,
      hourlyUsd: controlPlane / HOURS_PER_MONTH,
    });
    lines.push({
      item: "CPU node",
      detail: `${k8s.cpuNodes} x ${input.cpuSize.slug} (${input.cpuSize.vcpu} vCPU, ${input.cpuSize.ramGiB} GiB) in the CPU pool, always on`,
      monthlyUsd: round2(k8s.cpuNodes * input.cpuSize.pricePerMonth),
      hourlyUsd: k8s.cpuNodes * cpuHourly(input.cpuSize),
    });
    const lb = k8s.loadBalancerNodes * k8s.loadBalancerNodeMonthlyUsd;
    lines.push({
      item: "Load balancer",
      detail: `DigitalOcean load balancer, ${k8s.loadBalancerNodes} node at $${k8s.loadBalancerNodeMonthlyUsd}/month (ports 80 and 443)`,
      monthlyUsd: lb,
      hourlyUsd: lb / HOURS_PER_MONTH,
    });
  } else if (input.cpuSize.pricePerMonth > 0)
    lines.push({
      item: "CPU node",
      detail: `${input.cpuSize.slug} (${input.cpuSize.vcpu} vCPU, ${input.cpuSize.ramGiB} GiB), always on`,
      monthlyUsd: input.cpuSize.pricePerMonth,
      hourlyUsd: cpuHourly(input.cpuSize),
    });
  if (input.gpu && input.gpu.count > 0) {
    const { size, count, hoursPerMonth } = input.gpu;
    lines.push({
      item: "GPU nodes",
      detail: `${count} x ${size.slug} at $${size.pricePerHour}/h x ${hoursPerMonth} h/month${hoursPerMonth >= HOURS_PER_MONTH ? " (always on)" : " (on demand)"}`,
      monthlyUsd: round2(count * size.pricePerHour * hoursPerMonth),
      hourlyUsd: count * size.pricePerHour,
    });
  }
  if (input.sandboxSize)
    lines.push({
      item: "Sandbox node",
      detail: `${input.sandboxSize.slug} (${input.sandboxSize.vcpu} vCPU, ${input.sandboxSize.ramGiB} GiB), always on, gVisor`,
      monthlyUsd: input.sandboxSize.pricePerMonth,
      hourlyUsd: cpuHourly(input.sandboxSize),
    });
  const stateGiB = k8s?.stateVolumeGiB ?? 0;
  const volumeGiB = input.modelCacheGiB * input.modelCacheVolumes + input.cpuCacheGiB + stateGiB;
  if (volumeGiB > 0)
    lines.push({
      item: "Block storage",
      detail: `${input.modelCacheVolumes} x ${input.modelCacheGiB} GiB model cache + ${input.cpuCacheGiB} GiB CPU cache${stateGiB ? ` + ${stateGiB} GiB of state claims` : ""} at $${VOLUME_PRICE_PER_GIB_MONTH}/GiB-month (billed while detached)`,
      monthlyUsd: round2(volumeGiB * VOLUME_PRICE_PER_GIB_MONTH),
      hourlyUsd: (volumeGiB * VOLUME_PRICE_PER_GIB_MONTH) / HOURS_PER_MONTH,
    });
  if (input.gpuImageGB) {
    // DigitalOcean bills a snapshot by the data it holds, per GiB-month (shared/FACTS.md).
    const gib = gbToGiB(input.gpuImageGB);
    lines.push({
      item: "GPU image snapshot",
      detail: `the baked GPU image, about ${input.gpuImageGB.toFixed(1)} GB ⚠ (estimated: base image + the vLLM image unpacked) at $${SNAPSHOT_PRICE_PER_GIB_MONTH}/GiB-month`,
      monthlyUsd: round2(gib * SNAPSHOT_PRICE_PER_GIB_MONTH),
      hourlyUsd: (gib * SNAPSHOT_PRICE_PER_GIB_MONTH) / HOURS_PER_MONTH,
    });
  }
  const monthlyUsd = round2(lines.reduce((sum, l) => sum + l.monthlyUsd, 0));
  const baseHourly = lines.filter((l) => l.item !== "GPU nodes").reduce((sum, l) => sum + l.hourlyUsd, 0);
  const gpuHourly = lines.find((l) => l.item === "GPU nodes")?.hourlyUsd ?? 0;

  const seedComparison = [];
  if (input.cpuSize.slug === "c-4") {
    seedComparison.push({
      item: "c-4 per month",
      seed: `$${SEED_FIGURES.c4MonthlyUsd}`,
      ours: `$${input.cpuSize.pricePerMonth}`,
      why: "DigitalOcean lists c-4 (4 dedicated vCPU, 8 GiB) at $84/month; $24 matches no c-4 price.",
    });
  }
  if (input.gpu && input.gpu.size.slug === "gpu-h100x1-80gb") {
    seedComparison.push({
      item: "H100 per hour",
      seed: `$${SEED_FIGURES.h100HourlyUsd}`,
      ours: `$${input.gpu.size.pricePerHour}`,
      why: "DigitalOcean's pricing page (2025-04 to 2026-05) lists $3.39/h for one H100.",
    });
  }
  return {
    lines,
    monthlyUsd,
    hourlyNowUsd: round2(baseHourly + (input.gpu?.on ? gpuHourly : 0)),
    hourlyGpuOnUsd: round2(baseHourly + gpuHourly),
    seedComparison,
  };
}
