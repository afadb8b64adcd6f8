import { readFileSync } from "node:fs";
import * as path from "node:path";
import { TTS_MODELS } from "../stacks/catalogue/models";
import type { HubConfig } from "../stacks/hub-config";
import { cpuPlacement, memoryLimitMiB } from "./coder";
import { COQUI_TTS_CPU_IMAGE, pythonHttpCheck, SPEACHES_CPU_IMAGE } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { SERVICE_PORTS } from "./routes";
import type { ServiceSpec } from "./spec";

/** The image's user is ubuntu; speaches keeps Hugging Face downloads under its default hub cache (FACTS.md). */
export const SPEACHES_HF_CACHE = "/home/ubuntu/.cache/huggingface/hub";

/** The name every OpenAI client sends by default; speaches 0.8.3's model_aliases.json maps it to large-v3. */
export const OPENAI_STT_MODEL = "whisper-1";

/**
 * speaches 0.8.3 reads its aliases from `model_aliases.json` in the working directory, the image's
 * WORKDIR /home/ubuntu/speaches (src/speaches/model_aliases.py MODEL_ID_ALIASES_PATH; Dockerfile).
 */
export const SPEACHES_ALIASES_FILE = "model_aliases.json";

/** Our in-process additions to the deployed programs (services/launchers/): small, read once. */
const LAUNCHERS_DIR = path.join(__dirname, "launchers");
export const launcherSource = (file: "hub_speaches.py" | "hub_coqui.py"): string =>
  readFileSync(path.join(LAUNCHERS_DIR, file), "utf8");

/** Ends the heredoc that writes a launcher; a launcher line equal to it would cut the file short. */
export const HEREDOC_END = "HUB_LAUNCHER_EOF";

/** Shell that writes `source` to `${TMPDIR:-/tmp}/<file>` (the container's own writable layer). */
function writeLauncher(file: string, source: string): string {
  if (source.split("\n").includes(HEREDOC_END))
    throw new Error(`${file} contains the heredoc terminator ${HEREDOC_END}`);
  return `cat > "\${TMPDIR:-/tmp}/${file}" <<'${HEREDOC_END}'\n${source.endsWith("\n") ? source : `${source}\n`}${HEREDOC_END}`;
}

// Hugging Face repo ids only: the id lands inside a shell line and a JSON file.
const HF_REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * The speaches container's start, in order:
 * 1. fetch hub.stt.repo into the Hugging Face cache (a no-op once it is on the volume): speaches
 *    0.8.x has no preload setting (PRELOAD_MODELS arrived in 0.9.0-rc), and /v1/audio/transcriptions
 *    refuses a model that is not cached (routers/stt.py). The whole snapshot: transcriptions also
 *    reads the repo's README model card, which faster-whisper's own download skips.
 * 2. point `whisper-1` at that repo in model_aliases.json (upstream maps it to large-v3, never fetched);
 * 3. HF_HUB_OFFLINE=1 for the server: huggingface_hub then never downloads, so no request can fill
 *    the volume (translations would otherwise fetch any repo a request names);
 * 4. serve speaches' own app through services/launchers/hub_speaches.py, which answers a request
 *    naming any other model with a 400.
 */
export function speachesStartScript(repo: string, launcher: string = launcherSource("hub_speaches.py")): string {
  if (!HF_REPO.test(repo))
    throw new Error(`stt repo ${JSON.stringify(repo)} is not a Hugging Face repo id (owner/name)`);
  const preload = `from huggingface_hub import snapshot_download; snapshot_download(${JSON.stringify(repo)})`;
  const aliases = JSON.stringify({ [OPENAI_STT_MODEL]: repo });
  return [
    "set -e",
    `python3 -c '${preload}'`,
    `printf '%s\\n' '${aliases}' > ${SPEACHES_ALIASES_FILE}`,
    writeLauncher("hub_speaches.py", launcher),
    "export HF_HUB_OFFLINE=1",
    // As the image's CMD (uvicorn --factory speaches.main:create_app), with our factory around it.
    `exec uvicorn --app-dir "\${TMPDIR:-/tmp}" --factory hub_speaches:create_app`,
  ].join("\n");
}

/** Speech to text: speaches (faster-whisper), OpenAI-compatible /v1/audio/transcriptions and /translations. */
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
      // speaches 0.8.3 src/speaches/config.py WhisperConfig.ttl (default 300 s): -1 never unloads,
      // so a request after an idle spell does not wait for the model to load again.
      WHISPER__TTL: "-1",
      // The one model speech to text answers with (launchers/hub_speaches.py).
      HUB_STT_MODEL: hub.stt.repo,
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
      test: pythonHttpCheck(`http://127.0.0.1:${port}/health`, {
        name: "Authorization",
        prefix: "Bearer ",
        fromEnv: "API_KEY",
      }),
      intervalSeconds: 30,
      timeoutSeconds: 10,
      startPeriodSeconds: 600,
      retries: 3,
    },
  };
}

/** Coqui keeps downloaded models under $TTS_HOME/tts (TTS.utils: get_user_data_dir). */
const TTS_HOME = "/models";

/**
 * Coqui's tts-server through services/launchers/hub_coqui.py: the same server, which first asks
 * itself for each OpenAI response format and then refuses, with a 400 naming the ones that work,
 * any format whose encoder this image lacks (instead of a 500). "$@" is the tts-server arguments.
 */
export function coquiStartScript(launcher: string = launcherSource("hub_coqui.py")): string {
  return ["set -e", writeLauncher("hub_coqui.py", launcher), `exec python3 "\${TMPDIR:-/tmp}/hub_coqui.py" "$@"`].join(
    "\n",
  );
}

/** Text to speech: the maintained Coqui fork's tts-server, with /api/tts and OpenAI-style /v1/audio/speech. */
export function ttsSpec(hub: HubConfig): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, "tts");
  const port = SERVICE_PORTS.tts;
  // resolve.ts refuses a model that asks for agreement unless ttsAcceptModelLicense is set.
  const agreed = TTS_MODELS[hub.tts.model]?.license.requiresAgreement === true && hub.settings.ttsAcceptModelLicense;
  return {
    name: "tts",
    role: "tts",
    program: "coqui-tts",
    node: node.name,
    image: COQUI_TTS_CPU_IMAGE,
    // `sh -c <script> tts-server <args>`: the script's "$@" are the tts-server arguments below.
    entrypoint: ["/bin/sh", "-c", coquiStartScript(), "tts-server"],
    command: ["--model_name", hub.tts.model, "--port", String(port)],
    env: {
      TTS_HOME,
      // The user agreed to the model's licence in the stack (ttsAcceptModelLicense); Coqui would
      // otherwise ask on a TTY the container does not have (TTS/utils/manage.py tos_agreed).
      ...(agreed ? { COQUI_TOS_AGREED: "1" } : {}),
    },
    // tts-server has no authentication: only the gateway, which checks the key, reaches it.
    secretEnv: {},
    port,
    mounts: [{ hostPath: `${CPU_CACHE_MOUNT}/models/coqui-tts`, containerPath: TTS_HOME }],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    // "/" renders the demo page, which needs the loaded model: the gateway probes the same path.
    health: {
      path: "/",
      test: pythonHttpCheck(`http://127.0.0.1:${port}/`),
      intervalSeconds: 30,
      timeoutSeconds: 10,
      startPeriodSeconds: 600,
      retries: 3,
    },
  };
}
