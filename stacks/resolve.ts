import {
  CPU_SIZES,
  CpuSize,
  findCpuSize,
  findGpuSize,
  GPU_SIZES,
  GpuSize,
  HOURS_PER_MONTH,
  LOCAL_MACHINE,
  REGIONS,
} from "./catalogue/droplets";
import { COLD_START, GPU_IMAGE_BASE_GB } from "./catalogue/serving";
import { CPU_SERVICE_RAM, findModel, MODELS, ModelEntry, TTS_MODELS, WHISPER_MODELS } from "./catalogue/models";
import { gbToGiB, GB_PER_GIB, VOLUME_MAX_GIB } from "./catalogue/storage";
import { resolveSandbox, SANDBOX_FRONT_RAM_GIB, SANDBOX_NODE_NAME } from "./sandbox";
import { estimateCost } from "./cost";
import { fitOnGpu, GpuFit, GpuFitInput, llamaCppRamGiB, MAX_COMBINED_GPU_SHARE, maxContextThatFits } from "./fit";
import {
  CODER_SERVED_NAME,
  COMPILE_CACHE_GIB,
  CPU_MODEL_FILES_GIB,
  CPU_NODE_NAME,
  DeepSeekOcr,
  FALLBACK_CONTEXT,
  gpuNodeName,
  HubConfig,
  MAX_PIN_MS,
  LlamaCppCoder,
  MonitoringPlan,
  NodePlan,
  VllmCoder,
  Workload,
} from "./hub-config";
import { didYouMean } from "./load";
import { embeddingsFilesGiB, embeddingsWorkloads, resolveEmbeddings } from "./embeddings";
import { PRESETS, ResolvedSettings } from "./presets";
import { cap, isNonEmpty, problem, Problem, Problems, Warning } from "./problems";
import { mapGgufQuantization, mapVllmQuantization, VllmWeights, weightsLoader } from "./quantization";
import { resolveLora } from "./lora";
import { cidrKey, cidrProblem, Quantization, SETTINGS, StackOverrides, Tier } from "./settings";
import { resolveKubernetes } from "./kubernetes";
import { isWholeInternet, sshExposure } from "./ssh-exposure";
import { hoursPerMonth, parseWindows } from "./windows";

export type Resolved = { ok: true; config: HubConfig } | { ok: false; problems: Problems; warnings: Warning[] };

const GPU_TIERS: readonly Tier[] = ["gpu", "hybrid", "multigpu", "k8s"];
const usd = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const gb = (n: number) => `${n.toFixed(1)} GB`;

/** Applies the tier preset under the stack's overrides. An unknown tier falls back to hybrid so the other checks still run. */
export function applyPreset(overrides: StackOverrides): ResolvedSettings {
  const tier = overrides.tier ?? "hybrid";
  const merged: Record<string, unknown> = { ...PRESETS[tier] };
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
  return merged as ResolvedSettings;
}

/** GPU sizes, cheapest first, on which `test` passes. */
function sizesWhere(test: (s: GpuSize) => boolean, region?: string): GpuSize[] {
  return GPU_SIZES.filter((s) => (region === undefined || s.regions.includes(region)) && test(s)).sort(
    (a, b) => a.pricePerHour * a.gpuCount - b.pricePerHour * b.gpuCount || a.pricePerHour - b.pricePerHour,
  );
}

interface Ctx {
  readonly s: ResolvedSettings;
  readonly problems: Problem[];
  readonly warnings: Warning[];
}

function checkTierShape({ s, problems }: Ctx, gpu: GpuSize | undefined): void {
  if (s.tier === "cpu" || s.tier === "local") {
    if (s.gpuCount > 0)
      problems.push(
        problem(
          ["gpuCount", "tier"],
          s.gpuCount,
          `the ${s.tier} tier runs no GPU.`,
          "Set gpuCount to 0, or use tier gpu, hybrid or multigpu.",
        ),
      );
    if (s.gpuEnabled)
      problems.push(
        problem(
          ["gpuEnabled", "tier"],
          true,
          `the ${s.tier} tier has no GPU to turn on.`,
          "Use tier hybrid for an on-demand GPU.",
        ),
      );
    return;
  }
  if (s.gpuCount < 1)
    problems.push(
      problem(
        ["gpuCount", "tier"],
        s.gpuCount,
        `the ${s.tier} tier serves the coder from GPU droplets and needs at least one.`,
        "Set gpuCount to 1 or more, or use tier cpu.",
      ),
    );
  // k8s: the GPU pool scales on demand (stacks/kubernetes.ts checks its own settings).
  if (s.tier === "k8s") {
    // nothing more: hours are the expected on-demand node-hours, as in hybrid
  } else if (s.tier !== "hybrid") {
    if (!s.gpuEnabled)
      problems.push(
        problem(
          ["gpuEnabled", "tier"],
          false,
          `the ${s.tier} tier keeps its GPU always on.`,
          "Use tier hybrid to turn the GPU on and off.",
        ),
      );
    if (s.gpuHoursPerMonth !== HOURS_PER_MONTH)
      problems.push(
        problem(
          ["gpuHoursPerMonth", "tier"],
          s.gpuHoursPerMonth,
          `the ${s.tier} tier is always on, so it is billed ${HOURS_PER_MONTH} h a month.`,
          "Remove gpuHoursPerMonth, or use tier hybrid for fewer hours.",
        ),
      );
  } else if (s.gpuHoursPerMonth < 1) {
    problems.push(
      problem(
        "gpuHoursPerMonth",
        s.gpuHoursPerMonth,
        "the hybrid tier's cost estimate needs the GPU hours you expect to use a month.",
        "Set it to your expected hours, e.g. 40 for five 8-hour days.",
      ),
    );
  }
  if (!gpu) return;
  if (s.tier === "multigpu" && gpu.gpuCount < 8) {
    problems.push(
      problem(
        ["gpuSize", "tier"],
        s.gpuSize,
        `the multigpu tier is one 8-GPU droplet; ${s.gpuSize} has ${gpu.gpuCount} GPU.`,
        `Use ${GPU_SIZES.filter((g) => g.gpuCount === 8)
          .map((g) => g.slug)
          .join(", ")}, or tier gpu/hybrid.`,
      ),
    );
  }
  // DOKS node pools come in both shapes; vLLM spans every GPU of a node.
  if (s.tier !== "multigpu" && s.tier !== "k8s" && gpu.gpuCount > 1) {
    problems.push(
      problem(
        ["gpuSize", "tier"],
        s.gpuSize,
        `the ${s.tier} tier runs single-GPU droplets; ${s.gpuSize} has ${gpu.gpuCount} GPUs.`,
        "Use tier multigpu for 8-GPU droplets, or a single-GPU size.",
      ),
    );
  }
}

/** Grafana follows Prometheus unless set: it has nothing to show without it. */
export function grafanaEnabled(s: ResolvedSettings): boolean {
  return s.grafana ?? s.monitoring;
}

function checkGrafana({ s, problems }: Ctx): void {
  if (s.grafana === true && !s.monitoring)
    problems.push(
      problem(
        ["grafana", "monitoring"],
        true,
        "Grafana shows what Prometheus collects, and monitoring is off, so every dashboard would be empty.",
        "Turn monitoring on, or remove grafana (it then follows monitoring).",
      ),
    );
}

/** The autoscaler's range: a floor the tier can honour, a ceiling at or above the nodes running now. */
function checkAutoscaling({ s, problems }: Ctx): void {
  if (s.tier === "cpu" || s.tier === "local") {
    if (s.gpuMinNodes > 0 || s.gpuMaxNodes > 0)
      problems.push(
        problem(
          ["gpuMinNodes", "gpuMaxNodes", "tier"],
          `${s.gpuMinNodes}..${s.gpuMaxNodes}`,
          `the ${s.tier} tier runs no GPU, so there is nothing to scale.`,
          "Remove gpuMinNodes and gpuMaxNodes, or use tier hybrid for an on-demand GPU.",
        ),
      );
    if (s.autoscaler)
      problems.push(
        problem(
          ["autoscaler", "tier"],
          true,
          `the ${s.tier} tier runs no GPU, so the autoscaling controller would have nothing to scale.`,
          "Remove autoscaler (or set it to false), or use tier hybrid.",
        ),
      );
    return;
  }
  if (s.gpuMinNodes > s.gpuMaxNodes)
    problems.push(
      problem(
        ["gpuMinNodes", "gpuMaxNodes"],
        `${s.gpuMinNodes} > ${s.gpuMaxNodes}`,
        "the floor is above the ceiling.",
        `Set gpuMaxNodes to ${s.gpuMinNodes} or more, or gpuMinNodes to ${s.gpuMaxNodes} or less.`,
      ),
    );
  if (s.gpuMaxNodes < 1)
    problems.push(
      problem(
        "gpuMaxNodes",
        s.gpuMaxNodes,
        `the ${s.tier} tier serves the coder from GPU nodes; with no node allowed it could never serve.`,
        "Set gpuMaxNodes to 1 or more, or use tier cpu.",
      ),
    );
  if (s.tier === "hybrid" && s.gpuMinNodes > 0)
    problems.push(
      problem(
        ["gpuMinNodes", "tier"],
        s.gpuMinNodes,
        "a floor of always-on GPU nodes is the gpu tier; hybrid scales to zero.",
        "Use tier gpu (always on, scales above its floor), or keep gpuMinNodes 0 and set gpuWindows for working hours.",
      ),
    );
  if (s.tier !== "hybrid" && s.tier !== "k8s" && s.gpuMinNodes < 1)
    problems.push(
      problem(
        ["gpuMinNodes", "tier"],
        s.gpuMinNodes,
        `the ${s.tier} tier keeps its GPU always on, so its floor is 1.`,
        "Set gpuMinNodes to 1 or more, or use tier hybrid to scale to zero.",
      ),
    );
  if (s.gpuCount > s.gpuMaxNodes && s.gpuMaxNodes >= 1)
    problems.push(
      problem(
        ["gpuCount", "gpuMaxNodes"],
        `${s.gpuCount} > ${s.gpuMaxNodes}`,
        "runs more GPU nodes than the autoscaler may keep; it would remove them at once.",
        `Set gpuMaxNodes to ${s.gpuCount}, or gpuCount to ${s.gpuMaxNodes}.`,
      ),
    );
  if (s.tier !== "hybrid" && s.tier !== "k8s" && s.gpuCount >= 1 && s.gpuCount < s.gpuMinNodes)
    problems.push(
      problem(
        ["gpuCount", "gpuMinNodes"],
        `${s.gpuCount} < ${s.gpuMinNodes}`,
        "runs fewer GPU nodes than the floor.",
        `Set gpuCount to ${s.gpuMinNodes}, or gpuMinNodes to ${s.gpuCount}.`,
      ),
    );
}

/** GPU nodes the stack runs as configured: gpuCount while the GPU exists, 0 while the hybrid GPU is off. */
export const configuredGpuNodes = (s: ResolvedSettings): number =>
  GPU_TIERS.includes(s.tier) && s.gpuEnabled ? s.gpuCount : 0;

/** The baked GPU image is both settings or neither (the build sets them together), on a tier with GPU nodes. */
function checkSnapshot({ s, problems }: Ctx): void {
  const { gpuSnapshotId: id, gpuSnapshotName: name } = s;
  if (id === undefined && name === undefined) return;
  if (id === undefined || name === undefined) {
    problems.push(
      problem(
        ["gpuSnapshotId", "gpuSnapshotName"],
        id ?? name,
        "the baked GPU image needs both its snapshot id and its name (the name tells the plan whether it is current).",
        "Set both with `npm run hub -- gpu image build`, or remove both to boot the GPU base image.",
      ),
    );
    return;
  }
  if (!GPU_TIERS.includes(s.tier))
    problems.push(
      problem(
        ["gpuSnapshotId", "tier"],
        id,
        `the ${s.tier} tier runs no GPU node to boot from it.`,
        "Remove gpuSnapshotId and gpuSnapshotName, or use a GPU tier.",
      ),
    );
}

/**
 * A pin is both settings or neither, on a GPU tier, at the node count the stack runs (the hub
 * command sets all three together; a hand edit that disagrees would have the controller move the
 * GPU against the stack file). An expired pin is ignored, and the plan says so.
 */
function checkPin({ s, problems, warnings }: Ctx, nowMs: number): { nodes: number; untilMs: number } | undefined {
  const { gpuPinNodes: nodes, gpuPinUntil: until } = s;
  // The k8s tier has no pin (stacks/kubernetes.ts says why).
  if ((nodes === undefined && until === undefined) || s.tier === "k8s") return undefined;
  if (nodes === undefined || until === undefined) {
    problems.push(
      problem(
        ["gpuPinNodes", "gpuPinUntil"],
        nodes ?? until,
        "a pin needs both its node count and its end.",
        "Pin with `npm run hub -- gpu on --for 8h` (or `gpu off --for 2h`), or remove both with `npm run hub -- gpu unpin`.",
      ),
    );
    return undefined;
  }
  if (!GPU_TIERS.includes(s.tier)) {
    problems.push(
      problem(
        ["gpuPinNodes", "tier"],
        nodes,
        `the ${s.tier} tier runs no GPU, so there is nothing to pin.`,
        "Remove gpuPinNodes and gpuPinUntil, or use tier hybrid.",
      ),
    );
    return undefined;
  }
  const untilMs = Date.parse(until);
  // gpuPinUntil's own check has already said why an unreadable instant is refused.
  if (Number.isNaN(untilMs)) return undefined;
  if (untilMs <= nowMs) {
    warnings.push({
      keys: ["gpuPinNodes", "gpuPinUntil"],
      message: `the pin at ${nodes} GPU node(s) expired at ${until}; it is ignored and the autoscaler decides again. Remove it with \`npm run hub -- gpu unpin\`.`,
    });
    return { nodes, untilMs };
  }
  if (untilMs - nowMs > MAX_PIN_MS) {
    // The budget is monthly: a pin past a month would hold the GPU against it with no end in sight.
    problems.push(
      problem(
        ["gpuPinUntil"],
        until,
        `ends more than 31 days from now (${new Date(nowMs).toISOString().slice(0, 16)}Z); a pin is for hours or days, and is capped at 31 days from any source.`,
        "Pin again with `npm run hub -- gpu on --for <duration up to 31d>`, or for a GPU that is always on use tier gpu, which the budget check prices for the month.",
      ),
    );
    return undefined;
  }
  const running = configuredGpuNodes(s);
  if (nodes !== running) {
    problems.push(
      problem(
        ["gpuPinNodes", "gpuCount", "gpuEnabled"],
        nodes,
        `pins ${nodes} GPU node(s) until ${until}, but the stack runs ${running}${s.tier === "hybrid" && !s.gpuEnabled ? " (gpuEnabled is false)" : ""}; the controller would move the GPU against the stack file.`,
        `Set gpuPinNodes to ${running}, or pin again with \`npm run hub -- gpu on --for <duration>\` (or \`gpu off\`), or remove the pin with \`npm run hub -- gpu unpin\`.`,
      ),
    );
  }
  return { nodes, untilMs };
}

function lookupSizes({ s, problems }: Ctx): { cpu?: CpuSize; gpu?: GpuSize } {
  if (s.tier === "local") {
    if (s.cpuSize !== LOCAL_MACHINE.slug || s.region !== "local")
      problems.push(
        problem(
          ["cpuSize", "region", "tier"],
          `${s.cpuSize} @ ${s.region}`,
          "the local tier runs on this machine's Docker; it has no droplet size or region.",
          "Remove cpuSize and region from the local stack file.",
        ),
      );
    return { cpu: LOCAL_MACHINE };
  }
  if (!REGIONS.includes(s.region))
    problems.push(
      problem(
        "region",
        s.region,
        "is not a DigitalOcean region slug.",
        `${didYouMean(s.region, REGIONS)} Regions: ${REGIONS.join(", ")}.`.trim(),
      ),
    );
  let cpu = findCpuSize(s.cpuSize);
  if (!cpu) {
    const isGpu = findGpuSize(s.cpuSize) !== undefined;
    problems.push(
      problem(
        "cpuSize",
        s.cpuSize,
        isGpu ? "is a GPU size; the CPU node takes a CPU size." : "is not a CPU size in the catalogue.",
        `${
          isGpu
            ? "Put it in gpuSize."
            : didYouMean(
                s.cpuSize,
                CPU_SIZES.map((c) => c.slug),
              )
        } CPU sizes: ${CPU_SIZES.map((c) => c.slug).join(", ")}.`.trim(),
      ),
    );
  } else if (REGIONS.includes(s.region) && !cpu.regions.includes(s.region)) {
    problems.push(
      problem(
        ["cpuSize", "region"],
        s.cpuSize,
        `is not offered in ${s.region}.`,
        `Regions with it: ${cpu.regions.join(", ")}.`,
      ),
    );
    cpu = undefined;
  }
  if (s.tier === "cpu") return { cpu };
  const gpu = findGpuSize(s.gpuSize);
  if (!gpu) {
    const isCpu = findCpuSize(s.gpuSize) !== undefined;
    problems.push(
      problem(
        "gpuSize",
        s.gpuSize,
        isCpu ? "is a CPU size; GPU nodes take a GPU size." : "is not a GPU size in the catalogue.",
        `${didYouMean(
          s.gpuSize,
          GPU_SIZES.map((g) => g.slug),
        )} GPU sizes: ${GPU_SIZES.map((g) => g.slug).join(", ")}.`.trim(),
      ),
    );
    return { cpu };
  }
  if (REGIONS.includes(s.region) && !gpu.regions.includes(s.region)) {
    const here = GPU_SIZES.filter((g) => g.regions.includes(s.region)).map((g) => g.slug);
    problems.push(
      problem(
        ["gpuSize", "region"],
        s.gpuSize,
        `is not offered in ${s.region} (DigitalOcean answers 422 "Size is not available in this region").`,
        `${s.gpuSize} is offered in ${gpu.regions.join(", ")}; ${here.length ? `${s.region} offers ${here.join(", ")}` : `${s.region} offers no GPU sizes`}. All nodes and volumes share one region (one VPC).`,
      ),
    );
  }
  return { cpu, gpu };
}

function lookupModel(ctx: Ctx, key: "llmModel" | "fallbackModel", id: string): ModelEntry | undefined {
  const model = findModel(id);
  const coders = MODELS.filter((m) => m.role === "coder").map((m) => m.id);
  if (model?.role !== "coder") {
    ctx.problems.push(
      problem(
        key,
        id,
        model ? "is an OCR model, not a coding model." : "is not a model in the catalogue.",
        `${didYouMean(id, coders)} Coding models: ${coders.join(", ")}.`.trim(),
      ),
    );
    return undefined;
  }
  return model;
}

/** Alternatives that would make a GPU model fit, nearest first: less context, fewer bits, a bigger size. */
function fitAdvice(
  tier: Tier,
  model: ModelEntry,
  quantization: Quantization,
  gpu: GpuSize,
  share: number,
  maxShare: number,
  context: number,
  region: string,
  loraGB: (tensorParallel: number) => number = () => 0,
): string {
  const advice: string[] = [];
  const current = gpuFitInput(model, quantization, gpu, context, share, loraGB);
  if (current) {
    const longest = maxContextThatFits(current);
    if (longest >= 2048) advice.push(`set llmMaxContext to ${Math.floor(longest / 1024) * 1024} or less`);
    const needShare = fitOnGpu(current).minimumShare;
    if (needShare !== undefined && needShare > share && needShare <= maxShare)
      advice.push(`raise llmGpuMemoryPercent to ${Math.ceil(needShare * 100)}`);
  }
  for (const q of ["8bit", "4bit"] as const) {
    if (q === quantization || (quantization === "4bit" && q === "8bit")) continue;
    if (fitsWith(gpuFitInput(model, q, gpu, context, share, loraGB))) {
      advice.push(`use llmQuantization ${q}`);
      break;
    }
  }
  // Only sizes this tier accepts: 8-GPU droplets for multigpu, single-GPU ones otherwise.
  const fitsOn = (s: GpuSize) =>
    (tier === "k8s" || (tier === "multigpu") === s.gpuCount > 1) &&
    fitsWith(gpuFitInput(model, quantization, s, context, share, loraGB));
  const inRegion = sizesWhere(fitsOn, region).filter((s) => s.slug !== gpu.slug);
  const anywhere = sizesWhere(fitsOn).filter((s) => s.slug !== gpu.slug);
  // Hybrid bills the hours it is on; gpu and multigpu are always on (HOURS_PER_MONTH).
  const priced = (s: GpuSize, alwaysOn: boolean) =>
    `${s.slug} (${usd(s.pricePerHour)}/h${alwaysOn ? `, ${usd(s.pricePerHour * HOURS_PER_MONTH)}/month always on` : ""}${s.regions.includes(region) ? "" : `; offered in ${s.regions.join("/")}`})`;
  const bigger = inRegion.length ? inRegion : anywhere;
  if (bigger.length)
    advice.push(
      `use gpuSize ${bigger
        .slice(0, 2)
        .map((s) => priced(s, tier !== "hybrid"))
        .join(" or ")}`,
    );
  else if (tier !== "multigpu" && advice.length === 0) {
    // Nothing makes it fit one GPU: the multigpu tier's 8-GPU droplets might (tensor parallel over all 8).
    const multi = multiGpuFit(model, quantization, context, region, loraGB);
    if (multi)
      return `No single-GPU size holds it. Fixes: use tier multigpu with gpuSize ${priced(multi.size, true)}${multi.quantization === quantization ? "" : ` and llmQuantization ${multi.quantization}`} (its preset shards the model over the ${multi.size.gpuCount} GPUs).`;
  }
  return advice.length ? `Fixes: ${advice.join("; or ")}.` : "No catalogue size holds it; choose a smaller model.";
}

/** What the fit needs to know of the model on a size, or undefined when the quantization cannot run there. */
function gpuFitInput(
  model: ModelEntry,
  quantization: Quantization,
  size: GpuSize,
  context: number,
  share: number,
  loraGB: (tensorParallel: number) => number,
): GpuFitInput | undefined {
  const weights = mapVllmQuantization(model, quantization, size);
  if (!weights.ok) return undefined;
  return {
    weightsGB: weights.value.gpuWeightsGB,
    attention: model.attention,
    maxContext: context,
    tensorParallel: size.gpuCount,
    gpuMemoryGBPerGpu: size.gpuMemoryGBPerGpu,
    share,
    vision: model.vision,
    loraGB: loraGB(size.gpuCount),
  };
}

const fitsWith = (input: GpuFitInput | undefined) => input !== undefined && fitOnGpu(input).fits;

/** The cheapest 8-GPU size (in the region first) that holds the model at the multigpu preset's memory share. */
function multiGpuFit(
  model: ModelEntry,
  quantization: Quantization,
  context: number,
  region: string,
  loraGB: (tensorParallel: number) => number,
): { size: GpuSize; quantization: Quantization } | undefined {
  const share = PRESETS.multigpu.llmGpuMemoryPercent / 100;
  for (const q of [quantization, ...(["none", "8bit", "4bit"] as const).filter((x) => x !== quantization)]) {
    const fits = (s: GpuSize) =>
      s.gpuCount > 1 &&
      model.attention.attentionHeads % s.gpuCount === 0 &&
      fitsWith(gpuFitInput(model, q, s, context, share, loraGB));
    const size = sizesWhere(fits, region)[0] ?? sizesWhere(fits)[0];
    if (size) return { size, quantization: q };
  }
  return undefined;
}

function describeFit(what: string, fit: GpuFit, gpu: GpuSize, share: number): string {
  const tp = gpu.gpuCount > 1 ? ` per GPU (of ${gpu.gpuCount})` : "";
  const lora = fit.loraGB > 0 ? ` + LoRA slots ${gb(fit.loraGB)}` : "";
  return `${what} needs ${gb(fit.neededPerGpuGB)}${tp} (weights ${gb(fit.weightsPerGpuGB)} + KV cache for one full-context sequence ${gb(fit.kvPerGpuGB)} + overhead ${gb(fit.overheadGB)}${lora}); ${gpu.slug} gives it ${gb(fit.availablePerGpuGB)} (${gb(gpu.gpuMemoryGBPerGpu)} x ${share.toFixed(2)}).`;
}

function resolveVllmCoder(ctx: Ctx, model: ModelEntry, gpu: GpuSize): VllmCoder | undefined {
  const { s, problems } = ctx;
  const share = s.llmGpuMemoryPercent / 100;
  let ok = true;
  if (s.llmTensorParallelSize !== gpu.gpuCount) {
    problems.push(
      problem(
        ["llmTensorParallelSize", "gpuSize"],
        s.llmTensorParallelSize,
        `must equal the GPU count of ${gpu.slug} (${gpu.gpuCount}); vLLM shards the model over every GPU of the droplet.`,
        `Set llmTensorParallelSize to ${gpu.gpuCount}.`,
      ),
    );
    ok = false;
  } else if (model.attention.attentionHeads % gpu.gpuCount !== 0) {
    problems.push(
      problem(
        ["llmModel", "llmTensorParallelSize"],
        model.id,
        `has ${model.attention.attentionHeads} attention heads, which vLLM cannot split evenly over ${gpu.gpuCount} GPUs.`,
        `Use a single-GPU size, or a model whose head count divides by ${gpu.gpuCount}.`,
      ),
    );
    ok = false;
  }
  if (s.llmMaxContext > model.maxContext) {
    problems.push(
      problem(
        "llmMaxContext",
        s.llmMaxContext,
        `exceeds ${model.displayName}'s maximum context of ${model.maxContext} tokens.`,
        `Set llmMaxContext to ${model.maxContext} or less.`,
      ),
    );
    ok = false;
  }
  const weights = mapVllmQuantization(model, s.llmQuantization, gpu);
  if (!weights.ok) {
    problems.push(weights.problem);
    return undefined;
  }
  const ramGB = gpu.ramGiB * GB_PER_GIB;
  if (weights.value.loadRamGB > ramGB) {
    problems.push(
      problem(
        ["llmQuantization", "gpuSize"],
        s.llmQuantization,
        `online FP8 loads the full ${gb(weights.value.loadRamGB)} BF16 checkpoint into host RAM first; ${gpu.slug} has ${gpu.ramGiB} GiB (${gb(ramGB)}).`,
        `Use 4bit (pre-quantized, no BF16 load), or a size with more RAM: ${
          sizesWhere((g) => g.ramGiB * GB_PER_GIB >= weights.value.loadRamGB && g.fp8, s.region)
            .map((g) => g.slug)
            .slice(0, 2)
            .join(", ") || "none in this region"
        }.`,
      ),
    );
    ok = false;
  }
  // LoRA adapters: what vLLM would refuse, and the slots' memory the fit must count.
  const lora = resolveLora({
    entries: s.llmLoraAdapters,
    maxLoras: s.llmMaxLoras,
    model,
    quantization: s.llmQuantization,
    gpu,
    tensorParallel: gpu.gpuCount,
    coderName: CODER_SERVED_NAME,
  });
  problems.push(...lora.problems);
  ctx.warnings.push(...lora.warnings);
  if (lora.problems.length > 0) ok = false;
  if (!ok) return undefined;
  const loraFor = (tensorParallel: number): number =>
    lora.plan ? (lora.plan.slotGBPerGpu * gpu.gpuCount) / tensorParallel : 0;
  const context = Math.min(s.llmMaxContext, model.maxContext);
  const fit = fitOnGpu({
    weightsGB: weights.value.gpuWeightsGB,
    attention: model.attention,
    maxContext: context,
    tensorParallel: gpu.gpuCount,
    gpuMemoryGBPerGpu: gpu.gpuMemoryGBPerGpu,
    share,
    vision: model.vision,
    loraGB: lora.plan?.slotGBPerGpu,
  });
  if (!fit.fits) {
    const advice = fitAdvice(
      s.tier,
      model,
      s.llmQuantization,
      gpu,
      share,
      s.ocrEngine === "deepseek-ocr" ? MAX_COMBINED_GPU_SHARE - s.ocrGpuMemoryPercent / 100 : MAX_COMBINED_GPU_SHARE,
      context,
      s.region,
      loraFor,
    );
    const loraAdvice = lora.plan
      ? ` Or reserve less for LoRA: ${lora.plan.maxLoras} slot(s) at rank ${lora.plan.maxRank} take ${gb(lora.plan.slotGBPerGpu)} (lower llmMaxLoras, or serve lower-rank adapters).`
      : "";
    problems.push(
      problem(
        ["llmModel", "llmQuantization", "gpuSize", ...(lora.plan ? ["llmLoraAdapters"] : [])],
        `${model.id} @ ${s.llmQuantization}`,
        describeFit(`${model.displayName} as ${weights.value.format}`, fit, gpu, share),
        `${advice}${loraAdvice}`,
      ),
    );
    return undefined;
  }
  return {
    backend: "vllm",
    model,
    weights: weights.value,
    loader: weightsLoader(weights.value, gpu),
    maxContext: context,
    share,
    tensorParallel: gpu.gpuCount,
    fit,
    ...(lora.plan ? { lora: lora.plan } : {}),
  };
}

function resolveLlamaCpp(
  ctx: Ctx,
  key: "llmModel" | "fallbackModel",
  model: ModelEntry,
  quantization: Quantization,
  context: number,
): LlamaCppCoder | undefined {
  if (context > model.maxContext) {
    ctx.problems.push(
      problem(
        "llmMaxContext",
        context,
        `exceeds ${model.displayName}'s maximum context of ${model.maxContext} tokens.`,
        `Set llmMaxContext to ${model.maxContext} or less.`,
      ),
    );
    return undefined;
  }
  const gguf = mapGgufQuantization(model, quantization, key);
  if (!gguf.ok) {
    ctx.problems.push(gguf.problem);
    return undefined;
  }
  const ram = llamaCppRamGiB(gguf.value.sizeGB, model.attention, context, CPU_SERVICE_RAM.llamaCppRuntime.ramGiB);
  return { backend: "llama.cpp", model, gguf: gguf.value, context, ramGiB: ram.totalGiB };
}

function resolveOcr(ctx: Ctx, gpu: GpuSize | undefined, coderShare: number | undefined): DeepSeekOcr | undefined {
  const { s, problems } = ctx;
  const model = findModel("deepseek-ocr");
  if (!model) throw new Error("catalogue lost deepseek-ocr");
  if (!GPU_TIERS.includes(s.tier)) {
    problems.push(
      problem(
        ["ocrEngine", "tier"],
        s.ocrEngine,
        `DeepSeek-OCR needs an NVIDIA GPU (its official code is CUDA-only); the ${s.tier} tier has none.`,
        "Set ocrEngine to docling (or none).",
      ),
    );
    return undefined;
  }
  // A GPU tier without a usable gpuSize: lookupSizes has already said why.
  if (!gpu) return undefined;
  const weights = mapVllmQuantization(model, "none", gpu);
  if (!weights.ok) {
    problems.push({ ...weights.problem, keys: ["ocrEngine", "gpuSize"] });
    return undefined;
  }
  const share = s.ocrGpuMemoryPercent / 100;
  const fit = fitOnGpu({
    weightsGB: weights.value.gpuWeightsGB,
    attention: model.attention,
    maxContext: model.maxContext,
    tensorParallel: 1,
    gpuMemoryGBPerGpu: gpu.gpuMemoryGBPerGpu,
    share,
    vision: model.vision,
  });
  if (!fit.fits) {
    problems.push(
      problem(
        "ocrGpuMemoryPercent",
        s.ocrGpuMemoryPercent,
        describeFit("DeepSeek-OCR", fit, gpu, share),
        fit.minimumShare
          ? `Raise ocrGpuMemoryPercent to ${Math.ceil(fit.minimumShare * 100)} (and lower llmGpuMemoryPercent to match).`
          : "Use a GPU with more memory.",
      ),
    );
    return undefined;
  }
  if (coderShare !== undefined && coderShare + share > MAX_COMBINED_GPU_SHARE) {
    problems.push(
      problem(
        ["llmGpuMemoryPercent", "ocrGpuMemoryPercent"],
        `${s.llmGpuMemoryPercent} + ${s.ocrGpuMemoryPercent}`,
        `the coder and DeepSeek-OCR share each GPU; their shares add up to ${Math.round((coderShare + share) * 100)}%, above the ${MAX_COMBINED_GPU_SHARE * 100}% two vLLM processes can take (each pre-allocates its share).`,
        `Lower one so they add up to ${MAX_COMBINED_GPU_SHARE * 100} or less, e.g. llmGpuMemoryPercent ${Math.round((MAX_COMBINED_GPU_SHARE - share) * 100)}.`,
      ),
    );
    return undefined;
  }
  return { engine: "deepseek-ocr", model, weights: weights.value, share, maxContext: model.maxContext, fit };
}

function cpuWorkloads(
  ctx: Ctx,
  coder: VllmCoder | LlamaCppCoder | undefined,
  fallback: LlamaCppCoder | undefined,
  stt: { ramGiB: number } | undefined,
  tts: { ramGiB: number } | undefined,
): Workload[] {
  const { s } = ctx;
  const w: Workload[] = [
    { role: "gateway", node: CPU_NODE_NAME, program: "traefik", ramGiB: CPU_SERVICE_RAM.gateway.ramGiB },
    { role: "gatekeeper", node: CPU_NODE_NAME, program: "gatekeeper", ramGiB: CPU_SERVICE_RAM.gatekeeper.ramGiB },
  ];
  if (grafanaEnabled(s))
    w.push({ role: "grafana", node: CPU_NODE_NAME, program: "grafana", ramGiB: CPU_SERVICE_RAM.grafana.ramGiB });
  if (s.autoscaler && GPU_TIERS.includes(s.tier))
    w.push({
      role: "autoscaler",
      node: CPU_NODE_NAME,
      program: "autoscaler",
      ramGiB: CPU_SERVICE_RAM.autoscaler.ramGiB,
    });
  if (stt) w.push({ role: "stt", node: CPU_NODE_NAME, program: "speaches", model: s.sttModel, ramGiB: stt.ramGiB });
  if (tts) w.push({ role: "tts", node: CPU_NODE_NAME, program: "coqui-tts", model: s.ttsModel, ramGiB: tts.ramGiB });
  if (coder?.backend === "llama.cpp")
    w.push({ role: "coder", node: CPU_NODE_NAME, program: "llama.cpp", model: coder.gguf.hfArg, ramGiB: coder.ramGiB });
  if (fallback)
    w.push({
      role: "coder-fallback",
      node: CPU_NODE_NAME,
      program: "llama.cpp",
      model: fallback.gguf.hfArg,
      ramGiB: fallback.ramGiB,
    });
  if (s.ocrEngine === "docling")
    w.push({ role: "ocr", node: CPU_NODE_NAME, program: "docling-serve", ramGiB: CPU_SERVICE_RAM.docling.ramGiB });
  else if (s.ocrCpuFallback)
    w.push({
      role: "ocr-fallback",
      node: CPU_NODE_NAME,
      program: "docling-serve",
      ramGiB: CPU_SERVICE_RAM.docling.ramGiB,
    });
  if (s.sandbox === "on" && s.tier !== "local")
    w.push({ role: "sandbox-front", node: CPU_NODE_NAME, program: "sandbox-front", ramGiB: SANDBOX_FRONT_RAM_GIB });
  if (s.monitoring) {
    w.push({
      role: "prometheus",
      node: CPU_NODE_NAME,
      program: "prometheus",
      ramGiB: CPU_SERVICE_RAM.prometheus.ramGiB,
    });
    w.push({
      role: "alertmanager",
      node: CPU_NODE_NAME,
      program: "alertmanager",
      ramGiB: CPU_SERVICE_RAM.alertmanager.ramGiB,
    });
    if (s.tier !== "local")
      w.push({
        role: "node-exporter",
        node: CPU_NODE_NAME,
        program: "node-exporter",
        ramGiB: CPU_SERVICE_RAM.nodeExporter.ramGiB,
      });
  }
  return w;
}

/** Where alerts go, or the problems with the alert settings. Secrets (password, webhook) are the program's to read. */
function resolveMonitoring({ s, problems }: Ctx): MonitoringPlan | undefined {
  const emailKeys = ["alertEmail", "alertSmtpSmarthost", "alertSmtpFrom", "alertSmtpUser"] as const;
  const setEmailKeys = emailKeys.filter((k) => s[k] !== undefined);
  if (!s.monitoring) {
    if (setEmailKeys.length)
      problems.push(
        problem(
          [...setEmailKeys, "monitoring"],
          s[setEmailKeys[0]],
          "configures alert e-mail, but monitoring is off, so nothing would send it.",
          "Set monitoring to true, or remove the alert settings.",
        ),
      );
    return undefined;
  }
  let email: MonitoringPlan["email"];
  if (s.alertEmail !== undefined) {
    const missing = (["alertSmtpSmarthost", "alertSmtpFrom"] as const).filter((k) => s[k] === undefined);
    if (missing.length)
      problems.push(
        problem(
          ["alertEmail", ...missing],
          s.alertEmail,
          `Alertmanager needs an SMTP server to send alert e-mail: ${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} unset.`,
          "Set alertSmtpSmarthost (host:port, e.g. smtp.example.com:587) and alertSmtpFrom (the sender address); add alertSmtpUser and the secret alertSmtpPassword if the server asks for a login.",
        ),
      );
    else email = { to: s.alertEmail, smarthost: s.alertSmtpSmarthost!, from: s.alertSmtpFrom!, user: s.alertSmtpUser };
  } else if (setEmailKeys.length) {
    problems.push(
      problem(
        [...setEmailKeys, "alertEmail"],
        s[setEmailKeys[0]],
        "configures how to send alert e-mail, but alertEmail (where to send it) is unset.",
        "Set alertEmail to the address that should receive alerts, or remove the SMTP settings.",
      ),
    );
  }
  // A quarter of the volume: the CPU node's model files and TLS state share it.
  const retentionSizeGiB = Math.max(1, Math.floor(s.cpuCacheGiB / 4));
  // node_exporter and the GPU exporters run on droplets; DOKS nodes ship DigitalOcean's own agent and DCGM exporter.
  return {
    retentionDays: s.prometheusRetentionDays,
    retentionSizeGiB,
    exporters: s.tier !== "local" && s.tier !== "k8s",
    email,
  };
}

function checkCpuRam(ctx: Ctx, cpu: CpuSize, workloads: readonly Workload[]): number {
  const needed = CPU_SERVICE_RAM.system.ramGiB + workloads.reduce((sum, w) => sum + (w.ramGiB ?? 0), 0);
  if (needed > cpu.ramGiB) {
    const bigger = CPU_SIZES.filter((c) => c.ramGiB >= needed).sort((a, b) => a.pricePerMonth - b.pricePerMonth);
    const parts = [
      `system ${CPU_SERVICE_RAM.system.ramGiB}`,
      ...workloads.map((w) => `${w.role} (${w.program}) ${(w.ramGiB ?? 0).toFixed(2)}`),
    ].join(" + ");
    const drop = [
      ctx.s.fallbackModel !== "none" ? "set fallbackModel to none" : "",
      ctx.s.ocrCpuFallback ? "set ocrCpuFallback to false" : "",
      ctx.s.embeddingModel !== "none" ? "set embeddingModel to none (no /v1/embeddings)" : "",
    ].filter(Boolean);
    if (ctx.s.tier === "local") {
      ctx.problems.push(
        problem(
          ["llmModel", "ocrEngine"],
          ctx.s.llmModel,
          `the local services need ${needed.toFixed(2)} GiB of RAM (${parts}); the local tier plans for ${cpu.ramGiB} GiB given to Docker.`,
          `Use a smaller llmModel, or set ocrEngine to none${ctx.s.embeddingModel !== "none" ? ", or set embeddingModel to none" : ""}.`,
        ),
      );
      return needed;
    }
    ctx.problems.push(
      problem(
        "cpuSize",
        cpu.slug,
        `the services placed on the CPU node need ${needed.toFixed(2)} GiB of RAM (${parts}); ${cpu.slug} has ${cpu.ramGiB} GiB.`,
        `Use ${bigger.length ? `cpuSize ${bigger[0].slug} (${bigger[0].ramGiB} GiB, $${bigger[0].pricePerMonth}/month)` : "a larger CPU size"}${drop.length ? `, or ${drop.join(", or ")}` : ""}.`,
      ),
    );
  }
  return needed;
}

function diskGiB(w: VllmWeights | undefined): number {
  return w ? gbToGiB(w.diskGB) : 0;
}

/**
 * A refusal always says why. Should a check ever fail without a problem (a bug, as when the local
 * tier's DeepSeek-OCR was dropped silently), name the settings whose part is missing rather than
 * print "0 problems".
 */
function refuse(
  ctx: Ctx,
  missing: Readonly<Record<string, boolean>>,
): { ok: false; problems: Problems; warnings: Warning[] } {
  if (isNonEmpty(ctx.problems)) return { ok: false, problems: ctx.problems, warnings: ctx.warnings };
  const keys = Object.keys(missing).filter((k) => missing[k]);
  const named = keys.length ? keys : ["tier"];
  return {
    ok: false,
    problems: [
      problem(
        named,
        undefined,
        "could not be resolved, yet no check said why: this is a bug in inference-hub's checks.",
        "Please report it with this stack file; meanwhile try the tier's preset value.",
      ),
    ],
    warnings: ctx.warnings,
  };
}

/** adminCidrs and sshKeyFingerprints: no network or key listed twice, and no "open to all" in disguise. */
function checkAccessLists({ s, problems }: Ctx): void {
  const seen = new Map<string, string>();
  for (const text of s.adminCidrs) {
    if (cidrProblem(text)) continue;
    const key = cidrKey(text);
    const first = seen.get(key);
    if (first !== undefined)
      problems.push(
        problem(
          "adminCidrs",
          text,
          first === text ? "lists this network twice." : `is the same network as ${first}, listed already.`,
          "Remove the duplicate.",
        ),
      );
    else seen.set(key, text);
  }
  const fingerprints = new Set<string>();
  for (const f of s.sshKeyFingerprints) {
    if (fingerprints.has(f.toLowerCase()))
      problems.push(problem("sshKeyFingerprints", f, "lists this key twice.", "Remove the duplicate."));
    fingerprints.add(f.toLowerCase());
  }
}

/**
 * Settings this tier does not use but the stack file sets to something a tier that uses them
 * would refuse: not fatal here, but the next tier switch would fail on them.
 */
function warnIgnoredNonsense({ s, warnings }: Ctx, overrides: StackOverrides): void {
  if (GPU_TIERS.includes(s.tier) || overrides.gpuSize === undefined) return;
  const size = overrides.gpuSize;
  const slugs = GPU_SIZES.map((g) => g.slug);
  const gpu = findGpuSize(size);
  let why: string | undefined;
  if (!gpu) why = `is not a GPU size in the catalogue (${didYouMean(size, slugs) || `GPU sizes: ${slugs.join(", ")}`})`;
  else if (s.tier === "cpu" && REGIONS.includes(s.region) && !gpu.regions.includes(s.region))
    why = `is not offered in ${s.region} (it is in ${gpu.regions.join(", ")})`;
  if (why)
    warnings.push({
      keys: ["gpuSize", "tier"],
      message: `${JSON.stringify(cap(size, 40))} ${why}. The ${s.tier} tier ignores gpuSize, but a switch to a GPU tier would be refused.`,
    });
}

/**
 * Preset + overrides → one validated HubConfig, or every problem found. No cloud calls: all of
 * this runs at plan time, before any money is spent.
 */
export function resolveHubConfig(overrides: StackOverrides, nowMs: number = Date.now()): Resolved {
  const merged = applyPreset(overrides);
  // Unless set, the autoscaler's ceiling is at least the replicas asked for with gpuCount.
  const preset: ResolvedSettings =
    overrides.gpuMaxNodes === undefined && GPU_TIERS.includes(merged.tier)
      ? { ...merged, gpuMaxNodes: Math.max(merged.gpuMaxNodes, merged.gpuCount) }
      : merged;
  // GPU windows decide the expected hours; hours given as well would be a second, conflicting answer.
  const windows = parseWindows(preset.gpuWindows);
  const derivedHours =
    windows.windows.length > 0 && preset.tier === "hybrid" ? hoursPerMonth(windows.windows) : undefined;
  const s: ResolvedSettings = derivedHours !== undefined ? { ...preset, gpuHoursPerMonth: derivedHours } : preset;
  const ctx: Ctx = { s, problems: [...windows.problems], warnings: [] };
  // A derived value passes the same check as one set by hand.
  if (derivedHours !== undefined && !SETTINGS.gpuHoursPerMonth.schema.safeParse(derivedHours).success) {
    ctx.problems.push(
      problem(
        "gpuWindows",
        preset.gpuWindows,
        `come to ${derivedHours} GPU hours a month, outside what gpuHoursPerMonth allows (0 to 744).`,
        "Narrow the windows.",
      ),
    );
  }
  if (preset.gpuWindows.length > 0) {
    if (preset.tier !== "hybrid")
      ctx.problems.push(
        problem(
          ["gpuWindows", "tier"],
          preset.gpuWindows,
          `GPU windows turn an on-demand GPU on and off; the ${preset.tier} tier has none.`,
          "Use tier hybrid, or remove gpuWindows.",
        ),
      );
    if (overrides.gpuHoursPerMonth !== undefined)
      ctx.problems.push(
        problem(
          ["gpuHoursPerMonth", "gpuWindows"],
          overrides.gpuHoursPerMonth,
          "is set as well as gpuWindows, which already imply the hours.",
          "Remove gpuHoursPerMonth; the plan derives it from the windows.",
        ),
      );
  }
  const { problems, warnings } = ctx;
  const { cpu, gpu } = lookupSizes(ctx);
  checkTierShape(ctx, gpu);
  checkAutoscaling(ctx);
  const gpuPin = checkPin(ctx, nowMs);
  checkSnapshot(ctx);
  checkGrafana(ctx);

  const hasGpu = GPU_TIERS.includes(s.tier);
  const coderModel = lookupModel(ctx, "llmModel", s.llmModel);
  let coder: VllmCoder | LlamaCppCoder | undefined;
  if (coderModel && !hasGpu) coder = resolveLlamaCpp(ctx, "llmModel", coderModel, s.llmQuantization, s.llmMaxContext);
  if (!hasGpu && s.llmLoraAdapters.length > 0)
    problems.push(
      problem(
        ["llmLoraAdapters", "tier"],
        s.llmLoraAdapters,
        `the ${s.tier} tier serves the coder with llama.cpp, which the hub does not give PEFT adapters (vLLM on a GPU serves them).`,
        "Use tier gpu or hybrid, or remove llmLoraAdapters.",
      ),
    );
  else if (coderModel && gpu) coder = resolveVllmCoder(ctx, coderModel, gpu);

  let fallback: LlamaCppCoder | undefined;
  if (s.fallbackModel !== "none") {
    if (!hasGpu) {
      problems.push(
        problem(
          ["fallbackModel", "tier"],
          s.fallbackModel,
          "the cpu tier's coder already runs on the CPU node; a fallback would duplicate it.",
          "Set fallbackModel to none.",
        ),
      );
    } else {
      const fbModel = lookupModel(ctx, "fallbackModel", s.fallbackModel);
      if (fbModel)
        fallback = resolveLlamaCpp(
          ctx,
          "fallbackModel",
          fbModel,
          "4bit",
          Math.min(FALLBACK_CONTEXT, fbModel.maxContext),
        );
    }
  }

  const embeddings = resolveEmbeddings(s.embeddingModel, problems);

  const ocr =
    s.ocrEngine === "deepseek-ocr"
      ? resolveOcr(ctx, gpu, coder?.backend === "vllm" ? coder.share : undefined)
      : undefined;
  if (s.ocrCpuFallback && s.ocrEngine !== "deepseek-ocr") {
    problems.push(
      problem(
        ["ocrCpuFallback", "ocrEngine"],
        true,
        `a CPU OCR fallback only makes sense behind DeepSeek-OCR on the GPU; ocrEngine is ${s.ocrEngine}.`,
        "Set ocrCpuFallback to false.",
      ),
    );
  }

  // By own name only: WHISPER_MODELS["constructor"] is Object, not a model.
  const whisper = Object.hasOwn(WHISPER_MODELS, s.sttModel) ? WHISPER_MODELS[s.sttModel] : undefined;
  if (!whisper)
    problems.push(
      problem(
        "sttModel",
        s.sttModel,
        "is not a Whisper model in the catalogue.",
        `${didYouMean(s.sttModel, Object.keys(WHISPER_MODELS))} Use one of ${Object.keys(WHISPER_MODELS).join(", ")}.`.trim(),
      ),
    );
  const ttsModel = Object.hasOwn(TTS_MODELS, s.ttsModel) ? TTS_MODELS[s.ttsModel] : undefined;
  if (!ttsModel)
    problems.push(
      problem(
        "ttsModel",
        s.ttsModel,
        "is not a Coqui TTS model in the catalogue.",
        `Use one of ${Object.keys(TTS_MODELS).join(", ")}.`,
      ),
    );
  if (ttsModel?.license.requiresAgreement && !s.ttsAcceptModelLicense) {
    const open = Object.entries(TTS_MODELS)
      .filter(([, m]) => !m.license.requiresAgreement)
      .map(([id]) => id);
    problems.push(
      problem(
        ["ttsModel", "ttsAcceptModelLicense"],
        s.ttsModel,
        `ships under the ${ttsModel.license.name} (${ttsModel.license.url}), and Coqui asks for agreement before downloading it; a container cannot answer, so the TTS server would never start.`,
        `If your use fits that licence, set ttsAcceptModelLicense to true (pulumi config set ttsAcceptModelLicense true); otherwise use ${open.join(" or ")}.`,
      ),
    );
  }

  if ((s.domain === undefined) !== (s.acmeEmail === undefined)) {
    problems.push(
      problem(
        ["domain", "acmeEmail"],
        s.domain ?? s.acmeEmail,
        "HTTPS with Let's Encrypt needs both a domain and a contact e-mail.",
        s.domain ? "Set acmeEmail." : "Set domain, or remove acmeEmail.",
      ),
    );
  }

  const monitoring = resolveMonitoring(ctx);
  const sandbox = resolveSandbox(s, problems);

  // Placement: the CPU node always; GPU nodes carry the coder (and DeepSeek-OCR) replicas.
  const allCpuLoads = [...cpuWorkloads(ctx, coder, fallback, whisper, ttsModel), ...embeddingsWorkloads(embeddings)];
  const k8s = s.tier === "k8s" ? resolveKubernetes(s, cpu, gpu, allCpuLoads) : undefined;
  if (k8s) {
    problems.push(...k8s.problems);
    warnings.push(...k8s.warnings);
  }
  // The k8s CPU pool packs its workloads onto as many nodes as they need (stacks/kubernetes.ts).
  const cpuLoads = k8s ? allCpuLoads.filter((w) => w.program !== "node-exporter") : allCpuLoads;
  // In k8s the pool is sized by its pods' requests (stacks/kubernetes.ts); the node plan keeps the droplet tiers' sum.
  const cpuRamNeeded = k8s
    ? CPU_SERVICE_RAM.system.ramGiB + cpuLoads.reduce((sum, w) => sum + (w.ramGiB ?? 0), 0)
    : cpu
      ? checkCpuRam(ctx, cpu, cpuLoads)
      : 0;
  const gpuOn = hasGpu && s.gpuEnabled;
  const nodes: NodePlan[] = [
    {
      name: CPU_NODE_NAME,
      kind: "cpu",
      size: s.cpuSize,
      active: true,
      workloads: cpuLoads,
      ramNeededGiB: cpuRamNeeded,
      ramGiB: k8s?.plan && cpu ? k8s.plan.cpuPool.nodes * cpu.ramGiB : cpu?.ramGiB,
    },
  ];
  if (hasGpu) {
    for (let i = 0; i < s.gpuCount; i++) {
      const node = gpuNodeName(i);
      const workloads: Workload[] = [];
      if (coder?.backend === "vllm")
        workloads.push({ role: "coder", node, program: "vllm", model: coder.weights.modelId, gpuShare: coder.share });
      if (ocr) workloads.push({ role: "ocr", node, program: "vllm", model: ocr.weights.modelId, gpuShare: ocr.share });
      // Exporters on GPU nodes: their RAM comes out of the droplet's hundreds of GiB, not a budget.
      // DOKS GPU nodes ship DigitalOcean's own DCGM exporter and node agent.
      if (s.monitoring && !k8s)
        workloads.push(
          { role: "node-exporter", node, program: "node-exporter" },
          {
            role: "gpu-exporter",
            node,
            program: gpu?.vendor === "amd" ? "amd-device-metrics-exporter" : "dcgm-exporter",
          },
        );
      nodes.push({ name: node, kind: "gpu", size: s.gpuSize, active: gpuOn, workloads });
    }
  }
  if (sandbox)
    nodes.push({
      name: SANDBOX_NODE_NAME,
      kind: "sandbox",
      size: sandbox.size.slug,
      active: true,
      workloads: [{ role: "sandbox", node: SANDBOX_NODE_NAME, program: "gvisor" }],
      ramGiB: sandbox.size.ramGiB,
    });

  // Model cache: what each GPU node downloads must fit its volume, with room for the compile cache.
  // The local tier keeps its files in a directory of yours: no volumes.
  // One per node slot the autoscaler may fill: scaling down never drops a volume from the program.
  const modelCacheVolumes = s.tier === "local" ? 0 : Math.max(1, hasGpu ? Math.max(s.gpuCount, s.gpuMaxNodes) : 0);
  const cacheNeeded = Math.ceil(
    diskGiB(coder?.backend === "vllm" ? coder.weights : undefined) +
      diskGiB(ocr?.weights) +
      (hasGpu ? COMPILE_CACHE_GIB : 0),
  );
  if (hasGpu && cacheNeeded > s.modelCacheGiB) {
    problems.push(
      problem(
        "modelCacheGiB",
        s.modelCacheGiB,
        `the GPU node's weights (${coder?.backend === "vllm" ? coder.weights.modelId : s.llmModel}${ocr ? " + DeepSeek-OCR" : ""}) and compile cache need ${cacheNeeded} GiB on the model-cache volume.`,
        `Set modelCacheGiB to ${Math.min(VOLUME_MAX_GIB, Math.ceil(cacheNeeded / 10) * 10)} or more (volumes grow in place; they never shrink).`,
      ),
    );
  }
  const cpuFiles =
    (coder?.backend === "llama.cpp" ? gbToGiB(coder.gguf.sizeGB) : 0) +
    (fallback ? gbToGiB(fallback.gguf.sizeGB) : 0) +
    embeddingsFilesGiB(embeddings) +
    CPU_MODEL_FILES_GIB;
  if (cpuFiles > s.cpuCacheGiB) {
    problems.push(
      problem(
        "cpuCacheGiB",
        s.cpuCacheGiB,
        `the CPU node's model files need ${Math.ceil(cpuFiles)} GiB.`,
        `Set cpuCacheGiB to ${Math.ceil(cpuFiles / 5) * 5} or more.`,
      ),
    );
  }

  const cloud = s.tier !== "local";
  // The k8s tier logs in nowhere: no SSH rule, no key.
  const droplets = cloud && s.tier !== "k8s";
  const ssh = sshExposure(s.adminCidrs);
  if (droplets && ssh.kind === "anywhere")
    warnings.push({
      keys: ["adminCidrs"],
      message: `SSH (port 22) on every node is open to the whole internet, as adminCidrs asks (${ssh.cidrs.filter(isWholeInternet).join(", ")}; key login only). Narrow it to your ranges, or remove adminCidrs to admit only the machine each deploy runs from.`,
    });
  checkAccessLists(ctx);
  warnIgnoredNonsense(ctx, overrides);
  if (cloud && !s.domain)
    warnings.push({
      keys: ["domain"],
      message:
        "no domain: the gateway serves plain HTTP, so API keys cross the network unencrypted. Set domain and acmeEmail for HTTPS.",
    });
  if (droplets && !s.sshPublicKey && s.sshKeyFingerprints.length === 0)
    warnings.push({
      keys: ["sshPublicKey", "sshKeyFingerprints"],
      message:
        "no SSH key: `pulumi up` refuses to create droplets without one (readiness checks and container deploys log in over SSH). Set sshPublicKey or sshKeyFingerprints.",
    });
  if (s.tier === "hybrid" && !s.gpuEnabled && !fallback)
    warnings.push({
      keys: ["gpuEnabled", "fallbackModel"],
      message:
        "the GPU is off and there is no CPU fallback coder: /v1/chat/completions answers 503 until the GPU is turned on.",
    });

  if (!cpu || (hasGpu && !gpu)) return refuse(ctx, { cpuSize: !cpu, gpuSize: hasGpu && !gpu });
  const cost = estimateCost({
    cpuSize: cpu,
    // The local tier keeps its files in a directory of yours: no volumes to bill.
    cpuCacheGiB: s.tier === "local" ? 0 : s.cpuCacheGiB,
    gpu: hasGpu && gpu ? { size: gpu, ...gpuBilling(s, k8s?.plan?.gpuPool.nodeHours), on: gpuOn } : undefined,
    modelCacheGiB: s.modelCacheGiB,
    modelCacheVolumes,
    gpuImageGB:
      hasGpu && s.gpuSnapshotId !== undefined ? GPU_IMAGE_BASE_GB.value + COLD_START.imageUnpackedGB.value : undefined,
    sandboxSize: sandbox?.size,
    ...(k8s?.plan
      ? {
          kubernetes: {
            cpuNodes: k8s.plan.cpuPool.nodes,
            haControlPlane: k8s.plan.haControlPlane,
            haControlPlaneMonthlyUsd: k8s.plan.prices.haControlPlaneMonthlyUsd,
            loadBalancerNodes: k8s.plan.loadBalancerNodes,
            loadBalancerNodeMonthlyUsd: k8s.plan.prices.loadBalancerNodeMonthlyUsd,
            stateVolumeGiB: k8s.plan.statePvcs.reduce((sum, v) => sum + v.sizeGiB, 0),
          },
        }
      : {}),
  });
  if (cost.monthlyUsd > s.budgetUsd) {
    const breakdown = cost.lines.map((l) => `${l.item} ${usd(l.monthlyUsd)}`).join(" + ");
    problems.push(
      problem(
        "budgetUsd",
        s.budgetUsd,
        `the projected month is ${usd(cost.monthlyUsd)} (${breakdown}), above the budget of ${usd(s.budgetUsd)}.`,
        `Raise budgetUsd to ${Math.ceil(cost.monthlyUsd)}${s.tier === "hybrid" ? (s.gpuWindows.length ? `, narrow gpuWindows (${s.gpuHoursPerMonth} h/month)` : ", lower gpuHoursPerMonth") : ""}, or choose a cheaper tier or size.`,
      ),
    );
  }
  if (problems.length > 0 || !coder || !whisper || !ttsModel || (s.ocrEngine === "deepseek-ocr" && !ocr)) {
    return refuse(ctx, {
      llmModel: !coder,
      sttModel: !whisper,
      ttsModel: !ttsModel,
      ocrEngine: s.ocrEngine === "deepseek-ocr" && !ocr,
    });
  }

  return {
    ok: true,
    config: {
      tier: s.tier,
      region: s.region,
      settings: s,
      cpuNode: { size: cpu, cacheGiB: s.cpuCacheGiB },
      gpu:
        hasGpu && gpu
          ? {
              size: gpu,
              count: s.gpuCount,
              on: gpuOn,
              hoursPerMonth: s.tier === "hybrid" || s.tier === "k8s" ? s.gpuHoursPerMonth : HOURS_PER_MONTH,
            }
          : undefined,
      ...(gpuPin ? { gpuPin } : {}),
      modelCache: { sizeGiB: s.modelCacheGiB, volumes: modelCacheVolumes, neededGiB: cacheNeeded },
      coder,
      fallbackCoder: fallback,
      ocr: ocr ?? { engine: s.ocrEngine === "docling" ? "docling" : "none" },
      ocrCpuFallback: s.ocrCpuFallback,
      ...(embeddings ? { embeddings } : {}),
      stt: { model: s.sttModel, repo: whisper.repo, ramGiB: whisper.ramGiB },
      tts: { model: s.ttsModel, ramGiB: ttsModel.ramGiB },
      gateway: { domain: s.domain, acmeEmail: s.acmeEmail, adminCidrs: s.adminCidrs },
      budgetUsd: s.budgetUsd,
      monitoring,
      ...(sandbox ? { sandbox } : {}),
      grafana: grafanaEnabled(s),
      nodes,
      cost,
      warnings,
      ...(k8s?.plan ? { kubernetes: k8s.plan } : {}),
    },
  };
}

/** GPU nodes and hours billed a month: always on in gpu/multigpu, the expected hours in hybrid, the pool's node-hours in k8s. */
function gpuBilling(s: ResolvedSettings, k8sNodeHours: number | undefined): { count: number; hoursPerMonth: number } {
  if (s.tier === "k8s") {
    // The floor all month, or the expected on-demand hours of gpuCount nodes, whichever is more.
    return s.gpuMinNodes * HOURS_PER_MONTH >= (k8sNodeHours ?? 0)
      ? { count: s.gpuMinNodes, hoursPerMonth: HOURS_PER_MONTH }
      : { count: s.gpuCount, hoursPerMonth: s.gpuHoursPerMonth };
  }
  return { count: s.gpuCount, hoursPerMonth: s.tier === "hybrid" ? s.gpuHoursPerMonth : HOURS_PER_MONTH };
}
