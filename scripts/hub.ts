import { parseArgs } from "node:util";
import { gpuCommand, tierCommand } from "./lib/hub/commands";
import { automationOps, checkPrerequisites, HubCommandError, StackOps } from "./lib/hub/ops";
import { keysCommand } from "./lib/hub/keys";
import { autoscaleOnce, autoscaleWatch, fileMemory, gatewaySignals } from "./lib/hub/autoscale";
import { httpFetcher } from "../programs/autoscaler/controller/signals";
import { availableStacks, PROJECT_ROOT } from "./lib/plan-runner";

const USAGE = `usage: npm run hub -- <command> --stack NAME
  gpu on|off|status|sync   turn the hybrid tier's GPU droplet on or off (sync: follow gpuWindows)
  tier <cpu|gpu|hybrid|multigpu>
                           move the stack to another tier (region and model cache stay)
  keys create --name N --scopes llm,ocr,stt,tts[,admin] [--rate N]
  keys list | keys revoke <id>
                           manage client API keys (stored hashed in the stack's secret config)
  autoscale [--watch] [--force]
                           run the autoscaler's decision here (where the credentials are) and apply it
                           through preview + up; signals from the gateway's admin routes (--key: an
                           admin-scope key, default $HUB_ADMIN_KEY)
options: --stack NAME (required), --key KEY (API key used to wait for the coder after gpu on;
         default $HUB_API_KEY), --name, --scopes, --rate`;

function fail(message: string): never {
  process.stderr.write(`hub: ${message}\n`);
  process.exit(1);
}

/** Asks the gateway which backend answers /v1/models: vLLM on the GPU, or the CPU stand-in. */
function coderProbe(ops: StackOps, key: string | undefined) {
  if (!key) return undefined;
  return async (): Promise<"gpu" | "fallback" | "down"> => {
    const outputs = await ops.outputs();
    const base = String(outputs.baseUrl?.value ?? "");
    try {
      const res = await fetch(`${base}/models`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(10_000) });
      if (!res.ok) return "down";
      const body = (await res.json()) as { data?: { id: string; owned_by?: string }[] };
      const coder = body.data?.find((m) => m.id === "coder");
      return coder?.owned_by === "vllm" ? "gpu" : coder ? "fallback" : "down";
    } catch {
      return "down";
    }
  };
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      strict: true,
      options: { stack: { type: "string" }, key: { type: "string" }, watch: { type: "boolean" }, force: { type: "boolean" }, name: { type: "string" }, scopes: { type: "string" }, rate: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const [command, action, ...rest] = positionals;
  if (!values.stack) fail(`--stack is required (stacks here: ${availableStacks().join(", ")})`);
  const io = { out: (line: string) => process.stdout.write(`${line}\n`), now: () => Date.now() };
  if (command === "gpu" && !["on", "off", "status", "sync"].includes(action ?? "")) fail(`gpu takes on, off, status or sync, not "${action ?? ""}"`);
  if (command === "tier" && !action) fail("tier needs a tier name: cpu, gpu, hybrid or multigpu");
  if (!["gpu", "tier", "keys", "autoscale"].includes(command)) fail(`unknown command "${command}"\n${USAGE}`);

  checkPrerequisites();
  const ops = await automationOps(values.stack, PROJECT_ROOT);
  if (command === "gpu") await gpuCommand(ops, action as "on" | "off" | "status" | "sync", io, action === "on" ? coderProbe(ops, values.key ?? process.env.HUB_API_KEY) : undefined);
  else if (command === "tier") await tierCommand(ops, action, io);
  else if (command === "autoscale") {
    const adminKey = values.key ?? process.env.HUB_ADMIN_KEY;
    if (!adminKey) fail("autoscale reads the gateway's admin routes: pass --key <an admin-scope key> or set HUB_ADMIN_KEY");
    const baseUrl = String((await ops.outputs()).baseUrl?.value ?? "");
    const deps = { ops, signals: gatewaySignals(baseUrl, adminKey, httpFetcher), memory: fileMemory(values.stack), io, force: values.force ?? false };
    if (values.watch) await autoscaleWatch(deps, 15);
    else await autoscaleOnce(deps);
  }
  else await keysCommand(ops, action, rest, { name: values.name, scopes: values.scopes, rate: values.rate }, io);
}

main().catch((err: unknown) => {
  if (err instanceof HubCommandError) fail(err.message);
  fail(`internal error: ${(err as Error).message ?? String(err)}`);
});
