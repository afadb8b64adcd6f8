import { createHash } from "node:crypto";
import { GpuBootImage, gpuBootImage } from "../../services/gpu-image";
import { gatewayPorts } from "../../infra/services";
import { hubServiceSpecs } from "../../services/index";
import { imageName } from "../../services/spec";
import { coderServeArgs, ocrServeArgs } from "../../services/vllm";
import type { HubConfig, Problems, StackOverrides, Warning } from "../../stacks";
import { SETTING_NAMES } from "../../stacks";
import type { CostEstimate } from "../../stacks/cost";
import { describeSshExposure, sshExposure, SshExposure } from "../../stacks/ssh-exposure";
import type { RecordedResource } from "./mock-engine";
import { kubernetesSummary, type KubernetesSummary } from "../../infra/kubernetes/summary";
import { STAND_IN_NOTE } from "./mock-engine";

/**
 * The machine-readable plan (`npm run plan -- --json`). CI cost comments and policy checks read
 * it, so its shape is versioned: add fields freely, bump schemaVersion to remove or rename one.
 */
export const PLAN_SCHEMA_VERSION = 1;

export interface GpuFitRow {
  readonly service: "coder" | "ocr";
  readonly node: string;
  readonly size: string;
  readonly model: string;
  readonly format: string;
  readonly tensorParallel: number;
  readonly share: number;
  readonly weightsPerGpuGB: number;
  readonly kvPerGpuGB: number;
  readonly overheadGB: number;
  readonly neededPerGpuGB: number;
  readonly availablePerGpuGB: number;
  readonly fullContextSequences: number;
}

export interface PlannedContainer {
  readonly node: string;
  readonly name: string;
  readonly image: string;
  readonly gpu?: string;
  readonly memoryLimitMiB?: number;
  readonly published: readonly string[];
}

export interface PlanArtifact {
  readonly kind: string;
  readonly node: string;
  /** Relative to the --out directory. */
  readonly path: string;
  readonly content: string;
}

export interface PlanDocument {
  readonly schemaVersion: number;
  readonly ok: true;
  readonly stack: string;
  readonly configFile: string;
  readonly tier: string;
  readonly region: string;
  readonly settings: Record<string, { readonly value: unknown; readonly source: "stack file" | "preset" }>;
  readonly warnings: readonly Warning[];
  readonly nodes: HubConfig["nodes"];
  readonly fit: {
    readonly gpu: readonly GpuFitRow[];
    readonly cpu: readonly {
      readonly node: string;
      readonly size: string;
      readonly ramNeededGiB: number;
      readonly ramGiB: number;
    }[];
    readonly modelCache: HubConfig["modelCache"];
  };
  readonly cost: CostEstimate;
  readonly vllmArgs: readonly { readonly node: string; readonly service: string; readonly args: readonly string[] }[];
  /** The containers on the nodes that exist now. */
  readonly containers: readonly PlannedContainer[];
  readonly resources: readonly Omit<RecordedResource, "rawInputs">[];
  readonly artifacts: readonly Omit<PlanArtifact, "content">[];
  readonly outputs: Record<string, unknown>;
  readonly notes: readonly string[];
  /** The k8s tier's cluster, scaling rule and volume binding (absent in the droplet tiers). */
  readonly kubernetes?: KubernetesSummary;
  /** What a GPU node boots (services/gpu-image.ts): the baked snapshot when current, else the base image. Absent without a GPU. */
  readonly gpuImage?: GpuBootImage;
  /** Who may reach port 22 on the nodes (absent for the local and k8s tiers, which have none). */
  readonly ssh?: {
    readonly exposure: SshExposure["kind"];
    /** adminCidrs; empty for `deployer`, whose address is found at deploy time. */
    readonly sources: readonly string[];
    readonly description: string;
  };
}

export interface FailedPlanDocument {
  readonly schemaVersion: number;
  readonly ok: false;
  readonly stack: string;
  readonly configFile: string;
  /** Never empty: a refusal always names what to fix. */
  readonly problems: Problems;
  readonly warnings: readonly Warning[];
}

export function gpuFitRows(hub: HubConfig): GpuFitRow[] {
  const rows: GpuFitRow[] = [];
  if (!hub.gpu) return rows;
  const node = hub.nodes.find((n) => n.kind === "gpu")?.name ?? "gpu-0";
  const round = (n: number) => Math.round(n * 100) / 100;
  if (hub.coder.backend === "vllm") {
    const { fit } = hub.coder;
    rows.push({
      service: "coder",
      node,
      size: hub.gpu.size.slug,
      model: hub.coder.weights.modelId,
      format: hub.coder.weights.format,
      tensorParallel: hub.coder.tensorParallel,
      share: hub.coder.share,
      weightsPerGpuGB: round(fit.weightsPerGpuGB),
      kvPerGpuGB: round(fit.kvPerGpuGB),
      overheadGB: fit.overheadGB,
      neededPerGpuGB: round(fit.neededPerGpuGB),
      availablePerGpuGB: round(fit.availablePerGpuGB),
      fullContextSequences: fit.fullContextSequences,
    });
  }
  if (hub.ocr.engine === "deepseek-ocr") {
    const { fit } = hub.ocr;
    rows.push({
      service: "ocr",
      node,
      size: hub.gpu.size.slug,
      model: hub.ocr.weights.modelId,
      format: hub.ocr.weights.format,
      tensorParallel: 1,
      share: hub.ocr.share,
      weightsPerGpuGB: round(fit.weightsPerGpuGB),
      kvPerGpuGB: round(fit.kvPerGpuGB),
      overheadGB: fit.overheadGB,
      neededPerGpuGB: round(fit.neededPerGpuGB),
      availablePerGpuGB: round(fit.availablePerGpuGB),
      fullContextSequences: fit.fullContextSequences,
    });
  }
  return rows;
}

export function vllmArgLists(hub: HubConfig): { node: string; service: string; args: string[] }[] {
  const lists: { node: string; service: string; args: string[] }[] = [];
  for (const node of hub.nodes.filter((n) => n.kind === "gpu")) {
    if (hub.coder.backend === "vllm")
      lists.push({ node: node.name, service: "coder", args: coderServeArgs(hub.coder) });
    if (hub.ocr.engine === "deepseek-ocr") lists.push({ node: node.name, service: "ocr", args: ocrServeArgs(hub.ocr) });
  }
  return lists;
}

export function buildPlanDocument(input: {
  stack: string;
  configFile: string;
  hub: HubConfig;
  overrides: StackOverrides;
  resources: readonly RecordedResource[];
  artifacts: readonly PlanArtifact[];
  outputs: Record<string, unknown>;
}): PlanDocument {
  const { hub, overrides } = input;
  const settings: PlanDocument["settings"] = {};
  for (const name of SETTING_NAMES) {
    const value = hub.settings[name];
    if (value === undefined) continue;
    settings[name] = { value, source: overrides[name] !== undefined ? "stack file" : "preset" };
  }
  return {
    schemaVersion: PLAN_SCHEMA_VERSION,
    ok: true,
    stack: input.stack,
    configFile: input.configFile,
    tier: hub.tier,
    region: hub.region,
    settings,
    warnings: hub.warnings,
    nodes: hub.nodes,
    fit: {
      gpu: gpuFitRows(hub),
      cpu: hub.nodes
        .filter((n) => n.kind === "cpu")
        .map((n) => ({
          node: n.name,
          size: n.size,
          ramNeededGiB: Math.round((n.ramNeededGiB ?? 0) * 100) / 100,
          ramGiB: n.ramGiB ?? 0,
        })),
      modelCache: hub.modelCache,
    },
    cost: hub.cost,
    vllmArgs: vllmArgLists(hub),
    containers: hubServiceSpecs(hub).map((spec) => ({
      node: spec.node,
      name: spec.name,
      image: imageName(spec.image),
      gpu: spec.gpu ? `${spec.gpu.vendor}, all GPUs` : undefined,
      memoryLimitMiB: spec.memoryLimitMiB,
      published:
        hub.tier === "k8s"
          ? kubernetesPublished(spec.name)
          : spec.publishOnPrivateIp
            ? [`private:${spec.port}`]
            : gatewayPorts(hub.tier === "local" ? "local" : "droplet")
                .filter((p) => p.container === spec.name)
                .map((p) =>
                  hub.tier === "local"
                    ? `127.0.0.1:${p.port}`
                    : p.onAllInterfaces
                      ? String(p.port)
                      : `private:${p.port}`,
                ),
    })),
    resources: input.resources.map(({ rawInputs: _raw, ...rest }) => ({
      ...rest,
      inputs: abbreviateLongStrings(rest.inputs) as Record<string, unknown>,
    })),
    // Named, not `...rest`: that would read (and render) every file's content.
    artifacts: input.artifacts.map(({ kind, node, path }) => ({ kind, node, path })),
    outputs: input.outputs,
    notes: [STAND_IN_NOTE],
    ...(hub.kubernetes ? { kubernetes: kubernetesSummary(hub) } : {}),
    ...(hub.tier === "local" || hub.tier === "k8s" ? {} : { ssh: sshSummary(hub.gateway.adminCidrs) }),
    ...gpuImageOf(hub),
  };
}

function gpuImageOf(hub: HubConfig): { gpuImage?: GpuBootImage } {
  const gpuImage = hub.tier === "k8s" ? undefined : gpuBootImage(hub);
  return gpuImage ? { gpuImage } : {};
}

/** In the cluster only the gateway is reachable from outside, through the load balancer's 80 and 443. */
const kubernetesPublished = (name: string): string[] => (name === "gateway" ? ["80 443 (load balancer)"] : []);

function sshSummary(adminCidrs: readonly string[]): NonNullable<PlanDocument["ssh"]> {
  const exposure = sshExposure(adminCidrs);
  return {
    exposure: exposure.kind,
    sources: exposure.kind === "deployer" ? [] : exposure.cidrs,
    description: describeSshExposure(exposure),
  };
}

/** Above this, a string input (a bundled program, a long script) is shown by size and hash. */
export const LONG_INPUT_CHARS = 8192;

function abbreviateLongStrings(value: unknown): unknown {
  if (typeof value === "string")
    return value.length > LONG_INPUT_CHARS
      ? `(${value.length} characters, sha256:${createHash("sha256").update(value).digest("hex").slice(0, 16)})`
      : value;
  if (Array.isArray(value)) return value.map(abbreviateLongStrings);
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, abbreviateLongStrings(v)]));
  return value;
}
