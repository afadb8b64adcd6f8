import {
  ActuatorKind,
  COLD_START,
  PIPELINES,
  REPLICA_THROUGHPUT,
  TYPICAL_REQUEST,
  VLLM_MAX_NUM_SEQS,
} from "../../stacks/catalogue/serving";
import { GB_PER_GIB } from "../../stacks/catalogue/storage";
import type { HubConfig, VllmCoder } from "../../stacks/hub-config";
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
    readonly image: BootImage;
    readonly actuator: ActuatorKind | "github-before";
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

/** What a GPU node boots: DigitalOcean's GPU base image (cloud-init installs Docker, the image is pulled), or the baked snapshot. */
export type BootImage = "base" | "baked";

/** A measured stage (from a `--stages` file): replaces the model stages it covers. */
export interface MeasuredStage {
  /** Model stage names, in order; more than one when the measurement could not tell them apart. */
  readonly covers: readonly string[];
  readonly seconds: number;
  readonly how: string;
}

export interface ServingOverrides {
  readonly coldStartSeconds?: number;
  readonly pipelineSeconds?: number;
  readonly replicaTokensPerSecond?: number;
  readonly typicalInputTokens?: number;
  readonly typicalOutputTokens?: number;
  /** @default - "baked" when the stack names a GPU snapshot (gpuSnapshotId), else "base" */
  readonly image?: BootImage;
  /** @default - the stack's autoscalerActuator */
  readonly actuator?: ActuatorKind | "github-before";
  /** Measured stages, by the model's stage names. */
  readonly measured?: readonly MeasuredStage[];
  /** Model the weights as before the pre-quantized checkpoint and the prefetch: the BF16 checkpoint, FP8 online, mmap reads (for comparisons). */
  readonly bf16OnlineWeights?: boolean;
}

/** The model's stage names, in the order a wake goes through them. */
export const STAGE_NAMES = [
  "pipeline",
  "droplet create",
  "cloud-init",
  "image pull",
  "weights from volume",
  "engine start",
  "first health check",
] as const;

const mbps = (gb: number, rateMBps: number) => (gb * 1000) / rateMBps;

/** Seconds to read `gb` from a volume that bursts to `burstMBps` for `burstSeconds`, then runs at `baseMBps`. */
export function volumeReadSeconds(gb: number, baseMBps: number, burstMBps: number, burstSeconds: number): number {
  const burstGB = (burstMBps * burstSeconds) / 1000;
  return gb <= burstGB ? mbps(gb, burstMBps) : burstSeconds + mbps(gb - burstGB, baseMBps);
}

/** Whether a stack boots GPU nodes from a baked snapshot, as far as its settings say (services/gpu-image.ts also checks it is current). */
export const bakedImageConfigured = (hub: HubConfig): boolean => hub.settings.gpuSnapshotId !== undefined;

/** The modelled cold start of one GPU wake, stage by stage (before any measured stage replaces one). */
export function coldStartStages(
  hub: HubConfig & { coder: VllmCoder },
  image: BootImage,
  actuator: ActuatorKind | "github-before",
  bf16OnlineWeights = false,
): ColdStartStage[] {
  const c = COLD_START;
  const coder: VllmCoder = bf16OnlineWeights
    ? {
        ...hub.coder,
        weights: {
          ...hub.coder.weights,
          modelId: hub.coder.model.repo,
          diskGB: hub.coder.model.weightsGB,
          flags: ["--quantization", "fp8"],
          format: "FP8 (quantized online from the BF16 checkpoint)",
        },
        loader: { strategy: "default", flags: [], why: "as before" },
      }
    : hub.coder;
  const pipeline = PIPELINES[actuator];
  const baked = image === "baked";
  const pullSeconds =
    (c.imageCompressedGB.value * 8) / c.networkGbps.value + mbps(c.imageUnpackedGB.value, c.imageExtractMBps.value);
  const weightsGB = coder.weights.diskGB;
  const prefetch = coder.loader.strategy === "prefetch";
  const weightsSeconds = prefetch
    ? volumeReadSeconds(weightsGB, c.volumeReadMBps.value, c.volumeBurstMBps.value, c.volumeBurstSeconds.value)
    : mbps(weightsGB, c.volumeReadMBps.value);
  const online = coder.weights.flags.includes("fp8");
  const engine = online || coder.weights.quantization !== "8bit" ? c.engineStart : c.engineStartPrequantized;
  const create = baked ? c.dropletCreateFromSnapshot : c.dropletCreate;
  return [
    {
      name: "pipeline",
      seconds: pipeline.stages.reduce((sum, st) => sum + st.figure.value, 0),
      how: `${pipeline.label}: ${pipeline.stages.map((st) => `${st.name} ${st.figure.value} s`).join(" + ")}`,
      unverified: pipeline.stages.some((st) => !st.figure.source.verified),
    },
    {
      name: "droplet create",
      seconds: create.value,
      how: `${baked ? "from the baked snapshot; " : ""}${create.source.source}`,
      unverified: !create.source.verified,
    },
    baked
      ? {
          name: "cloud-init",
          seconds: c.cloudInitBaked.value,
          how: `per-node part only: ${c.cloudInitBaked.source.source}`,
          unverified: !c.cloudInitBaked.source.verified,
        }
      : {
          name: "cloud-init",
          seconds: c.cloudInit.value,
          how: c.cloudInit.source.source,
          unverified: !c.cloudInit.source.verified,
        },
    baked
      ? {
          name: "image pull",
          seconds: 0,
          how: "the pinned images are in the baked snapshot; the Docker provider finds them locally",
          unverified: false,
        }
      : {
          name: "image pull",
          seconds: pullSeconds,
          how: `${c.imageCompressedGB.value} GB at ${c.networkGbps.value} Gbit/s + unpack ${c.imageUnpackedGB.value} GB at ${c.imageExtractMBps.value} MB/s`,
          unverified: true,
        },
    {
      name: "weights from volume",
      seconds: weightsSeconds,
      how: `${weightsGB} GB (${coder.weights.modelId}, ${coder.weights.format}${online ? ", read in full before FP8 conversion" : ""}) ${prefetch ? `prefetched: ${c.volumeBurstMBps.value} MB/s for the first ${c.volumeBurstSeconds.value} s, then ${c.volumeReadMBps.value} MB/s` : `at ${c.volumeReadMBps.value} MB/s`}`,
      unverified: !c.volumeReadMBps.source.verified,
    },
    { name: "engine start", seconds: engine.value, how: engine.source.source, unverified: !engine.source.verified },
    {
      name: "first health check",
      seconds: c.routeHealthCheck.value,
      how: c.routeHealthCheck.source.source,
      unverified: !c.routeHealthCheck.source.verified,
    },
  ];
}

/** Replaces modelled stages by measured ones; a measurement covering several stages becomes one stage. */
export function applyMeasured(
  stages: readonly ColdStartStage[],
  measured: readonly MeasuredStage[],
): { stages: ColdStartStage[]; pipelineSeconds: number } {
  const names = stages.map((s) => s.name);
  let out = [...stages];
  let pipelineSeconds = stages[0].seconds;
  for (const m of measured) {
    const at = out.findIndex((s) => s.name === m.covers[0] || s.name.split(" + ")[0] === m.covers[0]);
    const covered = out.slice(at, at + m.covers.length);
    if (at < 0 || covered.map((s) => s.name).join(" + ") !== m.covers.join(" + ")) {
      throw new Error(
        `measured stage ${JSON.stringify(m.covers.join(" + "))} does not name consecutive model stages (stages: ${names.join(", ")})`,
      );
    }
    if (m.covers[0] === "pipeline") {
      // The pipeline is unbilled; measured together with the droplet's creation, it keeps its modelled share.
      pipelineSeconds = m.covers.length === 1 ? m.seconds : Math.min(m.seconds, pipelineSeconds);
    }
    out = [
      ...out.slice(0, at),
      { name: m.covers.join(" + "), seconds: m.seconds, how: `measured: ${m.how}`, unverified: false },
      ...out.slice(at + m.covers.length),
    ];
  }
  return { stages: out, pipelineSeconds };
}

export function servingModel(
  hub: HubConfig,
  overrides: ServingOverrides = {},
): { ok: true; model: ServingModel } | { ok: false; reason: string } {
  if (!hub.gpu || hub.coder.backend !== "vllm")
    return {
      ok: false,
      reason: `the ${hub.tier} tier runs no GPU coder, so there is nothing to scale (use a gpu, hybrid or multigpu stack)`,
    };
  const coder = hub.coder;
  const size = hub.gpu.size;
  const c = COLD_START;
  const image = overrides.image ?? (bakedImageConfigured(hub) ? "baked" : "base");
  const actuator = overrides.actuator ?? hub.settings.autoscalerActuator;
  let stages: ColdStartStage[] = coldStartStages({ ...hub, coder }, image, actuator, overrides.bf16OnlineWeights);
  let pipelineSeconds = stages[0].seconds;
  if (overrides.measured?.length) {
    try {
      ({ stages, pipelineSeconds } = applyMeasured(stages, overrides.measured));
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  }
  if (overrides.pipelineSeconds !== undefined) {
    pipelineSeconds = overrides.pipelineSeconds;
    stages = stages.map((st) =>
      st.name === "pipeline" ? { ...st, seconds: pipelineSeconds, how: "--pipeline-s", unverified: false } : st,
    );
  }
  let total = stages.reduce((sum, st) => sum + st.seconds, 0);
  if (overrides.coldStartSeconds !== undefined) total = overrides.coldStartSeconds;
  // The `pulumi up` holds the stack lock until the containers start: the stages before the weights.
  const untilWeights = stages.findIndex((st) => st.name.startsWith("weights") || st.name.includes("weights"));
  const changeSeconds = Math.min(
    total,
    stages.slice(0, untilWeights < 0 ? 4 : untilWeights).reduce((sum, st) => sum + st.seconds, 0),
  );

  const fit = coder.fit;
  const kvRoomGB = fit.availablePerGpuGB - fit.weightsPerGpuGB - fit.overheadGB;
  const kvTokens = Math.floor(kvRoomGB / (fit.kvPerGpuGB / coder.maxContext));
  const gpuGiB = size.gpuMemoryGBPerGpu / GB_PER_GIB;
  const maxNumSeqs =
    gpuGiB >= VLLM_MAX_NUM_SEQS.largeGpuMinGiB && size.gpuModel !== "A100"
      ? VLLM_MAX_NUM_SEQS.large
      : VLLM_MAX_NUM_SEQS.small;
  const input = overrides.typicalInputTokens ?? TYPICAL_REQUEST.inputTokens;
  const output = overrides.typicalOutputTokens ?? TYPICAL_REQUEST.outputTokens;
  const concurrentSequences = Math.max(1, Math.min(maxNumSeqs, Math.floor(kvTokens / (input + output))));

  const measured = REPLICA_THROUGHPUT.find(
    (t) => t.gpuModel === size.gpuModel && Math.abs(t.paramsB - coder.model.paramsB) / t.paramsB < 0.1,
  );
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
      coldStart: {
        stages,
        totalSeconds: total,
        pipelineSeconds,
        billedSeconds: Math.max(0, total - pipelineSeconds),
        changeSeconds,
        destroySeconds: c.destroy.value,
        image,
        actuator,
      },
      replica: {
        kvTokens,
        maxNumSeqs,
        typicalInputTokens: input,
        typicalOutputTokens: output,
        concurrentSequences,
        tokensPerSecond,
        tokensPerSecondHow: how,
        tokensPerSecondUnverified: overrides.replicaTokensPerSecond === undefined,
      },
    },
  };
}

/** What is always on (CPU node, volumes) a month: the budget covers the whole month, so this comes off the top. */
export const fixedMonthlyUsd = (hub: HubConfig): number =>
  hub.cost.lines.filter((l) => l.item !== "GPU nodes").reduce((sum, l) => sum + l.monthlyUsd, 0);

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
