import { CONTAINER_PATHS, EMBEDDINGS_PORT, ENV, HEALTH_PATH, type ServedModel } from "../programs/embeddings/contract";
import {
  EMBEDDINGS_FRONT_HEAP_MIB,
  EMBEDDINGS_ROUTER_RAM_GIB,
  MAX_INPUTS_PER_REQUEST,
} from "../stacks/catalogue/embeddings";
import type { EmbeddingsPlan, HubConfig } from "../stacks/hub-config";
import { ASSUMED_DOWNLOAD_MB_PER_S, CPU_THREADS_RESERVED, cpuPlacement, memoryLimitMiB } from "./coder";
import { durationSeconds } from "./documents";
import { FORWARDING_TIMEOUTS } from "./gateway";
import { LLAMA_CPP_SERVER_IMAGE, NODE_IMAGE } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { EMBEDDINGS_BODY_BYTES, EMBEDDINGS_CONTAINER, SERVICE_PORTS } from "./routes";
import type { ServiceSpec } from "./spec";

/**
 * /v1/embeddings on the CPU node: llama.cpp's server in embedding mode (`embedder`), and in front
 * of it the hub's embeddings program (`embeddings`, programs/embeddings/), which answers as
 * OpenAI does where llama-server would not (unknown model, `dimensions`, over-long input).
 */
export { EMBEDDINGS_CONTAINER };
export const EMBEDDER_CONTAINER = "embedder";

const ROOT = `${CPU_CACHE_MOUNT}/embeddings`;
export const EMBEDDINGS_DIRS = { app: `${ROOT}/app` } as const;
export const EMBEDDINGS_FILES = { bundle: `${EMBEDDINGS_DIRS.app}/embeddings.js` } as const;
const LLAMA_CACHE_DIR = "/models";

/**
 * Threads of the embedder: the cores the light services share where a llama.cpp coder (or its CPU
 * fallback) has the rest; all but those where none does (gpu, multigpu).
 */
export function embedderThreads(hub: HubConfig): number {
  const cpuCoder = hub.coder.backend === "llama.cpp" || hub.fallbackCoder !== undefined;
  return cpuCoder ? CPU_THREADS_RESERVED : Math.max(1, hub.cpuNode.size.vcpu - CPU_THREADS_RESERVED);
}

/** Arguments after /app/llama-server; every flag is in llama-server's own list (test/fixtures/reference/llama.cpp/). */
export function embedderArgs(plan: EmbeddingsPlan, threads: number): string[] {
  const n = String(plan.inputTokens);
  return [
    "-hf",
    plan.hfArg,
    "--alias",
    plan.model.id,
    "--host",
    "0.0.0.0",
    "--port",
    String(SERVICE_PORTS.llamaCpp),
    "--embeddings",
    "--pooling",
    plan.model.pooling,
    // One slot of the served context; an embedding input must fit one physical batch (else llama-server answers "too large to process").
    "--ctx-size",
    n,
    "--batch-size",
    n,
    "--ubatch-size",
    n,
    "--parallel",
    "1",
    "--threads",
    String(threads),
    // Flash attention keeps the attention scores out of the compute buffer the RAM estimate counts.
    "--flash-attn",
    "on",
    // The front appends the end-of-text token itself: exactly one, whatever the GGUF's metadata says.
    ...(plan.model.endOfText ? ["--override-kv", "tokenizer.ggml.add_eos_token=bool:false"] : []),
    "--no-webui",
    "--metrics",
  ];
}

/** The model table the front serves (programs/embeddings/contract.ts). */
export function servedModels(plan: EmbeddingsPlan): ServedModel[] {
  const m = plan.model;
  return [
    {
      name: m.id,
      upstream: `http://${EMBEDDER_CONTAINER}:${SERVICE_PORTS.llamaCpp}`,
      upstreamModel: m.id,
      dimensions: m.dimensions,
      ...(m.matryoshka ? { matryoshkaMin: m.matryoshka.min } : {}),
      maxInputTokens: plan.inputTokens,
      vocabSize: m.vocabSize,
      ...(m.endOfText ? { endOfText: { text: m.endOfText.text, tokenId: m.endOfText.tokenId } } : {}),
      maxInputs: MAX_INPUTS_PER_REQUEST,
      owner: "inference-hub",
    },
  ];
}

function embedderSpec(hub: HubConfig, plan: EmbeddingsPlan): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, "embedder");
  const url = `http://127.0.0.1:${SERVICE_PORTS.llamaCpp}/health`;
  return {
    name: EMBEDDER_CONTAINER,
    role: "embedder",
    program: "llama.cpp",
    node: node.name,
    image: LLAMA_CPP_SERVER_IMAGE,
    command: embedderArgs(plan, embedderThreads(hub)),
    env: { LLAMA_CACHE: LLAMA_CACHE_DIR },
    // llama-server's --api-key is declared with set_env("LLAMA_API_KEY") (common/arg.cpp).
    secretEnv: { LLAMA_API_KEY: "hubApiKey" },
    port: SERVICE_PORTS.llamaCpp,
    // The same GGUF cache as the CPU coder: one directory of llama.cpp downloads on the volume.
    mounts: [{ hostPath: `${CPU_CACHE_MOUNT}/models/llama.cpp`, containerPath: LLAMA_CACHE_DIR }],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    health: {
      path: "/health",
      test: ["CMD", "curl", "-fsS", url],
      intervalSeconds: 30,
      timeoutSeconds: 10,
      startPeriodSeconds: 300 + Math.ceil((plan.model.gguf.sizeGB * 1000) / ASSUMED_DOWNLOAD_MB_PER_S),
      retries: 3,
    },
  };
}

function frontSpec(hub: HubConfig, plan: EmbeddingsPlan): ServiceSpec {
  const { node } = cpuPlacement(hub, "embeddings");
  return {
    name: EMBEDDINGS_CONTAINER,
    role: "embeddings",
    program: "embeddings",
    node: node.name,
    image: NODE_IMAGE,
    command: ["node", CONTAINER_PATHS.bundle],
    env: {
      NODE_ENV: "production",
      // V8 collects before the container's limit, not after it.
      NODE_OPTIONS: `--max-old-space-size=${EMBEDDINGS_FRONT_HEAP_MIB}`,
      [ENV.port]: String(EMBEDDINGS_PORT),
      [ENV.models]: JSON.stringify(servedModels(plan)),
      [ENV.maxBodyBytes]: String(EMBEDDINGS_BODY_BYTES),
      [ENV.upstreamTimeoutSeconds]: String(durationSeconds(FORWARDING_TIMEOUTS.responseHeaderTimeout)),
    },
    // It forwards the backends' key the gatekeeper put on the request; it holds none itself.
    secretEnv: {},
    port: EMBEDDINGS_PORT,
    mounts: [{ hostPath: EMBEDDINGS_DIRS.app, containerPath: CONTAINER_PATHS.app, readOnly: true }],
    memoryLimitMiB: Math.round(EMBEDDINGS_ROUTER_RAM_GIB * 1024),
    health: {
      path: HEALTH_PATH,
      // node:alpine has no curl; Node 22's fetch does the probe.
      test: [
        "CMD",
        "node",
        "-e",
        `fetch('http://127.0.0.1:${EMBEDDINGS_PORT}${HEALTH_PATH}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
      ],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 20,
      retries: 3,
    },
  };
}

/** Both containers, where embeddingModel is not none. */
export function embeddingsSpecs(hub: HubConfig): ServiceSpec[] {
  return hub.embeddings ? [frontSpec(hub, hub.embeddings), embedderSpec(hub, hub.embeddings)] : [];
}
