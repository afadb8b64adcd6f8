import type { HubConfig } from "../stacks/hub-config";
import { cpuPlacement, memoryLimitMiB } from "./coder";
import { FORWARDING_TIMEOUTS } from "./gateway";
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

/** A Go duration in whole seconds ("900s", "15m"), as the gateway's timeouts are written. */
export function durationSeconds(duration: string): number {
  const match = /^(\d+)(s|m|h)$/.exec(duration);
  if (!match) throw new Error(`unsupported duration ${JSON.stringify(duration)}: write it as <n>s, <n>m or <n>h`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as "s" | "m" | "h"];
}

/**
 * docling-serve polls a synchronous conversion every DOCLING_SERVE_SYNC_POLL_INTERVAL (2 s) and
 * gives up with its own 504 after DOCLING_SERVE_MAX_SYNC_WAIT (default 120 s; docling_serve/
 * settings.py and app.py _wait_task_complete, v1.31.0). Waiting as long as the gateway lets a
 * backend take, less this margin, lets a long document finish; past it, docling's own 504 (which
 * names the setting, so points at the async API) reaches the client before Traefik cuts the request.
 */
export const SYNC_WAIT_MARGIN_SECONDS = 30;
export const doclingMaxSyncWaitSeconds = (): number =>
  durationSeconds(FORWARDING_TIMEOUTS.responseHeaderTimeout) - SYNC_WAIT_MARGIN_SECONDS;

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
      DOCLING_SERVE_MAX_SYNC_WAIT: String(doclingMaxSyncWaitSeconds()),
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
