import { Source, src, unverified } from "./sources";

/**
 * What a GPU replica costs in time before it serves (the cold start) and what it serves once up
 * (its capacity). The autoscaler's decision and the trace simulator read these figures; every one
 * carries its source, and ⚠ (`verified: false`) marks those no source gave for this exact setup.
 * They are defaults: the simulator takes each as a parameter (`npm run simulate -- --help`).
 */
export interface Figure {
  readonly value: number;
  readonly unit: string;
  readonly source: Source;
}

const READ = "2026-12-01";
const fig = (value: number, unit: string, source: Source): Figure => ({ value, unit, source });

/**
 * One GPU wake-up, in the order it happens. Billing starts when DigitalOcean creates the droplet
 * (after `pipeline`), so the pipeline's own time costs waiting but no money.
 */
export const COLD_START = {
  /** POST /v2/droplets until the droplet is active and answers SSH. */
  dropletCreate: fig(
    120,
    "s",
    unverified(
      "shared/FACTS.md: no GPU-droplet provisioning time is documented",
      READ,
      "assumption to measure on the first real wake-up",
    ),
  ),
  /** cloud-init on the GPU base image: install Docker, register the NVIDIA runtime, mount the volume. */
  cloudInit: fig(
    120,
    "s",
    unverified(
      "shared/FACTS.md: GPU base images ship no Docker, so user data installs it (services/node-setup.ts)",
      READ,
      "apt install time not measured",
    ),
  ),
  /** Compressed size of the vLLM image, pulled onto the boot disk of every new droplet. */
  imageCompressedGB: fig(
    12.64,
    "GB",
    unverified(
      "vllm-project/vllm issue #27154 (2025-10): vllm/vllm-openai:latest is about 12 GB; discuss.vllm.ai thread cited there says 12.64 GB",
      READ,
      "size of the pinned v0.24.0 tag not read",
    ),
  ),
  /** Unpacked size: extraction writes this much to the boot disk. */
  imageUnpackedGB: fig(
    28.6,
    "GB",
    unverified(
      "vllm-project/vllm PR #22377 (2025-12): official vllm-openai:latest is 28.6 GB",
      READ,
      "size of the pinned v0.24.0 tag not read",
    ),
  ),
  /** Network throughput of a droplet: caps the image download. */
  networkGbps: fig(
    2,
    "Gbit/s",
    unverified(
      "docs.digitalocean.com/products/droplets/details/limits: Premium-CPU droplets 10 Gbps, all others 2 Gbps",
      READ,
      "GPU droplets are not named on that page",
    ),
  ),
  /** How fast Docker unpacks layers onto the boot disk. */
  imageExtractMBps: fig(200, "MB/s", unverified("no source: single-stream gzip/zstd layer extraction, assumed", READ)),
  /** Sequential read from the model-cache volume (weights load from it on every wake-up). */
  volumeReadMBps: fig(
    300,
    "MB/s",
    unverified(
      "docs.digitalocean.com/products/volumes/details/limits (via shared/FACTS.md): 300 MB/s baseline; DigitalOcean blog 'Block Storage Volumes Gets a Performance Burst' (2018-05-15) gives the same on Optimized droplets",
      READ,
      "GPU droplets are not in either; mmap page faults are taken to reach it",
    ),
  ),
  /** vLLM after the weights are read: FP8 conversion, torch.compile from the cached artifacts, CUDA-graph capture, KV allocation. */
  engineStart: fig(
    90,
    "s",
    unverified(
      "no source measured this for the pinned vLLM 0.24.0 with a warm compile cache on /root/.cache/vllm",
      READ,
    ),
  ),
  /** The gateway's health check interval: a ready replica takes traffic at the next probe. */
  routeHealthCheck: fig(
    10,
    "s",
    src("services/gateway.ts GPU backend health check interval (README: every 10 s)", READ),
  ),
  /** Per-node cloud-init on the baked image: host key, volume unit and mount only (services/gpu-image.ts); no package install. */
  cloudInitBaked: fig(
    20,
    "s",
    unverified(
      "our estimate: cloud-init's own stages plus writing four files and mounting the volume; nothing is installed or pulled",
      "2026-12-07",
      "measure it with `npm run hub -- gpu on --stages-out FILE`",
    ),
  ),
  /** Creating the droplet from the baked snapshot instead of DigitalOcean's GPU base image. */
  dropletCreateFromSnapshot: fig(
    120,
    "s",
    unverified(
      "shared/FACTS.md 'GPU cold start': DigitalOcean publishes no creation time, from a snapshot or otherwise; a 2022 report saw over an hour for a large droplet from a snapshot (terraform-provider-digitalocean#828)",
      "2026-12-07",
      "taken equal to the base image until measured",
    ),
  ),
  /** A volume bursts above its baseline for a minute (shared/FACTS.md, docs …/volumes/details/limits). */
  volumeBurstMBps: fig(
    450,
    "MB/s",
    src(
      "docs.digitalocean.com/products/volumes/details/limits (via shared/FACTS.md 'GPU cold start'): 300 MB/s baseline, bursts to 450 MB/s for 60 s",
      "2026-12-07",
    ),
  ),
  volumeBurstSeconds: fig(
    60,
    "s",
    src("docs.digitalocean.com/products/volumes/details/limits (via shared/FACTS.md 'GPU cold start')", "2026-12-07"),
  ),
  /** vLLM after a pre-quantized checkpoint is read: no online FP8 pass; compile from cache, CUDA graphs, KV allocation. */
  engineStartPrequantized: fig(
    60,
    "s",
    unverified(
      "vllm-project/vllm#20264 (via shared/FACTS.md): a start with a warm compile cache took 7.5 s compile + 17 s CUDA graphs + 34 s engine init",
      "2026-12-07",
      "another model and GPU; not measured for Qwen2.5-Coder-32B FP8 on an H100",
    ),
  ),
  /** After the drain, the second `pulumi up` that deletes the droplet. */
  destroy: fig(60, "s", unverified("not measured: a `pulumi up` whose only change is a droplet delete", READ)),
} as const;

/**
 * What each way of waking the GPU spends before `pulumi up` asks DigitalOcean for the droplet: the
 * pipeline's own start, its set-up, then the hub command (outputs, preview, the up's start). None
 * of it is billed. Every figure is an estimate (⚠): measure a real wake with
 * `npm run smoke -- --wake` or `npm run hub -- gpu on --stages-out FILE` and pass it back to the
 * simulator with `--stages FILE`.
 */
export type ActuatorKind = "github" | "pulumi-deployments";
export interface PipelineStage {
  readonly name: string;
  readonly figure: Figure;
}

const GITHUB_PICKUP: PipelineStage = {
  name: "runner pickup",
  figure: fig(20, "s", unverified("no source: GitHub publishes no queue time for hosted runners", "2026-12-07")),
};
/** The same hub command on every path: one stack-outputs read, the preview the volume check needs, the up until DigitalOcean is asked for the droplet. */
const HUB_COMMAND: PipelineStage = {
  name: "hub command: outputs, preview, up start",
  figure: fig(
    40,
    "s",
    unverified(
      "not measured: one stack-outputs read, `pulumi preview` of the stack, then `pulumi up` until the droplet create call",
      "2026-12-07",
    ),
  ),
};

export const PIPELINES: Readonly<
  Record<ActuatorKind | "github-before", { readonly label: string; readonly stages: readonly PipelineStage[] }>
> = {
  /** .github/workflows/autoscale.yml before the wake path was trimmed (the 120 s the model used until 2026-12). */
  "github-before": {
    label: "GitHub Actions, the workflow before the trim",
    stages: [
      GITHUB_PICKUP,
      {
        name: "checkout, node, npm ci, CLI install",
        figure: fig(
          60,
          "s",
          unverified(
            "not measured on a runner: actions/checkout, setup-node with the npm cache, `npm ci` of this repository (which also builds .build/), ssh-agent, pulumi/actions downloading the CLI",
            "2026-12-07",
          ),
        ),
      },
      HUB_COMMAND,
    ],
  },
  /** .github/workflows/autoscale.yml as shipped: node_modules and the Pulumi CLI restored from caches, no ssh-agent. */
  github: {
    label: "GitHub Actions (autoscale.yml, trimmed for wakes)",
    stages: [
      GITHUB_PICKUP,
      {
        name: "checkout, cached node_modules, CLI install",
        figure: fig(
          35,
          "s",
          unverified(
            "not measured on a runner: actions/cache restores node_modules instead of `npm ci` (a miss runs it). On the dev machine (2 cores, load 18) `npm ci` from a warm npm cache took 64 s and unpacking the same 396 MB node_modules 32 s: the install part halved",
            "2026-12-07",
          ),
        ),
      },
      HUB_COMMAND,
    ],
  },
  "pulumi-deployments": {
    label: "Pulumi Deployments (REST API)",
    stages: [
      {
        name: "deployment start",
        figure: fig(
          30,
          "s",
          unverified("no source: Pulumi publishes no start time for its hosted runner pool", "2026-12-07"),
        ),
      },
      {
        name: "clone, cached dependencies",
        figure: fig(
          25,
          "s",
          unverified(
            "not measured: git clone of the source context, then `npm ci` with the stack's deployment cache (cacheOptions) restored",
            "2026-12-07",
          ),
        ),
      },
      HUB_COMMAND,
    ],
  },
};

export const pipelineSeconds = (kind: keyof typeof PIPELINES): number =>
  PIPELINES[kind].stages.reduce((sum, s) => sum + s.figure.value, 0);

/**
 * The baked GPU image's own size in DigitalOcean's snapshot billing (used data, not the 720 GiB
 * disk): the base image plus the pulled images, unpacked. `npm run hub -- gpu image build` prints
 * the real figure.
 */
export const GPU_IMAGE_BASE_GB = fig(
  15,
  "GB",
  unverified("no source gives the used size of gpu-h100x1-base (Ubuntu 22.04, driver 575, CUDA 12.9)", "2026-12-07"),
);

/**
 * Serving throughput of one replica at saturation (prompt + generated tokens per second). The
 * only public measurement found for a ~32B dense model on one H100 with stock vLLM is for
 * Qwen3-32B in BF16; our coder is Qwen2.5-Coder-32B (same 64-layer, 8-KV-head shape) in FP8,
 * which vLLM serves faster, so the figure is a floor.
 */
export const REPLICA_THROUGHPUT: readonly {
  readonly gpuModel: string;
  readonly paramsB: number;
  readonly tokensPerSecond: Figure;
  readonly interTokenMs: Figure;
}[] = [
  {
    gpuModel: "H100",
    paramsB: 32.8,
    tokensPerSecond: fig(
      2352.82,
      "tokens/s",
      unverified(
        "docs.gpustack.ai/2.0/performance-lab/qwen3-32b/h100: vLLM baseline, ShareGPT, Total TPS 2352.82",
        READ,
        "Qwen3-32B BF16, not Qwen2.5-Coder-32B FP8; FP8 'up to 1.6x' (shared/FACTS.md) not applied",
      ),
    ),
    interTokenMs: fig(
      88.09,
      "ms",
      unverified(
        "docs.gpustack.ai/2.0/performance-lab/qwen3-32b/h100: vLLM baseline, ShareGPT, mean TPOT 88.09 ms",
        READ,
        "at the benchmark's full load",
      ),
    ),
  },
];

/**
 * vLLM's default `--max-num-seqs` for the OpenAI server: 1024 on GPUs with at least 70 GiB that
 * are not an A100 (H100, H200, MI300X), 256 otherwise. The stack does not set the flag.
 */
export const VLLM_MAX_NUM_SEQS = {
  large: 1024,
  small: 256,
  largeGpuMinGiB: 70,
  source: unverified(
    "vllm/engine/arg_utils.py EngineArgs.get_batch_defaults (read in public copies of the file, not at the v0.24.0 tag)",
    READ,
  ),
} as const;

/**
 * Typical request lengths when a trace gives none (the ServeGen rate series): the request-weighted
 * mean of the four shared clients' own length distributions (alibaba/ServeGen
 * data/language/m-large/chunk-{36,139,153,103}-dataset.json): 1107–2584 prompt tokens and 49–206
 * generated tokens per client, 1966 and 131 over all of them.
 */
export const TYPICAL_REQUEST = {
  inputTokens: 1966,
  outputTokens: 131,
  source: src("alibaba/ServeGen m-large chunk-{36,139,153,103}-dataset.json, request-weighted means", READ),
} as const;
