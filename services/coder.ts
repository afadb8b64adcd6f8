import type { HubConfig, LlamaCppCoder, NodePlan, ServiceRole, Workload } from "../stacks/hub-config";
import { CODER_SERVED_NAME } from "../stacks/hub-config";
import { LLAMA_CPP_SERVER_IMAGE, pythonHttpCheck, vllmImage } from "./images";
import { CPU_CACHE_MOUNT, MODEL_CACHE_MOUNT } from "./node-setup";
import { GPU_SERVICE_PORTS } from "./ports";
import { SERVICE_PORTS } from "./routes";
import type { HealthCheck, ServiceSpec } from "./spec";
import { coderServeArgs, ocrServeArgs } from "./vllm";
import { VLLM_BACKEND_MIDDLEWARE, vllmStartScript } from "./backend-header";
import { ADAPTERS_CONTAINER_DIR, ADAPTERS_VOLUME_DIR } from "../stacks/lora";

// ---- placement and memory, shared by the CPU service files ----

/** The node and workload of `role` on the CPU node, exactly as stacks/resolve.ts placed it. */
export function cpuPlacement(
  hub: HubConfig,
  role: ServiceRole,
): { readonly node: NodePlan; readonly workload: Workload } {
  for (const node of hub.nodes.filter((n) => n.kind === "cpu")) {
    const workload = node.workloads.find((w) => w.role === role);
    if (workload) return { node, workload };
  }
  throw new Error(
    `no ${role} workload is placed on a CPU node (${hub.tier} tier): the spec would contradict the placement in stacks/resolve.ts`,
  );
}

/** Headroom above the RAM estimate, as a fraction of it: the estimates are unmeasured. */
export const MEMORY_MARGIN = 0.25;

/**
 * Hard memory limit, MiB: the placement's RAM estimate plus up to MEMORY_MARGIN, taken only from
 * the node's spare RAM and shared in proportion to each workload's estimate. So the limits never
 * add up to more than the node has: one runaway service is killed instead of the whole node.
 */
export function memoryLimitMiB(node: NodePlan, workload: Workload): number {
  const ram = workload.ramGiB ?? 0;
  if (ram <= 0) throw new Error(`${workload.role} on ${node.name} has no RAM estimate to size its memory limit from`);
  const spare = Math.max(0, (node.ramGiB ?? 0) - (node.ramNeededGiB ?? 0));
  const placed = node.workloads.reduce((sum, w) => sum + (w.ramGiB ?? 0), 0);
  const margin = Math.min(ram * MEMORY_MARGIN, (spare * ram) / placed);
  return Math.floor((ram + margin) * 1024);
}

// ---- vLLM on the GPU nodes ----

/** Planning figure for Hugging Face downloads to a droplet; unmeasured, kept low on purpose. */
export const ASSUMED_DOWNLOAD_MB_PER_S = 100;
/** Loading weights, torch.compile and CUDA-graph capture after the download. */
const VLLM_WARMUP_SECONDS = 900;

/**
 * Docker's grace before failed checks count: the first start downloads the whole checkpoint
 * (65.5 GB for Qwen2.5-Coder-32B ≈ 11 min, 690 GB for DeepSeek-V3 ≈ 2 h at the assumed rate),
 * then compiles. Later starts read the volume and are healthy long before it ends.
 */
export const vllmStartPeriodSeconds = (diskGB: number): number =>
  VLLM_WARMUP_SECONDS + Math.ceil((diskGB * 1000) / ASSUMED_DOWNLOAD_MB_PER_S);

const GPU_CONTAINER_HF = "/root/.cache/huggingface";
const GPU_CONTAINER_COMPILE = "/root/.cache/vllm";

const activeGpuNodes = (hub: HubConfig): NodePlan[] =>
  hub.gpu?.on ? hub.nodes.filter((n) => n.kind === "gpu" && n.active) : [];

function vllmSpec(
  hub: HubConfig,
  node: NodePlan,
  role: "coder" | "ocr",
  args: readonly string[],
  port: number,
  diskGB: number,
): ServiceSpec {
  const vendor = hub.gpu?.size.vendor;
  if (!vendor) throw new Error(`${role} on ${node.name}: vLLM needs a GPU size`);
  const health: HealthCheck = {
    path: "/health",
    test: pythonHttpCheck(`http://127.0.0.1:${port}/health`),
    intervalSeconds: 30,
    timeoutSeconds: 10,
    startPeriodSeconds: vllmStartPeriodSeconds(diskGB),
    retries: 5,
  };
  return {
    name: role,
    role,
    program: "vllm",
    node: node.name,
    image: vllmImage(vendor),
    // Both images end in ENTRYPOINT ["vllm", "serve"]; set anyway so the ROCm build, whose
    // v0.24.0 Dockerfile could not be read, cannot silently differ.
    entrypoint: ["vllm", "serve"],
    command: [...args],
    env: {
      HF_HOME: GPU_CONTAINER_HF,
      VLLM_CACHE_ROOT: GPU_CONTAINER_COMPILE,
      VLLM_NO_USAGE_STATS: "1",
      DO_NOT_TRACK: "1",
    },
    // vLLM reads VLLM_API_KEY when --api-key is absent: the key stays out of `docker inspect` args.
    secretEnv: { VLLM_API_KEY: "hubApiKey" },
    port,
    publishOnPrivateIp: true,
    // Weights and the compile cache on the persistent volume: cold start is the top pain.
    mounts: [
      { hostPath: `${MODEL_CACHE_MOUNT}/huggingface`, containerPath: GPU_CONTAINER_HF },
      { hostPath: `${MODEL_CACHE_MOUNT}/vllm`, containerPath: GPU_CONTAINER_COMPILE },
    ],
    gpu: { vendor },
    ipcHost: true,
    health,
  };
}

/** The vLLM coder on every GPU node that exists now (none while the hybrid GPU is off). */
export function vllmCoderSpecs(hub: HubConfig): ServiceSpec[] {
  const coder = hub.coder;
  if (coder.backend !== "vllm") return [];
  return activeGpuNodes(hub).map((node) => {
    const spec = vllmSpec(
      hub,
      node,
      "coder",
      coderServeArgs(coder, GPU_SERVICE_PORTS.coder),
      GPU_SERVICE_PORTS.coder,
      coder.weights.diskGB,
    );
    // Every answer names its replica (X-Hub-Backend: gpu-<i>; services/backend-header.ts):
    // `sh -c <script> vllm-serve <args>` writes the middleware module, then runs `vllm serve "$@"`.
    const volumeAdapters = coder.lora?.adapters.some((a) => a.source.kind === "volume") ?? false;
    return {
      ...spec,
      entrypoint: ["/bin/sh", "-c", vllmStartScript(undefined, { loraGuard: volumeAdapters }), "vllm-serve"],
      command: [...spec.command, "--middleware", VLLM_BACKEND_MIDDLEWARE],
      env: { ...spec.env, HUB_BACKEND_NAME: node.name },
      // Adapters trained by `hub finetune` live on the model-cache volume; vLLM only reads them.
      mounts: volumeAdapters
        ? [
            ...spec.mounts,
            {
              hostPath: `${MODEL_CACHE_MOUNT}/${ADAPTERS_VOLUME_DIR}`,
              containerPath: ADAPTERS_CONTAINER_DIR,
              readOnly: true,
            },
          ]
        : spec.mounts,
    };
  });
}

/** All GPU memory of one GPU node, GB. */
const gpuMemoryGB = (hub: HubConfig): number => (hub.gpu ? hub.gpu.size.gpuCount * hub.gpu.size.gpuMemoryGBPerGpu : 0);

/** Seconds between two looks at the coder's /health while DeepSeek-OCR waits to start. */
export const GPU_START_POLL_SECONDS = 5;

/**
 * Start command of the second vLLM process on a GPU: wait until the first one answers /health,
 * then run `vllm serve "$@"`. vLLM sizes its KV cache from a memory profile that counts every
 * process's GPU memory device-wide (vllm/v1/worker/gpu_worker.py, "Error in memory profiling"),
 * so two vLLM processes profiling at once on one GPU fail or mis-size each other. Pulumi's create
 * order alone would not help: after a reboot or a crash Docker's restart policy starts both at
 * once, so the wait lives in the container. The coder goes first and never waits: the main service
 * must not depend on OCR being healthy. The URL and interval come from the environment (set in the
 * spec) so the same script can be run against a stand-in.
 */
export const WAIT_FOR_HEALTH_SCRIPT = [
  'echo "waiting for $HUB_WAIT_FOR_HEALTH_URL before starting vLLM (one vLLM profiles GPU memory at a time)"',
  // python3 ships in both vLLM images (the health checks use it too); a non-2xx answer raises.
  `until python3 -c 'import os, urllib.request; urllib.request.urlopen(os.environ["HUB_WAIT_FOR_HEALTH_URL"], timeout=5)' 2>/dev/null; do sleep "$HUB_WAIT_POLL_SECONDS"; done`,
  'echo "$HUB_WAIT_FOR_HEALTH_URL is healthy; starting vLLM"',
  'exec vllm serve "$@"',
].join("\n");

/** DeepSeek-OCR beside the coder on every GPU node, when it is the OCR engine; it starts after the coder is healthy. */
export function deepSeekOcrSpecs(hub: HubConfig): ServiceSpec[] {
  const ocr = hub.ocr;
  if (ocr.engine !== "deepseek-ocr") return [];
  const coderOnGpu = hub.coder.backend === "vllm";
  return activeGpuNodes(hub).map((node) => {
    const spec = vllmSpec(
      hub,
      node,
      "ocr",
      ocrServeArgs(ocr, GPU_SERVICE_PORTS.ocr),
      GPU_SERVICE_PORTS.ocr,
      ocr.weights.diskGB,
    );
    if (!coderOnGpu) return spec;
    // The coder is on the same node's Docker network under its container name.
    const coderHealth = `http://coder:${GPU_SERVICE_PORTS.coder}/health`;
    return {
      ...spec,
      // `sh -c <script> vllm-serve <args>`: "$@" in the script are the vLLM arguments (command).
      entrypoint: ["/bin/sh", "-c", WAIT_FOR_HEALTH_SCRIPT, "vllm-serve"],
      env: { ...spec.env, HUB_WAIT_FOR_HEALTH_URL: coderHealth, HUB_WAIT_POLL_SECONDS: String(GPU_START_POLL_SECONDS) },
      // Its grace period covers waiting out the coder's first start too, bounded by the GPU rather
      // than the coder's model so that a new coder model does not recreate this container: the
      // download is at most twice the GPU memory (online FP8 fetches the BF16 checkpoint).
      health: {
        ...spec.health,
        startPeriodSeconds: spec.health.startPeriodSeconds + vllmStartPeriodSeconds(2 * gpuMemoryGB(hub)),
      },
    };
  });
}

// ---- llama.cpp on the CPU node ----

/** vCPUs left to the gateway, Whisper, TTS and docling on the CPU node. */
export const CPU_THREADS_RESERVED = 2;
const LLAMA_CACHE_DIR = "/models";

export const llamaCppThreads = (vcpu: number): number => Math.max(1, vcpu - CPU_THREADS_RESERVED);

/** Arguments after /app/llama-server (the image's ENTRYPOINT). */
export function llamaServerArgs(coder: LlamaCppCoder, vcpu: number): string[] {
  return [
    // Downloads <repo>:<quant> into LLAMA_CACHE on first start, then reads it from there.
    "-hf",
    coder.gguf.hfArg,
    // The name clients send as `model`: the same as vLLM's --served-model-name.
    "--alias",
    CODER_SERVED_NAME,
    "--host",
    "0.0.0.0",
    "--port",
    String(SERVICE_PORTS.llamaCpp),
    "--ctx-size",
    String(coder.context),
    // One slot: the whole context is one request's, as the RAM estimate assumes.
    "--parallel",
    "1",
    "--threads",
    String(llamaCppThreads(vcpu)),
    // Prometheus' llamacpp job scrapes /metrics, which llama-server serves only with this flag (common/arg.cpp, env LLAMA_ARG_ENDPOINT_METRICS).
    "--metrics",
  ];
}

function llamaCppSpec(hub: HubConfig, role: "coder" | "coder-fallback", coder: LlamaCppCoder): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, role);
  const url = `http://127.0.0.1:${SERVICE_PORTS.llamaCpp}/health`;
  return {
    name: role,
    role,
    program: "llama.cpp",
    node: node.name,
    image: LLAMA_CPP_SERVER_IMAGE,
    command: llamaServerArgs(coder, hub.cpuNode.size.vcpu),
    env: { LLAMA_CACHE: LLAMA_CACHE_DIR },
    // llama-server's --api-key is declared with set_env("LLAMA_API_KEY") (common/arg.cpp).
    secretEnv: { LLAMA_API_KEY: "hubApiKey" },
    port: SERVICE_PORTS.llamaCpp,
    mounts: [{ hostPath: `${CPU_CACHE_MOUNT}/models/llama.cpp`, containerPath: LLAMA_CACHE_DIR }],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    // The server image has curl and no Python; /health answers 503 while the model loads.
    health: {
      path: "/health",
      test: ["CMD", "curl", "-fsS", url],
      intervalSeconds: 30,
      timeoutSeconds: 10,
      startPeriodSeconds: 600 + Math.ceil((coder.gguf.sizeGB * 1000) / ASSUMED_DOWNLOAD_MB_PER_S),
      retries: 3,
    },
  };
}

/** llama.cpp: the cpu tier's coder, or the CPU fallback the gateway uses while the GPU is off. */
export function llamaCppSpecs(hub: HubConfig): ServiceSpec[] {
  const specs: ServiceSpec[] = [];
  if (hub.coder.backend === "llama.cpp") specs.push(llamaCppSpec(hub, "coder", hub.coder));
  if (hub.fallbackCoder) specs.push(llamaCppSpec(hub, "coder-fallback", hub.fallbackCoder));
  return specs;
}

/** Everything this file runs: vLLM coder and DeepSeek-OCR on the GPU nodes, llama.cpp on the CPU node. */
export function coderSpecs(hub: HubConfig): ServiceSpec[] {
  return [...vllmCoderSpecs(hub), ...deepSeekOcrSpecs(hub), ...llamaCppSpecs(hub)];
}
