import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { renderStagesFile } from "./lib/simulate/stages";
import { gpuCommand, keepDeployed, scaleCommand, tierCommand } from "./lib/hub/commands";
import { parsePinDuration, requestProblem, ScaleRequest } from "./lib/hub/scale";
import { automationOps, checkPrerequisites, HubCommandError, StackOps } from "./lib/hub/ops";
import { keysCommand } from "./lib/hub/keys";
import { buildGpuImage, digitalOceanImageOps, gpuImageStatus } from "./lib/hub/gpu-image";
import { autoscaleOnce, autoscaleWatch, fileMemory, gatewaySignals } from "./lib/hub/autoscale";
import { httpFetcher } from "../programs/autoscaler/controller/signals";
import { availableStacks, PROJECT_ROOT } from "./lib/plan-runner";
import { BACKEND_HEADER } from "../services/backend-header";
import { finetuneCli } from "./lib/hub/finetune/cli";

const USAGE = `usage: npm run hub -- <command> --stack NAME
  gpu on|off|status|sync   turn the hybrid tier's GPU droplet on or off (sync: follow gpuWindows)
  gpu on|off --for 8h      ... and pin it there: the autoscaler and the windows leave it until then
  gpu on --stages-out FILE ... and write the wake's stages as timed, for npm run simulate -- --stages FILE
  gpu unpin                remove the pin; the autoscaler decides again
  gpu keep                 set this checkout's GPU count and pin to what the stack runs (pipelines)
  gpu image build [--keep-on-failure]
                           bake the GPU image: a short-lived GPU droplet sets itself up, is snapshotted and
                           destroyed; the stack then boots it (gpuSnapshotId); an existing one is reused
  gpu image status         which image GPU nodes boot, and whether the current one is built
  gpu scale <N> [--reason R] [--decision-id ID] [--force]
                           set the GPU node count (gpuMinNodes..gpuMaxNodes; refused while pinned
                           unless --force); what the autoscale workflow runs
  tier <cpu|gpu|hybrid|multigpu>
                           move the stack to another tier (region and model cache stay)
  keys create --name N --scopes llm,ocr,stt,tts[,admin,sandbox] [--rate N] [--sandbox-limits wall_ms=30000,...] [--wait S] [--max-wait S]
                           --wait: the key's coder requests wait up to S seconds for a waking GPU unless
                           they send X-Hub-Wait; --max-wait: the most they may wait (docs/gpu-wake.md)
  keys list | keys revoke <id>
                           manage client API keys (stored hashed in the stack's secret config)
  autoscale [--watch] [--force]
                           run the autoscaler's decision here (where the credentials are) and apply it
                           through preview + up; signals from the gateway's admin routes (--key: an
                           admin-scope key, default $HUB_ADMIN_KEY)
  finetune --dataset FILE --name ADAPTER [--epochs N ...] | finetune status|resume|clean|add --name ADAPTER
                           train a LoRA adapter on a GPU droplet that exists only for the job, and
                           serve it as coder-ADAPTER (\`finetune --help\`, docs/finetune.md)
options: --stack NAME (required), --key KEY (API key used to wait for the coder after gpu on;
         default $HUB_API_KEY), --for DURATION (8h, 90m, 1d, 2h30m), --name, --scopes, --rate,
         --sandbox-limits (the key's own sandbox ceiling: limit=value,... see docs/sandbox.md)`;

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

async function main(): Promise<void> {
  // finetune has options of its own (scripts/lib/hub/finetune/cli.ts).
  if (process.argv[2] === "finetune") return finetuneCli(process.argv.slice(3));
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      strict: true,
      options: {
        stack: { type: "string" },
        key: { type: "string" },
        name: { type: "string" },
        scopes: { type: "string" },
        rate: { type: "string" },
        wait: { type: "string" },
        "max-wait": { type: "string" },
        "sandbox-limits": { type: "string" },
        for: { type: "string" },
        reason: { type: "string" },
        "decision-id": { type: "string" },
        force: { type: "boolean" },
        watch: { type: "boolean" },
        "keep-on-failure": { type: "boolean" },
        "stages-out": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
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
  if (command === "gpu" && !["on", "off", "status", "sync", "unpin", "scale", "keep", "image"].includes(action ?? "")) fail(`gpu takes on, off, status, sync, unpin, scale, keep or image, not "${action ?? ""}"`);
  if (command === "gpu" && action === "image" && (rest.length !== 1 || !["build", "status"].includes(rest[0]))) fail(`gpu image takes build or status, not "${rest.join(" ")}"`);
  if (values["keep-on-failure"] && !(command === "gpu" && action === "image" && rest[0] === "build")) fail("--keep-on-failure goes with gpu image build");
  if (values["stages-out"] !== undefined && !(command === "gpu" && action === "on")) fail("--stages-out goes with gpu on");
  let pinMs: number | undefined;
  if (values.for !== undefined) {
    if (command !== "gpu" || (action !== "on" && action !== "off")) fail("--for goes with gpu on or gpu off (e.g. gpu on --for 8h)");
    const parsed = parsePinDuration(values.for);
    if (!parsed.ok) fail(parsed.reason);
    pinMs = parsed.ms;
  }
  let scale: ScaleRequest | undefined;
  if (command === "gpu" && action === "scale") {
    // Digits only: parseInt would take "2x" for 2, Number would take "" or "1e1".
    const text = rest[0] ?? "";
    if (!/^\d{1,3}$/.test(text) || rest.length > 1) fail(`gpu scale takes one node count (a whole number such as 0, 1 or 2), not "${rest.join(" ")}"`);
    scale = { nodes: Number(text), reason: values.reason, decisionId: values["decision-id"], force: values.force === true };
    const bad = requestProblem(scale);
    if (bad) fail(bad);
  } else if (values.reason !== undefined || values["decision-id"] !== undefined || values.force) {
    fail("--reason, --decision-id and --force go with gpu scale");
  }
  if (command === "tier" && !action) fail("tier needs a tier name: cpu, gpu, hybrid or multigpu");
  if (!["gpu", "tier", "keys", "autoscale"].includes(command)) fail(`unknown command "${command}"\n${USAGE}`);

  checkPrerequisites();
  const ops = await automationOps(values.stack, PROJECT_ROOT);
  if (scale) await scaleCommand(ops, scale, io);
  else if (command === "gpu" && action === "image") {
    const images = digitalOceanImageOps(process.env.DIGITALOCEAN_TOKEN!);
    if (rest[0] === "build") await buildGpuImage(ops, images, io, { keepOnFailure: values["keep-on-failure"] === true });
    else await gpuImageStatus(ops, images, io);
  }
  else if (command === "gpu" && action === "keep") await keepDeployed(ops, io);
  else if (command === "gpu") {
    const stages = await gpuCommand(ops, action as "on" | "off" | "status" | "sync" | "unpin", io, action === "on" ? coderProbe(ops, values.key ?? process.env.HUB_API_KEY) : undefined, undefined, { pinMs });
    if (values["stages-out"]) {
      if (!stages?.length) fail("--stages-out: nothing was timed (the GPU was on already, or the up changed nothing)");
      writeFileSync(values["stages-out"], renderStagesFile("npm run hub -- gpu on", new Date(), stages, values.stack));
      io.out(`stages written to ${values["stages-out"]}: npm run simulate -- --stages ${values["stages-out"]} ...`);
    }
  }
  else if (command === "tier") await tierCommand(ops, action, io);
  else if (command === "autoscale") {
    const adminKey = values.key ?? process.env.HUB_ADMIN_KEY;
    if (!adminKey) fail("autoscale reads the gateway's admin routes: pass --key <an admin-scope key> or set HUB_ADMIN_KEY");
    const baseUrl = String((await ops.outputs()).baseUrl?.value ?? "");
    const deps = { ops, signals: gatewaySignals(baseUrl, adminKey, httpFetcher), memory: fileMemory(values.stack), io, force: values.force ?? false };
    if (values.watch) await autoscaleWatch(deps, 15);
    else await autoscaleOnce(deps);
  }
  else await keysCommand(ops, action, rest, { name: values.name, scopes: values.scopes, rate: values.rate, sandboxLimits: values["sandbox-limits"], wait: values.wait, maxWait: values["max-wait"] }, io);
}

main().catch((err: unknown) => {
  if (err instanceof HubCommandError) fail(err.message);
  fail(`internal error: ${(err as Error).message ?? String(err)}`);
});
