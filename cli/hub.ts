import { spawn, spawnSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { createInterface } from "node:readline/promises";
import { httpFetcher } from "../programs/autoscaler/controller/signals";
import { BACKEND_HEADER } from "../services/backend-header";
import { autoscaleOnce, autoscaleWatch, fileMemory, gatewaySignals } from "./hub/autoscale";
import { runHub } from "./hub/cli";
import { finetuneCli } from "./hub/finetune/cli";
import { digitalOceanImageOps } from "./hub/gpu-image";
import { automationOps, type StackOps } from "./hub/ops";
import { automationTeardownOps, digitalOceanVolumes, pendingVolumesFile } from "./hub/teardown-ops";
import { availableStacks, PROJECT_ROOT } from "./plan/stack-files";

/** `npm run hub -- <command>`: the operator's CLI (cli/hub/cli.ts), with the real Pulumi, network and terminal. */

/** Asks the gateway which backend answers /v1/models: vLLM on the GPU, or the CPU stand-in. */
function coderProbe(ops: StackOps, key: string | undefined) {
  if (!key) return undefined;
  return async (): Promise<"gpu" | "fallback" | "down"> => {
    const outputs = await ops.outputs();
    const base = String(outputs.baseUrl?.value ?? "");
    try {
      const res = await fetch(`${base}/models`, {
        headers: { authorization: `Bearer ${key}` },
        signal: AbortSignal.timeout(10_000),
      });
      if (!res.ok) return "down";
      // A GPU replica names itself (gpu-<i>) and the off answer says gpu-off; the CPU stand-in sets
      // no header, so without one the model list's owner tells (as on gateways deployed before it).
      const backend = res.headers.get(BACKEND_HEADER);
      if (backend) return /^gpu-\d+$/.test(backend) ? "gpu" : "fallback";
      const body = (await res.json()) as { data?: { id: string; owned_by?: string }[] };
      const coder = body.data?.find((m) => m.id === "coder");
      return coder?.owned_by === "vllm" ? "gpu" : coder ? "fallback" : "down";
    } catch {
      return "down";
    }
  };
}

const onPath = (program: string) => spawnSync("sh", ["-c", `command -v ${program}`], { stdio: "ignore" }).status === 0;
const runInherit = (program: string, args: readonly string[]) =>
  new Promise<number>((resolve) => {
    const child = spawn(program, [...args], { stdio: "inherit" });
    child.on("error", () => resolve(127));
    child.on("close", (code, signal) => resolve(code ?? (signal === "SIGINT" ? 130 : 1)));
  });

runHub(process.argv.slice(2), {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  now: Date.now,
  projectRoot: PROJECT_ROOT,
  home: os.homedir(),
  stacksHere: availableStacks,
  onPath,
  stackOps: (stack) => automationOps(stack, PROJECT_ROOT),
  teardownOps: (stack) => automationTeardownOps(stack, PROJECT_ROOT),
  volumeDeleter: (token) => digitalOceanVolumes(token),
  pendingVolumes: (stack) => pendingVolumesFile(stack),
  fetch: fetch as never,
  run: runInherit,
  prompt: async (question) => {
    if (!process.stdin.isTTY) return undefined;
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return await rl.question(question);
    } finally {
      rl.close();
    }
  },
  script: (name, args) => runInherit(process.execPath, [path.join(PROJECT_ROOT, "cli", "run.cjs"), name, ...args]),
  extras: {
    coderProbe,
    finetune: (argv) => finetuneCli(argv),
    imageOps: (token) => digitalOceanImageOps(token),
    autoscale: async (ops, stack, adminKey, watch, force, io) => {
      const baseUrl = String((await ops.outputs()).baseUrl?.value ?? "");
      const deps = {
        ops,
        signals: gatewaySignals(baseUrl, adminKey, httpFetcher),
        memory: fileMemory(stack),
        io,
        force,
      };
      if (watch) await autoscaleWatch(deps, 15);
      else await autoscaleOnce(deps);
    },
  },
}).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`hub: internal error: ${(error as Error).message ?? String(error)}\n`);
    process.exit(2);
  },
);
