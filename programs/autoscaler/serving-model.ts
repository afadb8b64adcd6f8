import { COLD_START, REPLICA_THROUGHPUT, TYPICAL_REQUEST, VLLM_MAX_NUM_SEQS } from "../../stacks/catalogue/serving";
import { GB_PER_GIB } from "../../stacks/catalogue/storage";
import type { HubConfig } from "../../stacks/hub-config";
import { parseWindows } from "../../stacks/windows";
import type { PolicyConfig } from "./types";

/**
 * The GPU replica as the autoscaler and the simulator see it: how long a wake-up takes (and how
 * much of it is billed), how many sequences it holds, how fast it works. Built from the stack's
 * HubConfig and the catalogue figures (stacks/catalogue/serving.ts); every figure can be
 * overridden, and each stage says where its number came from.
 */
export interface ColdStartStage {
  readonly name: string;
  readonly seconds: number;
  readonly how: string;
  /** No source gave this figure for this setup. */
  readonly unverified: boolean;
}

export interface ServingModel {
  readonly gpuSize: string;
  readonly nodeHourlyUsd: number;
  readonly coldStart: {
    readonly stages: readonly ColdStartStage[];
    /** Wake request → the replica takes traffic. */
    readonly totalSeconds: number;
    /** The unbilled head: the pipeline until DigitalOcean creates the droplet. */
    readonly pipelineSeconds: number;
    /** Droplet created → the replica takes traffic: billed while nothing is served. */
    readonly billedSeconds: number;
    /** The `pulumi up` that creates the node ends once its containers start (weights still loading): the stack lock is held until then. */
    readonly changeSeconds: number;
    readonly destroySeconds: number;
  };
  readonly replica: {
    /** KV-cache tokens one replica holds (stacks/fit.ts: the room beside weights and overhead). */
    readonly kvTokens: number;
    readonly maxNumSeqs: number;
    readonly typicalInputTokens: number;
    readonly typicalOutputTokens: number;
    /** Sequences of typical length held at once: the "100%" of the load rule. */
    readonly concurrentSequences: number;
    /** Prompt + generated tokens per second at saturation. */
    readonly tokensPerSecond: number;
    readonly tokensPerSecondHow: string;
    readonly tokensPerSecondUnverified: boolean;
  };
}

export interface ServingOverrides {
  readonly coldStartSeconds?: number;
  readonly pipelineSeconds?: number;
  readonly replicaTokensPerSecond?: number;
  readonly typicalInputTokens?: number;
  readonly typicalOutputTokens?: number;
}

const mbps = (gb: number, rateMBps: number) => (gb * 1000) / rateMBps;

export function servingModel(hub: HubConfig, overrides: ServingOverrides = {}): { ok: true; model: ServingModel } | { ok: false; reason: string } {
  if (!hub.gpu || hub.coder.backend !== "vllm") return { ok: false, reason: `the ${hub.tier} tier runs no GPU coder, so there is nothing to scale (use a gpu, hybrid or multigpu stack)` };
  const coder = hub.coder;
  const size = hub.gpu.size;
  const c = COLD_START;
  const pullSeconds = (c.imageCompressedGB.value * 8) / c.networkGbps.value + mbps(c.imageUnpackedGB.value, c.imageExtractMBps.value);
  const weightsGB = coder.weights.diskGB;
  const stages: ColdStartStage[] = [
    { name: "pipeline", seconds: overrides.pipelineSeconds ?? c.pipeline.value, how: overrides.pipelineSeconds !== undefined ? "--pipeline-s" : c.pipeline.source.source, unverified: overrides.pipelineSeconds === undefined },
    { name: "droplet create", seconds: c.dropletCreate.value, how: c.dropletCreate.source.source, unverified: !c.dropletCreate.source.verified },
    { name: "cloud-init", seconds: c.cloudInit.value, how: c.cloudInit.source.source, unverified: !c.cloudInit.source.verified },
    { name: "image pull", seconds: pullSeconds, how: `${c.imageCompressedGB.value} GB at ${c.networkGbps.value} Gbit/s + unpack ${c.imageUnpackedGB.value} GB at ${c.imageExtractMBps.value} MB/s`, unverified: true },
    { name: "weights from volume", seconds: mbps(weightsGB, c.volumeReadMBps.value), how: `${weightsGB} GB (${coder.weights.modelId}, read in full${coder.weights.quantization === "8bit" ? " before FP8 conversion" : ""}) at ${c.volumeReadMBps.value} MB/s`, unverified: !c.volumeReadMBps.source.verified },
    { name: "engine start", seconds: c.engineStart.value, how: c.engineStart.source.source, unverified: !c.engineStart.source.verified },
    { name: "first health check", seconds: c.routeHealthCheck.value, how: c.routeHealthCheck.source.source, unverified: !c.routeHealthCheck.source.verified },
  ];
  let total = stages.reduce((sum, s) => sum + s.seconds, 0);
  const pipelineSeconds = stages[0].seconds;
  if (overrides.coldStartSeconds !== undefined) total = overrides.coldStartSeconds;
  const changeSeconds = Math.min(total, pipelineSeconds + stages[1].seconds + stages[2].seconds + stages[3].seconds);

  const fit = coder.fit;
  const kvRoomGB = fit.availablePerGpuGB - fit.weightsPerGpuGB - fit.overheadGB;
  const kvTokens = Math.floor(kvRoomGB / (fit.kvPerGpuGB / coder.maxContext));
  const gpuGiB = size.gpuMemoryGBPerGpu / GB_PER_GIB;
  const maxNumSeqs = gpuGiB >= VLLM_MAX_NUM_SEQS.largeGpuMinGiB && size.gpuModel !== "A100" ? VLLM_MAX_NUM_SEQS.large : VLLM_MAX_NUM_SEQS.small;
  const input = overrides.typicalInputTokens ?? TYPICAL_REQUEST.inputTokens;
  const output = overrides.typicalOutputTokens ?? TYPICAL_REQUEST.outputTokens;
  const concurrentSequences = Math.max(1, Math.min(maxNumSeqs, Math.floor(kvTokens / (input + output))));

  const measured = REPLICA_THROUGHPUT.find((t) => t.gpuModel === size.gpuModel && Math.abs(t.paramsB - coder.model.paramsB) / t.paramsB < 0.1);
  const reference = REPLICA_THROUGHPUT[0];
  let tokensPerSecond: number;
  let how: string;
  if (overrides.replicaTokensPerSecond !== undefined) {
    tokensPerSecond = overrides.replicaTokensPerSecond;
    how = "--replica-tokens-per-s";
  } else if (measured) {
    tokensPerSecond = measured.tokensPerSecond.value;
    how = measured.tokensPerSecond.source.source;
  } else {
    // No measurement for this model and GPU: scale the one we have by parameter count and GPU count.
    tokensPerSecond = (reference.tokensPerSecond.value * reference.paramsB * size.gpuCount) / coder.model.paramsB;
    how = `extrapolated from ${reference.gpuModel} ${reference.paramsB}B (${reference.tokensPerSecond.value} tokens/s) by parameters and GPU count; no measurement for ${coder.model.displayName} on ${size.slug}`;
  }
  return {
    ok: true,
    model: {
      gpuSize: size.slug,
      nodeHourlyUsd: size.pricePerHour,
      coldStart: { stages, totalSeconds: total, pipelineSeconds, billedSeconds: Math.max(0, total - pipelineSeconds), changeSeconds, destroySeconds: c.destroy.value },
      replica: { kvTokens, maxNumSeqs, typicalInputTokens: input, typicalOutputTokens: output, concurrentSequences, tokensPerSecond, tokensPerSecondHow: how, tokensPerSecondUnverified: overrides.replicaTokensPerSecond === undefined },
    },
  };
}

/** What is always on (CPU node, volumes) a month: the budget covers the whole month, so this comes off the top. */
export const fixedMonthlyUsd = (hub: HubConfig): number => hub.cost.lines.filter((l) => l.item !== "GPU nodes").reduce((sum, l) => sum + l.monthlyUsd, 0);

/** The stack's autoscaling settings and its serving model, as the decision takes them. */
export function policyConfig(hub: HubConfig, model: ServingModel): PolicyConfig {
  const s = hub.settings;
  const fixedMonthly = fixedMonthlyUsd(hub);
  return {
    minNodes: s.gpuMinNodes,
    maxNodes: s.gpuMaxNodes,
    idleSeconds: s.gpuIdleMinutes * 60,
    targetLoad: s.gpuTargetLoadPercent / 100,
    predictive: s.gpuPredictiveWake,
    windows: parseWindows(s.gpuWindows).windows,
    replicaCapacity: model.replica.concurrentSequences,
    coldStartSeconds: model.coldStart.totalSeconds,
    restartCostSeconds: model.coldStart.billedSeconds + model.coldStart.destroySeconds,
    nodeHourlyUsd: model.nodeHourlyUsd,
    gpuBudgetUsd: Math.max(0, hub.budgetUsd - fixedMonthly),
  };
}
