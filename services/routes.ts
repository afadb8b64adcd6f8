import type { HubConfig } from "../stacks/hub-config";
import { CODER_SERVED_NAME, CPU_NODE_NAME } from "../stacks/hub-config";
import { GRAFANA_CONTAINER, GRAFANA_PATH_PREFIX, GRAFANA_PORT } from "./grafana";
import { GPU_SERVICE_PORTS } from "./ports";
import { HOLDER_HEALTH_PATH, OFF_ANSWER_PORT } from "../programs/autoscaler/controller/contract";
import {
  MAX_REQUEST_BYTES,
  SANDBOX_FRONT_PORT,
  SANDBOX_HEALTH_PATH,
  SANDBOX_PATH_PREFIX,
  SANDBOX_SCOPE,
} from "../programs/sandbox/protocol";
import {
  EMBEDDINGS_PATH,
  EMBEDDINGS_PORT,
  HEALTH_PATH as EMBEDDINGS_HEALTH_PATH,
  MODELS_PATH_PREFIX,
} from "../programs/embeddings/contract";

/**
 * The hub's one API surface: which public path goes to which program on which node, and what
 * answers when that program is away. Traefik's dynamic configuration is rendered from this table
 * (services/gateway.ts), and the README's route table documents it.
 */

/** Where a backend lives: a container on the gateway node's Docker network, or a GPU node over the VPC. */
export type BackendAddress =
  | { readonly kind: "container"; readonly container: string }
  | { readonly kind: "vpc"; readonly node: string };

export interface Backend {
  readonly service: string;
  readonly node: string;
  readonly address: BackendAddress;
  readonly port: number;
  readonly healthPath: string;
}

import type { Scope } from "../programs/gatekeeper/protocol";

export interface Route {
  /** Router and service name in Traefik. */
  readonly name: string;
  readonly scope: Scope;
  /** Public paths (exact), or prefixes when `prefix` is set. */
  readonly paths: readonly string[];
  readonly prefix?: boolean;
  /** Replace this public prefix with `/v1/` before forwarding (the OCR paths). */
  readonly rewritePrefix?: string;
  /** Replicas, load-balanced; empty while the GPU is off. */
  readonly primary: readonly Backend[];
  /** Answers when no primary is healthy: a CPU stand-in, or the "GPU tier is off" 503. */
  readonly fallback?: Backend | "gpu-off";
  /**
   * Asked before the fallback when no primary is healthy: the holder (programs/holding/), which
   * holds requests that wait for a waking GPU and hands the others to the fallback itself; the
   * fallback answers directly while the holder is down.
   * @default - none: the fallback answers
   */
  readonly holder?: Backend;
  /** Streaming responses (server-sent events): never buffered by the proxy. */
  readonly streaming: boolean;
  /**
   * Delete the credentials (Authorization, X-Api-Key) before the backend: for a backend that
   * trusts the gatekeeper's X-Hub-Key-Id alone (Grafana's auth.proxy), which would otherwise
   * read the backends' key as one of its own API keys and refuse it.
   * @default - false: the backend gets the backends' key the gatekeeper swapped in
   */
  readonly dropCredentials?: boolean;
  /**
   * The `model` names clients may send on this route, where the route serves named models: the
   * coder and its LoRA adapters (`coder-<name>`, listed by vLLM's /v1/models).
   * @default - none named here
   */
  readonly models?: readonly string[];
  /** What to do instead when the backend did not start answering in time (the 504 page). @default - ask for less, or stream */
  readonly timeoutHint?: string;
  /** Largest request body accepted, bytes (only enforced on non-streaming routes; see gateway). */
  readonly maxBodyBytes: number;
  readonly description: string;
}

const MB = 1024 * 1024;
/** OpenAI's own limit for audio uploads. */
export const AUDIO_BODY_BYTES = 25 * MB;
export const DOCUMENT_BODY_BYTES = 50 * MB;
export const CHAT_BODY_BYTES = 10 * MB;
/** Thousands of retrieval chunks per request; far more would not be embedded within the gateway's timeout on a CPU. */
export const EMBEDDINGS_BODY_BYTES = 4 * MB;

export const SERVICE_PORTS = {
  stt: 8000,
  tts: 5002,
  docling: 5001,
  llamaCpp: 8080,
  errors: 8080,
} as const;

export const GPU_OFF_SERVICE = "gpu-off";

/** The autoscaling controller's container (services/autoscaler.ts). */
export const AUTOSCALER_CONTAINER = "autoscaler";
/** Whether this stack runs the autoscaling controller: a GPU coder to scale, and the setting on. */
export const autoscalerRuns = (hub: HubConfig): boolean =>
  hub.settings.autoscaler && hub.gpu !== undefined && hub.coder.backend === "vllm";
/** Whether the controller answers the coder route while no replica is ready: it runs, and no CPU stand-in does it. */
export const autoscalerAnswersOff = (hub: HubConfig): boolean => autoscalerRuns(hub) && !hub.fallbackCoder;
/** The controller's off-state answer as the coder route's fallback (its 503 names the state and counts as demand). */
export const CODER_OFF_SERVICE = "coder-off";
/** The controller's holder in front of a CPU stand-in (health-checked, so the stand-in answers while the controller is down). */
export const CODER_HOLD_SERVICE = "coder-hold";
/** Whether coder requests may wait for a waking GPU: the controller runs (it holds them) and gpuHoldMaxSeconds is above 0. */
export const holdingRuns = (hub: HubConfig): boolean => autoscalerRuns(hub) && hub.settings.gpuHoldMaxSeconds > 0;

export const DOCUMENTS_ROUTE = "documents";
export const EMBEDDINGS_ROUTE = "embeddings";
/** The embeddings front's container (services/embeddings.ts). */
export const EMBEDDINGS_CONTAINER = "embeddings";
/**
 * docling-serve's API under the hub's /v1/ocr/ prefix: the synchronous conversions, which end
 * with 504 after DOCLING_SERVE_MAX_SYNC_WAIT, and the asynchronous ones, which do not
 * (docling-serve v1.31.0 read: /v1/convert/{source,file}/async, /v1/status/poll/{task_id},
 * /v1/result/{task_id}; FACTS.md).
 */
export const DOCUMENTS_PATH_PREFIXES = ["/v1/ocr/convert/", "/v1/ocr/status/poll/", "/v1/ocr/result/"] as const;
export const DOCUMENTS_ASYNC_HINT =
  "/v1/ocr/convert/file/async (or /v1/ocr/convert/source/async), then poll GET /v1/ocr/status/poll/{task_id} and fetch GET /v1/ocr/result/{task_id}";

const container = (service: string, port: number, healthPath: string): Backend => ({
  service,
  node: CPU_NODE_NAME,
  address: { kind: "container", container: service },
  port,
  healthPath,
});
const gpuBackends = (hub: HubConfig, service: "coder" | "ocr"): Backend[] =>
  hub.gpu?.on
    ? hub.nodes
        .filter((n) => n.kind === "gpu")
        .map((n) => ({
          service,
          node: n.name,
          address: { kind: "vpc", node: n.name },
          port: GPU_SERVICE_PORTS[service],
          healthPath: "/health",
        }))
    : [];

export function routeTable(hub: HubConfig): Route[] {
  const routes: Route[] = [];
  const coderPaths = ["/v1/chat/completions", "/v1/completions", "/v1/models"];
  if (hub.coder.backend === "llama.cpp") {
    routes.push({
      name: "coder",
      scope: "llm",
      paths: coderPaths,
      primary: [container("coder", SERVICE_PORTS.llamaCpp, "/health")],
      streaming: true,
      maxBodyBytes: CHAT_BODY_BYTES,
      description: "coding model (llama.cpp on the CPU node)",
    });
  } else {
    const adapters = hub.coder.lora?.adapters.map((a) => a.servedName) ?? [];
    routes.push({
      name: "coder",
      scope: "llm",
      paths: coderPaths,
      ...(adapters.length ? { models: [CODER_SERVED_NAME, ...adapters] } : {}),
      primary: gpuBackends(hub, "coder"),
      fallback: hub.fallbackCoder
        ? container("coder-fallback", SERVICE_PORTS.llamaCpp, "/health")
        : autoscalerAnswersOff(hub)
          ? {
              service: CODER_OFF_SERVICE,
              node: CPU_NODE_NAME,
              address: { kind: "container", container: AUTOSCALER_CONTAINER },
              port: OFF_ANSWER_PORT,
              healthPath: HOLDER_HEALTH_PATH,
            }
          : GPU_OFF_SERVICE,
      // Without a CPU stand-in the off port is the fallback itself, and holds there.
      ...(hub.fallbackCoder && holdingRuns(hub)
        ? {
            holder: {
              service: CODER_HOLD_SERVICE,
              node: CPU_NODE_NAME,
              address: { kind: "container", container: AUTOSCALER_CONTAINER },
              port: OFF_ANSWER_PORT,
              healthPath: HOLDER_HEALTH_PATH,
            },
          }
        : {}),
      streaming: true,
      maxBodyBytes: CHAT_BODY_BYTES,
      // While the GPU is off the CPU stand-in answers every model name with the base coder (llama.cpp ignores it).
      description: adapters.length
        ? `coding model (vLLM on the GPU node) and its LoRA adapters ${adapters.join(", ")}`
        : "coding model (vLLM on the GPU node)",
    });
  }
  routes.push({
    name: "stt",
    scope: "stt",
    paths: ["/v1/audio/transcriptions", "/v1/audio/translations"],
    primary: [container("stt", SERVICE_PORTS.stt, "/health")],
    streaming: false,
    maxBodyBytes: AUDIO_BODY_BYTES,
    description: "speech to text (speaches, faster-whisper)",
  });
  routes.push({
    name: "tts",
    scope: "tts",
    paths: ["/v1/audio/speech"],
    primary: [container("tts", SERVICE_PORTS.tts, "/")],
    streaming: false,
    maxBodyBytes: CHAT_BODY_BYTES,
    description: "text to speech (Coqui TTS)",
  });
  if (hub.ocr.engine === "deepseek-ocr") {
    routes.push({
      name: "ocr",
      scope: "ocr",
      paths: ["/v1/ocr/chat/completions"],
      rewritePrefix: "/v1/ocr/",
      primary: gpuBackends(hub, "ocr"),
      fallback: GPU_OFF_SERVICE,
      streaming: true,
      maxBodyBytes: DOCUMENT_BODY_BYTES,
      description: "DeepSeek-OCR, OpenAI chat format with an image (vLLM on the GPU node)",
    });
  }
  const docling = hub.ocr.engine === "docling" ? "ocr" : hub.ocrCpuFallback ? "ocr-fallback" : undefined;
  if (docling) {
    routes.push({
      name: DOCUMENTS_ROUTE,
      scope: "ocr",
      paths: [...DOCUMENTS_PATH_PREFIXES],
      prefix: true,
      rewritePrefix: "/v1/ocr/",
      primary: [container(docling, SERVICE_PORTS.docling, "/health")],
      streaming: false,
      maxBodyBytes: DOCUMENT_BODY_BYTES,
      description: "document conversion and OCR (docling-serve on the CPU node)",
    });
  }
  if (hub.sandbox) {
    // The front holds the sandbox token; the sandbox node must never see the backends' key.
    routes.push({
      name: "sandbox",
      scope: SANDBOX_SCOPE,
      paths: [SANDBOX_PATH_PREFIX],
      prefix: true,
      primary: [container("sandbox-front", SANDBOX_FRONT_PORT, SANDBOX_HEALTH_PATH)],
      streaming: false,
      dropCredentials: true,
      maxBodyBytes: MAX_REQUEST_BYTES,
      description: "code execution in a gVisor sandbox (the sandbox node, through its front on the CPU node)",
    });
  }
  if (hub.embeddings) {
    // Its own scope and router: embedding requests have their own rate budget and never count as coder demand.
    routes.push({
      name: EMBEDDINGS_ROUTE,
      scope: "embeddings",
      paths: [EMBEDDINGS_PATH, `${MODELS_PATH_PREFIX}${hub.embeddings.model.id}`],
      primary: [container(EMBEDDINGS_CONTAINER, EMBEDDINGS_PORT, EMBEDDINGS_HEALTH_PATH)],
      streaming: false,
      maxBodyBytes: EMBEDDINGS_BODY_BYTES,
      timeoutHint: "Send fewer or shorter inputs per request.",
      description: `text embeddings (${hub.embeddings.model.displayName}, llama.cpp on the CPU node)`,
    });
  }
  if (hub.grafana) {
    // Grafana serves under /grafana/ itself (serve_from_sub_path); "streaming" keeps its live
    // updates (a websocket) out of the buffering middleware.
    routes.push({
      name: GRAFANA_CONTAINER,
      scope: "admin",
      paths: [GRAFANA_PATH_PREFIX],
      prefix: true,
      primary: [container(GRAFANA_CONTAINER, GRAFANA_PORT, `${GRAFANA_PATH_PREFIX}api/health`)],
      streaming: true,
      dropCredentials: true,
      maxBodyBytes: CHAT_BODY_BYTES,
      description: "Grafana dashboards (keys with the admin scope)",
    });
  }
  return routes;
}
