import { readFileSync } from "node:fs";
import * as path from "node:path";

/**
 * Which backend answered a coder request, in a response header every answer carries:
 * `X-Hub-Backend: gpu-0` (the vLLM replica on that node), `cpu-fallback` (the llama.cpp stand-in)
 * or `gpu-off` (the 503 while no GPU serves and there is no stand-in).
 *
 * Traefik's router middlewares apply to whichever service answers, so one header there could not
 * tell the replicas from the fallback. Each backend names itself instead, on its own path:
 * - each vLLM replica, through vLLM's own `--middleware` option (hub_backend_header.py): no extra
 *   hop on the GPU path;
 * - the fallback, through one Traefik hop over the loopback entry point whose router adds the
 *   header (services/gateway.ts): only requests the fallback answers take it;
 * - the gpu-off answer, from the errors nginx itself.
 */
export const BACKEND_HEADER = "X-Hub-Backend";
export const FALLBACK_BACKEND_NAME = "cpu-fallback";
export const GPU_OFF_BACKEND_NAME = "gpu-off";

/** The module and class vLLM loads (`--middleware <module>.<class>`). */
const MODULE = "hub_backend_header";
export const VLLM_BACKEND_MIDDLEWARE = `${MODULE}.BackendHeader`;
/** Where the start script writes the module: its own directory, so nothing else in /tmp is importable. */
const MODULE_DIR = "${TMPDIR:-/tmp}/hub-python";

/** services/launchers/hub_backend_header.py, as shipped. */
export const middlewareSource = (): string => readFileSync(path.join(__dirname, "launchers", `${MODULE}.py`), "utf8");
const HEREDOC_END = "HUB_LAUNCHER_EOF";

/**
 * The vLLM container's start: write the middleware module, put its directory on PYTHONPATH
 * (keeping any the image sets), then `vllm serve "$@"` (the image's entrypoint, with the
 * arguments from the spec's command). Run as `sh -c <script> vllm-serve <args>`.
 */
export function vllmStartScript(source: string = middlewareSource()): string {
  if (source.split("\n").includes(HEREDOC_END)) throw new Error(`${MODULE}.py contains the heredoc terminator ${HEREDOC_END}`);
  return [
    "set -e",
    `mkdir -p "${MODULE_DIR}"`,
    `cat > "${MODULE_DIR}/${MODULE}.py" <<'${HEREDOC_END}'\n${source.endsWith("\n") ? source : `${source}\n`}${HEREDOC_END}`,
    `export PYTHONPATH="${MODULE_DIR}\${PYTHONPATH:+:\$PYTHONPATH}"`,
    'exec vllm serve "$@"',
  ].join("\n");
}

/**
 * The name each CPU-node fallback answers under, by its Traefik service name: the llama.cpp
 * stand-in, and the autoscaling controller's own off-state answer (service `coder-off` on the
 * controller branch), which is the 503 of a GPU that is off. A fallback not listed passes unnamed.
 */
const FALLBACK_NAMES: Readonly<Record<string, string>> = { "coder-fallback": FALLBACK_BACKEND_NAME, "coder-off": GPU_OFF_BACKEND_NAME };
export const fallbackBackendName = (service: string): string | undefined => (Object.hasOwn(FALLBACK_NAMES, service) ? FALLBACK_NAMES[service] : undefined);

/** The headers middleware a fallback's loopback router applies. */
export const fallbackHeaderMiddleware = (name: string): Record<string, unknown> => ({ headers: { customResponseHeaders: { [BACKEND_HEADER]: name } } });
