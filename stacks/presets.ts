import type { OPTIONAL_SETTINGS, Settings, Tier } from "./settings";

type OptionalSetting = (typeof OPTIONAL_SETTINGS)[number];

export type ResolvedSettings = Omit<Settings, OptionalSetting> & Partial<Pick<Settings, OptionalSetting>>;

/** What every tier shares unless it says otherwise: the seed design's speech models, one GPU, tor1. */
const SHARED: Omit<ResolvedSettings, "tier" | "budgetUsd"> = {
  // The seed design used nyc3, which has no GPU sizes. tor1 offers H100, L40S and RTX Ada, so the
  // cpu, gpu and hybrid tiers share it and one stack can move between them without moving its
  // volumes (a volume cannot leave its region).
  region: "tor1",
  cpuSize: "c-4",
  cpuCacheGiB: 25,
  gpuSize: "gpu-h100x1-80gb",
  gpuCount: 1,
  gpuEnabled: true,
  gpuHoursPerMonth: 730,
  modelCacheGiB: 100,
  // FP8 halves the 65.5 GB of BF16 weights so DeepSeek-OCR fits beside the coder on one H100.
  llmModel: "qwen2.5-coder-32b",
  llmQuantization: "8bit",
  llmMaxContext: 32768,
  llmGpuMemoryPercent: 70,
  llmTensorParallelSize: 1,
  // No adapters until a stack lists some (docs/finetune.md).
  llmLoraAdapters: [],
  llmMaxLoras: 1,
  ocrEngine: "deepseek-ocr",
  ocrGpuMemoryPercent: 20,
  ocrCpuFallback: false,
  sttModel: "base",
  ttsModel: "tts_models/en/ljspeech/tacotron2-DDC",
  // Licences are the user's to accept: a model that asks (XTTS, CPML) is refused until they do.
  ttsAcceptModelLicense: false,
  fallbackModel: "none",
  // /v1/embeddings on every tier, from the CPU node (stacks/catalogue/embeddings.ts).
  embeddingModel: "qwen3-embedding-0.6b",
  adminCidrs: [],
  sshKeyFingerprints: [],
  rateLimitPerMinute: 120,
  rateLimitBurst: 30,
  gpuWindows: [],
  // The autoscaler (programs/autoscaler/README.md): always-on tiers keep a floor of one node.
  gpuMinNodes: 1,
  gpuMaxNodes: 1,
  gpuIdleMinutes: 10,
  gpuTargetLoadPercent: 80,
  gpuPredictiveWake: true,
  // The controller runs wherever there is a GPU to scale; it only advises until given a dispatch token.
  autoscaler: true,
  autoscalerDispatchRef: "main",
  autoscalerActuator: "github",
  // Holding while the GPU wakes (docs/gpu-wake.md): opt-in per request or per key, bounded.
  gpuHoldMaxSeconds: 600,
  gpuHoldMaxRequests: 64,
  gpuHoldMaxPerKey: 8,
  // Collection and alerts on by default (services/monitoring.ts); Prometheus' own default retention.
  monitoring: true,
  prometheusRetentionDays: 15,
  // Opt-in: a node of its own, billed from the day it is on (docs/sandbox.md).
  sandbox: "none",
  sandboxSize: "s-2vcpu-4gb",
};

/** A CPU-only tier serves the coder with llama.cpp and OCR with docling. */
const NO_GPU = {
  gpuCount: 0,
  gpuEnabled: false,
  gpuHoursPerMonth: 0,
  gpuMinNodes: 0,
  gpuMaxNodes: 0,
  autoscaler: false,
  llmQuantization: "4bit",
  llmGpuMemoryPercent: 90,
  ocrEngine: "docling",
} as const;

/** Tier presets. Each one passes every plan-time check on its own (a test proves it). */
export const PRESETS: Readonly<Record<Tier, ResolvedSettings>> = {
  cpu: {
    ...SHARED,
    ...NO_GPU,
    tier: "cpu",
    // The CPU coder (7B, 4-bit), docling, Whisper, TTS and monitoring need 15.4 GiB; embeddings
    // (1.3 GiB) take it past a c-8's 16, and no 24 GiB size exists: c-16 (+$168/month). With
    // embeddingModel none, c-8 is enough again.
    cpuSize: "c-16",
    llmModel: "qwen2.5-coder-7b",
    llmMaxContext: 16384,
    // $348.50 a month with the preset's volumes; room for a larger model cache.
    budgetUsd: 400,
  },
  gpu: { ...SHARED, tier: "gpu", budgetUsd: 2800 },
  hybrid: {
    ...SHARED,
    tier: "hybrid",
    // On demand: the operator turns it on for a working day (`npm run hub -- gpu on`).
    gpuEnabled: false,
    gpuHoursPerMonth: 40,
    // Scale to zero when idle; the model cache stays.
    gpuMinNodes: 0,
    // Keeps /v1/chat/completions answering (slowly) while the GPU is off.
    fallbackModel: "qwen2.5-coder-1.5b",
    // 7.6 GiB of services plus embeddings (1.3 GiB) exceed a c-4's 8 GiB: 8 shared vCPUs and
    // 16 GiB for $12/month more than 4 dedicated vCPUs and 8 GiB.
    cpuSize: "s-8vcpu-16gb",
    budgetUsd: 400,
  },
  multigpu: {
    ...SHARED,
    tier: "multigpu",
    // DeepSeek-V3 needs 8xH200, offered in nyc2 and atl1 only.
    region: "atl1",
    // docling, Whisper and TTS fill a c-4's 8 GiB exactly; c-8 leaves headroom.
    cpuSize: "c-8",
    // DeepSeek-V3 ships ~690 GB of FP8 weights: 8xH100 (640 GB) cannot hold them; 8xH200 can.
    gpuSize: "gpu-h200x8-1128gb",
    // 690 GB of weights (~643 GiB) plus the compile cache.
    modelCacheGiB: 800,
    llmModel: "deepseek-v3",
    llmQuantization: "none",
    llmMaxContext: 65536,
    llmGpuMemoryPercent: 90,
    llmTensorParallelSize: 8,
    // DeepSeek-OCR would take GPU memory from an 8-way tensor-parallel group; OCR runs on CPU.
    ocrEngine: "docling",
    ocrGpuMemoryPercent: 5,
    budgetUsd: 21000,
  },
  k8s: {
    ...SHARED,
    tier: "k8s",
    // Each CPU pool node; the plan packs the CPU services onto as many as they need (two here).
    cpuSize: "s-4vcpu-8gb",
    // KEDA wakes the GPU pool on the first allowed coder request and empties it when idle
    // (DigitalOcean documents a pool at 0 both ways: the plan warns).
    gpuMinNodes: 0,
    gpuMaxNodes: 4,
    // Expected GPU node-hours a month: a working month of one node (8 h x 20 days).
    gpuHoursPerMonth: 160,
    // Answers /v1/chat/completions while no GPU replica is ready, as in hybrid.
    fallbackModel: "qwen2.5-coder-1.5b",
    budgetUsd: 1000,
  },
  local: {
    ...SHARED,
    ...NO_GPU,
    tier: "local",
    region: "local",
    cpuSize: "local",
    cpuCacheGiB: 10,
    modelCacheGiB: 10,
    // Small enough for a laptop: the 1.5B coder in 4 bits answers in a couple of GiB.
    llmModel: "qwen2.5-coder-1.5b",
    llmMaxContext: 8192,
    budgetUsd: 0,
  },
};
