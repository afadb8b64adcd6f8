import { readFileSync } from "node:fs";
import * as path from "node:path";
import { OFF_BACKEND_NAME } from "../programs/autoscaler/controller/contract";

/**
 * Which backend answered a coder request, in a response header: `X-Hub-Backend: gpu-0` (the
 * vLLM replica on that node) or `gpu-off` (the 503 while no GPU serves and there is no stand-in);
 * none from the llama.cpp stand-in (below).
 *
 * Traefik's router middlewares apply to whichever service answers, so one header there could not
 * tell the replicas from the fallback. Each backend names itself instead, on its own path:
 * - each vLLM replica, through vLLM's own `--middleware` option (hub_backend_header.py): no extra
 *   hop on the GPU path;
 * - the gpu-off answer, from the errors nginx itself, or from the autoscaling controller.
 * The llama.cpp fallback cannot add a header of its own, and a loopback hop that named it
 * (a router with a headers middleware) aborted requests in flight when the routes file changed
 * on a GPU switch (test/gateway-real.test.ts caught it): so its answers carry no X-Hub-Backend,
 * and a coder answer without one came from the CPU fallback.
 */
export const BACKEND_HEADER = "X-Hub-Backend";
export const GPU_OFF_BACKEND_NAME = OFF_BACKEND_NAME;

/** The module and class vLLM loads (`--middleware <module>.<class>`). */
const MODULE = "hub_backend_header";
export const VLLM_BACKEND_MIDDLEWARE = `${MODULE}.BackendHeader`;
/** Where the start script writes the module: its own directory, so nothing else in /tmp is importable. */
const MODULE_DIR = "${TMPDIR:-/tmp}/hub-python";

/** services/launchers/hub_backend_header.py, as shipped. */
const middlewareSource = (): string => readFileSync(path.join(__dirname, "launchers", `${MODULE}.py`), "utf8");
const HEREDOC_END = "HUB_LAUNCHER_EOF";

/**
 * The vLLM container's start: write the middleware module, put its directory on PYTHONPATH
 * (keeping any the image sets), then `vllm serve "$@"` (the image's entrypoint, with the
 * arguments from the spec's command). Run as `sh -c <script> vllm-serve <args>`.
 */
export function vllmStartScript(
  source: string = middlewareSource(),
  options: { readonly loraGuard?: boolean } = {},
): string {
  const write = (module: string, text: string) => {
    if (text.split("\n").includes(HEREDOC_END))
      throw new Error(`${module}.py contains the heredoc terminator ${HEREDOC_END}`);
    return `cat > "${MODULE_DIR}/${module}.py" <<'${HEREDOC_END}'\n${text.endsWith("\n") ? text : `${text}\n`}${HEREDOC_END}`;
  };
  return [
    "set -e",
    `mkdir -p "${MODULE_DIR}"`,
    write(MODULE, source),
    `export PYTHONPATH="${MODULE_DIR}\${PYTHONPATH:+:$PYTHONPATH}"`,
    // Adapters on the model-cache volume: drop any this node's volume lacks, then `vllm serve` (hub_lora_guard.py).
    ...(options.loraGuard
      ? [write(LORA_GUARD, loraGuardSource()), `exec python3 "${MODULE_DIR}/${LORA_GUARD}.py" "$@"`]
      : ['exec vllm serve "$@"']),
  ].join("\n");
}

const LORA_GUARD = "hub_lora_guard";
/** services/launchers/hub_lora_guard.py, as shipped. */
export const loraGuardSource = (): string =>
  readFileSync(path.join(__dirname, "launchers", `${LORA_GUARD}.py`), "utf8");
