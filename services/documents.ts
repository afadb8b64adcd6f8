import type { HubConfig } from "../stacks/hub-config";
import { cpuPlacement, memoryLimitMiB } from "./coder";
import { DOCLING_SERVE_CPU_IMAGE, pythonHttpCheck } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { SERVICE_PORTS } from "./routes";
import type { ServiceSpec } from "./spec";

/**
 * Hugging Face cache for models docling fetches at run time. The layout, table, picture and
 * EasyOCR models are baked into the image under DOCLING_SERVE_ARTIFACTS_PATH, which is left
 * alone: a volume over it would hide them.
 */
const DOCLING_HF_HOME = "/opt/app-root/src/.cache/huggingface";

/** docling-serve: document conversion and OCR on the CPU node (`ocr`, or `ocr-fallback` behind DeepSeek-OCR). */
export function doclingSpec(hub: HubConfig, name: "ocr" | "ocr-fallback"): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, name);
  const port = SERVICE_PORTS.docling;
  return {
    name,
    role: name,
    program: "docling-serve",
    node: node.name,
    image: DOCLING_SERVE_CPU_IMAGE,
    // The image's CMD (`docling-serve run`) serves on 5001.
    // Explicit: the gateway reaches it from another container on the node's network.
    command: ["docling-serve", "run", "--host", "0.0.0.0", "--port", String(port)],
    env: {
      HF_HOME: DOCLING_HF_HOME,
      DOCLING_SERVE_ENABLE_UI: "false",
    },
    // docling-serve checks it against the X-Api-Key header (docling_serve/auth.py), not Authorization.
    secretEnv: { DOCLING_SERVE_API_KEY: "hubApiKey" },
    port,
    mounts: [{ hostPath: `${CPU_CACHE_MOUNT}/huggingface/docling`, containerPath: DOCLING_HF_HOME }],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    // The key is sent in case the release guards /health too; a spare header costs nothing.
    health: {
      path: "/health",
      test: pythonHttpCheck(`http://127.0.0.1:${port}/health`, { name: "X-Api-Key", fromEnv: "DOCLING_SERVE_API_KEY" }),
      intervalSeconds: 30,
      timeoutSeconds: 10,
      // Models load at boot (DOCLING_SERVE_LOAD_MODELS_AT_BOOT defaults to true).
      startPeriodSeconds: 300,
      retries: 3,
    },
  };
}

/** docling where the placement puts it: the OCR engine itself, or the CPU stand-in for DeepSeek-OCR. */
export function documentSpecs(hub: HubConfig): ServiceSpec[] {
  if (hub.ocr.engine === "docling") return [doclingSpec(hub, "ocr")];
  if (hub.ocrCpuFallback) return [doclingSpec(hub, "ocr-fallback")];
  return [];
}
