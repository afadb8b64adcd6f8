import type { CpuSize, GpuSize } from "./catalogue/droplets";
import type { EmbeddingModelEntry } from "./catalogue/embeddings";
import type { ModelEntry } from "./catalogue/models";
import type { CostEstimate } from "./cost";
import type { GpuFit } from "./fit";
import type { ResolvedSettings } from "./presets";
import type { Warning } from "./problems";
import type { GgufWeights, VllmWeights, WeightsLoader } from "./quantization";
import type { LoraPlan } from "./lora";
import type { SandboxPlan } from "./sandbox";
import type { OcrEngine, Tier } from "./settings";

/** The name clients send as `model`; vLLM and the llama.cpp fallback both answer to it. */
export const CODER_SERVED_NAME = "coder";
export const OCR_SERVED_NAME = "deepseek-ocr";
/** Context of the CPU fallback coder: enough for a chat turn, small enough for the CPU node's RAM. */
export const FALLBACK_CONTEXT = 8192;
/** vLLM's torch.compile and CUDA-graph cache sits beside the weights on the model-cache volume. */
export const COMPILE_CACHE_GIB = 10;
/** Whisper, TTS and docling model files on the CPU cache volume, beyond any GGUF files. */
export const CPU_MODEL_FILES_GIB = 6;

/** Collection and alerting (services/monitoring.ts). */
export type MonitoringProgram =
  | "prometheus"
  | "alertmanager"
  | "node-exporter"
  | "dcgm-exporter"
  | "amd-device-metrics-exporter";
export type MonitoringRole = "prometheus" | "alertmanager" | "node-exporter" | "gpu-exporter";
export type Program =
  | "traefik"
  | "nginx"
  | "gatekeeper"
  | "autoscaler"
  | "sandbox-front"
  | "gvisor"
  | "vllm"
  | "llama.cpp"
  | "speaches"
  | "coqui-tts"
  | "docling-serve"
  | MonitoringProgram
  | "grafana"
  | "embeddings";
export type ServiceRole =
  | "gateway"
  | "gatekeeper"
  | "autoscaler"
  | "sandbox-front"
  | "sandbox"
  | "coder"
  | "coder-fallback"
  | "ocr"
  | "ocr-fallback"
  | "stt"
  | "tts"
  | MonitoringRole
  | "grafana"
  | "embeddings"
  | "embedder";

/** One service instance on one node. */
export interface Workload {
  readonly role: ServiceRole;
  readonly node: string;
  readonly program: Program;
  readonly model?: string;
  /** Host RAM it needs on a CPU node, GiB. */
  readonly ramGiB?: number;
  /** --gpu-memory-utilization on a GPU node. */
  readonly gpuShare?: number;
}

export interface NodePlan {
  readonly name: string;
  /** sandbox: the code-execution node (stacks/sandbox.ts), no volume and no container of the hub's. */
  readonly kind: "cpu" | "gpu" | "sandbox";
  readonly size: string;
  /** False for the hybrid GPU node while the GPU is off: planned, not created. */
  readonly active: boolean;
  readonly workloads: readonly Workload[];
  /** CPU nodes: RAM budget of what runs there. */
  readonly ramNeededGiB?: number;
  readonly ramGiB?: number;
}

export interface VllmCoder {
  readonly backend: "vllm";
  readonly model: ModelEntry;
  readonly weights: VllmWeights;
  /** How the checkpoint is read from the volume on every start (stacks/quantization.ts). */
  readonly loader: WeightsLoader;
  readonly maxContext: number;
  readonly share: number;
  readonly tensorParallel: number;
  readonly fit: GpuFit;
  /** LoRA adapters served next to the base model (stacks/lora.ts); absent without any. */
  readonly lora?: LoraPlan;
}

export interface LlamaCppCoder {
  readonly backend: "llama.cpp";
  readonly model: ModelEntry;
  readonly gguf: GgufWeights;
  readonly context: number;
  readonly ramGiB: number;
}

export interface DeepSeekOcr {
  readonly engine: "deepseek-ocr";
  readonly model: ModelEntry;
  readonly weights: VllmWeights;
  readonly share: number;
  readonly maxContext: number;
  readonly fit: GpuFit;
}

export interface HubConfig {
  readonly tier: Tier;
  readonly region: string;
  readonly settings: ResolvedSettings;
  readonly cpuNode: { readonly size: CpuSize; readonly cacheGiB: number };
  /** Absent in the cpu tier. */
  readonly gpu?: {
    readonly size: GpuSize;
    readonly count: number;
    /** Whether GPU droplets exist now (always in gpu/multigpu; gpuEnabled in hybrid). */
    readonly on: boolean;
    readonly hoursPerMonth: number;
  };
  /**
   * A manual pin (`npm run hub -- gpu on|off --for 8h`): the node count the controller keeps until
   * `untilMs` (Unix ms). Present whenever gpuPinNodes and gpuPinUntil are set, expired or not: the
   * controller compares it with its own clock.
   */
  readonly gpuPin?: { readonly nodes: number; readonly untilMs: number };
  readonly modelCache: { readonly sizeGiB: number; readonly volumes: number; readonly neededGiB: number };
  readonly coder: VllmCoder | LlamaCppCoder;
  readonly fallbackCoder?: LlamaCppCoder;
  readonly ocr: DeepSeekOcr | { readonly engine: Exclude<OcrEngine, "deepseek-ocr"> };
  readonly ocrCpuFallback: boolean;
  /** /v1/embeddings: the front (programs/embeddings/) and llama.cpp in embedding mode on the CPU node; absent with embeddingModel none. */
  readonly embeddings?: EmbeddingsPlan;
  readonly stt: { readonly model: string; readonly repo: string; readonly ramGiB: number };
  readonly tts: { readonly model: string; readonly ramGiB: number };
  readonly gateway: { readonly domain?: string; readonly acmeEmail?: string; readonly adminCidrs: readonly string[] };
  readonly budgetUsd: number;
  /** Absent when the `monitoring` setting is off. */
  readonly monitoring?: MonitoringPlan;
  /** The code-execution sandbox's node (`sandbox: on`); absent when off. */
  readonly sandbox?: SandboxPlan;
  /** Grafana on the CPU node behind the gateway's /grafana/ (services/grafana.ts). */
  readonly grafana: boolean;
  readonly nodes: readonly NodePlan[];
  readonly cost: CostEstimate;
  readonly warnings: readonly Warning[];
  /** The k8s tier's cluster (stacks/kubernetes.ts); absent in the droplet tiers. */
  readonly kubernetes?: KubernetesPlan;
}

/** DigitalOcean Kubernetes: the release, the two node pools and the state volumes beyond the model caches. */
export interface KubernetesPlan {
  readonly release: { readonly slug: string; readonly kubernetes: string; readonly minor: string };
  readonly cpuPool: {
    readonly size: string;
    readonly nodes: number;
    readonly allocatableGiBPerNode: number;
    readonly ramNeededGiB: number;
    /** Roles per node as first-fit packs them: an estimate, the scheduler decides. */
    readonly placement: readonly (readonly string[])[];
  };
  readonly gpuPool: {
    readonly size: string;
    readonly minNodes: number;
    readonly maxNodes: number;
    readonly gpusPerNode: number;
    /** The extended resource a GPU pod requests (nvidia.com/gpu, amd.com/gpu). */
    readonly resource: string;
    /** Expected GPU node-hours a month, for the cost. */
    readonly nodeHours: number;
  };
  readonly haControlPlane: boolean;
  readonly loadBalancerNodes: number;
  /** Claims for state beyond the model caches (metrics, dashboards, the ledger, certificates). */
  readonly statePvcs: readonly { readonly name: string; readonly sizeGiB: number }[];
  readonly storageClass: string;
  readonly prices: { readonly haControlPlaneMonthlyUsd: number; readonly loadBalancerNodeMonthlyUsd: number };
}

export const gpuNodeName = (index: number): string => `gpu-${index}`;
export const CPU_NODE_NAME = "cpu";
/**
 * The longest a pin may reach ahead, from any source (the hub command, the stack file, the
 * controller's file): a longer one is a tier choice (gpu is always on), not a pin, and the budget is monthly.
 */
export const MAX_PIN_MS = 31 * 24 * 3600 * 1000;

/** Prometheus, Alertmanager and the exporters, as the settings ask for them. */
export interface MonitoringPlan {
  readonly retentionDays: number;
  /** --storage.tsdb.retention.size: a quarter of the CPU cache volume, so metrics never fill it. */
  readonly retentionSizeGiB: number;
  /** node_exporter and the GPU exporters run on droplets only (not on a laptop's Docker). */
  readonly exporters: boolean;
  readonly email?: { readonly to: string; readonly smarthost: string; readonly from: string; readonly user?: string };
}

/** The CPU node's embedder, as placed: what services/embeddings.ts renders. */
export interface EmbeddingsPlan {
  readonly model: EmbeddingModelEntry;
  /** `-hf` argument of llama-server. */
  readonly hfArg: string;
  /** Longest input, tokens: llama.cpp's --ctx-size, --batch-size and --ubatch-size. */
  readonly inputTokens: number;
  /** llama.cpp's resident estimate: GGUF + KV cache + compute buffers. */
  readonly ramGiB: number;
}
