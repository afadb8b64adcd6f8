import type { HubConfig } from "../stacks/hub-config";
import { cpuPlacement, memoryLimitMiB } from "./coder";
import { COQUI_TTS_CPU_IMAGE, pythonHttpCheck, SPEACHES_CPU_IMAGE } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { SERVICE_PORTS } from "./routes";
import type { ServiceSpec } from "./spec";

/** The image's user is ubuntu; speaches keeps Hugging Face downloads under its default hub cache (FACTS.md). */
export const SPEACHES_HF_CACHE = "/home/ubuntu/.cache/huggingface/hub";

// Hugging Face repo ids only: the id lands inside a shell line.
const HF_REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * speaches 0.8.x has no setting that downloads a model at start (PRELOAD_MODELS arrived in the
 * 0.9.0 release candidates; WHISPER__MODEL was faster-whisper-server's): a model must be in the
 * Hugging Face cache before a request names it. So the container first fetches hub.stt.repo
 * into the cache (a no-op once it is on the volume), then execs the image's own CMD.
 */
export function speachesStartScript(repo: string): string {
  if (!HF_REPO.test(repo)) throw new Error(`stt repo ${JSON.stringify(repo)} is not a Hugging Face repo id (owner/name)`);
  const fetch = `from huggingface_hub import snapshot_download; snapshot_download(${JSON.stringify(repo)})`;
  return `python3 -c '${fetch}' && exec uvicorn --factory speaches.main:create_app`;
}

/** Speech to text: speaches (faster-whisper), OpenAI-compatible /v1/audio/transcriptions. */
export function sttSpec(hub: HubConfig): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, "stt");
  const port = SERVICE_PORTS.stt;
  return {
    name: "stt",
    role: "stt",
    program: "speaches",
    node: node.name,
    image: SPEACHES_CPU_IMAGE,
    entrypoint: ["/bin/sh", "-c"],
    command: [speachesStartScript(hub.stt.repo)],
    env: {
      // uvicorn binds 127.0.0.1 unless told otherwise; the gateway is another container.
      UVICORN_HOST: "0.0.0.0",
      UVICORN_PORT: String(port),
      WHISPER__INFERENCE_DEVICE: "cpu",
      WHISPER__COMPUTE_TYPE: "int8",
      // 0.8.x's name for FACTS.md's WHISPER__TTL: -1 keeps the model loaded between requests.
      STT_MODEL_TTL: "-1",
      // The Gradio UI would be reachable by anyone the gateway lets through, and costs RAM.
      ENABLE_UI: "false",
      LOG_LEVEL: "info",
    },
    secretEnv: { API_KEY: "hubApiKey" },
    port,
    mounts: [{ hostPath: `${CPU_CACHE_MOUNT}/huggingface/speaches`, containerPath: SPEACHES_HF_CACHE }],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    // In 0.8.x API_KEY guards every path, /health included (a 403 without it), so the check sends it.
    health: {
      path: "/health",
      test: pythonHttpCheck(`http://127.0.0.1:${port}/health`, { name: "Authorization", prefix: "Bearer ", fromEnv: "API_KEY" }),
      intervalSeconds: 30,
      timeoutSeconds: 10,
      startPeriodSeconds: 600,
      retries: 3,
    },
  };
}

/** Coqui keeps downloaded models under $TTS_HOME/tts (TTS.utils: get_user_data_dir). */
const TTS_HOME = "/models";

/** Text to speech: the maintained Coqui fork's tts-server, with /api/tts and OpenAI-style /v1/audio/speech. */
export function ttsSpec(hub: HubConfig): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, "tts");
  const port = SERVICE_PORTS.tts;
  return {
    name: "tts",
    role: "tts",
    program: "coqui-tts",
    node: node.name,
    image: COQUI_TTS_CPU_IMAGE,
    // The image's ENTRYPOINT is the `tts` CLI; the server is the `tts-server` script beside it.
    entrypoint: ["tts-server"],
    command: ["--model_name", hub.tts.model, "--port", String(port)],
    env: { TTS_HOME },
    // tts-server has no authentication: only the gateway, which checks the key, reaches it.
    secretEnv: {},
    port,
    mounts: [{ hostPath: `${CPU_CACHE_MOUNT}/models/coqui-tts`, containerPath: TTS_HOME }],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    // "/" renders the demo page, which needs the loaded model: the gateway probes the same path.
    health: { path: "/", test: pythonHttpCheck(`http://127.0.0.1:${port}/`), intervalSeconds: 30, timeoutSeconds: 10, startPeriodSeconds: 600, retries: 3 },
  };
}
