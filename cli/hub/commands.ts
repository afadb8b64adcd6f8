import type { STAGE_NAMES } from "../../programs/autoscaler/serving-model";
import type { HubConfig } from "../../stacks/hub-config";
import {
  checkPreview,
  Decision,
  decideGpu,
  decideGpuSync,
  decideTier,
  describeOutcome,
  PreviewStep,
  resolveConfig,
  StackConfig,
} from "./decisions";
import { HubCommandError, StackOps } from "./ops";
import {
  adoptDeployed,
  decidePin,
  decideScale,
  decideUnpin,
  deployedGpu,
  isoSeconds,
  requestLabel,
  ScaleRequest,
} from "./scale";

export interface Io {
  readonly out: (line: string) => void;
  readonly now: () => number;
}

/** Phases of turning the GPU on, marked by the first resource of each kind to finish. */
const PHASES: readonly { readonly name: string; readonly done: (s: PreviewStep) => boolean }[] = [
  { name: "droplet", done: (s) => s.type === "digitalocean:index/droplet:Droplet" && /gpu-\d+-droplet$/.test(s.urn) },
  { name: "readiness", done: (s) => s.type === "command:remote:Command" && /gpu-\d+-ready$/.test(s.urn) },
  {
    name: "image pull",
    done: (s) => s.type === "docker:index/remoteImage:RemoteImage" && /gpu-\d+-containers-image-coder$/.test(s.urn),
  },
  {
    name: "containers started",
    done: (s) => s.type === "docker:index/container:Container" && /gpu-\d+-containers-coder$/.test(s.urn),
  },
];

/** Waits for the model behind the gateway; injectable so tests need no network. */
export type CoderProbe = () => Promise<"gpu" | "fallback" | "down">;

async function restore(ops: StackOps, config: StackConfig, changed: readonly string[]): Promise<void> {
  for (const key of changed) {
    const old = config[key];
    if (old) await ops.setConfig(key, old.value, old.secret);
    else await ops.removeConfig(key);
  }
}

/**
 * Applies a decision the safe way: set the config, preview, check the preview, then apply. A
 * refused preview restores the config, so a refusal changes nothing.
 */
export async function applyDecision(
  ops: StackOps,
  config: StackConfig,
  decision: Decision,
  io: Io,
  onStep: (s: PreviewStep) => void = () => undefined,
  message?: string,
): Promise<{ before: HubConfig; after: HubConfig; steps: readonly PreviewStep[] }> {
  if (!decision.ok) throw new HubCommandError(decision.reason);
  const keys = Object.keys(decision.changes);
  if (keys.length === 0) {
    io.out(`${ops.stackName}: ${decision.summary}; nothing to do.`);
    return { before: decision.before, after: decision.after, steps: [] };
  }
  io.out(`${ops.stackName}: ${decision.summary}`);
  for (const [key, value] of Object.entries(decision.changes)) {
    if (value === null) await ops.removeConfig(key);
    else await ops.setConfig(key, value, false);
    io.out(`  config ${key.split(":").pop()} ${value === null ? "removed (preset decides)" : `= ${value}`}`);
  }
  const { previewSteps, steps } = await previewAndApply(ops, config, keys, io, onStep, message);
  for (const line of describeOutcome(decision.before, decision.after, previewSteps)) io.out(line);
  return { before: decision.before, after: decision.after, steps };
}

/**
 * Preview the config already set, refuse (and restore `changedKeys`) if the preview would touch a
 * volume or fails, else apply. Shared by every command that changes a stack.
 */
export async function previewAndApply(
  ops: StackOps,
  config: StackConfig,
  changedKeys: readonly string[],
  io: Io,
  onStep: (s: PreviewStep) => void = () => undefined,
  message?: string,
): Promise<{ previewSteps: readonly PreviewStep[]; steps: readonly PreviewStep[] }> {
  let previewSteps: readonly PreviewStep[];
  try {
    previewSteps = await ops.preview((line) => io.out(`  | ${line.trimEnd()}`));
  } catch (err) {
    await restore(ops, config, changedKeys);
    throw new HubCommandError(`the preview failed, config restored: ${(err as Error).message.split("\n")[0]}`);
  }
  const verdict = checkPreview(previewSteps);
  if (!verdict.ok) {
    await restore(ops, config, changedKeys);
    throw new HubCommandError(verdict.reason);
  }
  const steps = await ops.up((line) => io.out(`  | ${line.trimEnd()}`), onStep, message);
  return { previewSteps, steps };
}

export interface GpuOptions {
  /** `--for 8h`: pin the GPU on (or off) for this long (ms); see scale.ts. */
  readonly pinMs?: number;
}

/** A wake's stages as `gpu on` times them (the model's stage names; the pipeline is not part of an operator's `gpu on`). */
export type TimedStages = { readonly covers: readonly (typeof STAGE_NAMES)[number][]; readonly seconds: number }[];

export async function gpuCommand(
  ops: StackOps,
  action: "on" | "off" | "status" | "sync" | "unpin",
  io: Io,
  probe?: CoderProbe,
  now: Date = new Date(io.now()),
  options: GpuOptions = {},
): Promise<TimedStages | undefined> {
  const config = await ops.getConfig();
  if (action === "status") {
    const current = resolveConfig(config, {}, now.getTime());
    if (!current.ok) throw new HubCommandError(`the stack's config is refused:\n  ${current.reason}`);
    const hub = current.hub;
    const pool = hub.kubernetes?.gpuPool;
    if (pool)
      io.out(
        `${ops.stackName}: tier k8s, GPU pool of ${pool.size}, ${pool.minNodes} to ${pool.maxNodes} node(s) as KEDA and the cluster autoscaler decide (the live count: hub status)`,
      );
    else
      io.out(
        `${ops.stackName}: tier ${hub.tier}, GPU ${hub.gpu ? (hub.gpu.on ? `on (${hub.gpu.count} x ${hub.gpu.size.slug})` : "off") : "none"}`,
      );
    const pin = hub.gpuPin;
    if (pin)
      io.out(
        now.getTime() < pin.untilMs
          ? `pinned at ${pin.nodes} GPU node(s) until ${isoSeconds(pin.untilMs)}: the autoscaler leaves it alone`
          : `the pin at ${pin.nodes} GPU node(s) expired at ${isoSeconds(pin.untilMs)} and is ignored (gpu unpin removes it)`,
      );
    io.out(
      `burn: $${hub.cost.hourlyNowUsd.toFixed(2)}/h; projected month: $${hub.cost.monthlyUsd.toFixed(2)} (budget $${hub.budgetUsd})`,
    );
    return;
  }
  if (action === "unpin") {
    await applyDecision(ops, config, decideUnpin(config, now.getTime()), io);
    return;
  }
  const decision =
    action === "sync"
      ? decideGpuSync(config, now)
      : options.pinMs !== undefined
        ? decidePin(config, action === "on", options.pinMs, now.getTime())
        : decideGpu(config, action === "on", now.getTime());
  if (
    action === "sync" &&
    decision.ok &&
    Object.keys(decision.changes).length > 0 &&
    (await gpuDeployed(ops)) === decision.after.gpu?.on
  ) {
    // The schedule runs every few minutes from a fresh checkout: when the deployed stack already
    // matches the window there is nothing to preview or apply. The local config still records the
    // wanted state, so a `pulumi up` that follows (the deploy job) keeps the GPU as it is.
    for (const [key, value] of Object.entries(decision.changes))
      if (value !== null) await ops.setConfig(key, value, false);
    io.out(
      `${ops.stackName}: the GPU is already ${decision.after.gpu?.on ? "on" : "off"} as the windows want; nothing to deploy.`,
    );
    return;
  }
  const started = io.now();
  const marks = new Map<string, number>();
  // When the up itself starts (after the preview): the droplet's creation is timed from there.
  let upStarted = started;
  const timed = new Proxy(ops, {
    get: (target, key, receiver) =>
      key === "up"
        ? (...args: Parameters<StackOps["up"]>) => ((upStarted = io.now()), target.up(...args))
        : Reflect.get(target, key, receiver),
  });
  const { after, steps } = await applyDecision(timed, config, decision, io, (s) => {
    for (const phase of PHASES) if (!marks.has(phase.name) && phase.done(s)) marks.set(phase.name, io.now());
  });
  if (!after.gpu?.on || steps.length === 0) return undefined;
  let last = started;
  for (const phase of PHASES) {
    const at = marks.get(phase.name);
    if (at === undefined) continue;
    io.out(`  ${phase.name}: ${((at - last) / 1000).toFixed(0)} s`);
    last = at;
  }
  if (probe) {
    // The first start downloads the weights: poll until the gateway serves the model from the GPU.
    for (;;) {
      const state = await probe();
      if (state === "gpu") break;
      if (io.now() - last > 3 * 60 * 60 * 1000)
        throw new HubCommandError(
          "the coder did not come up on the GPU within 3 hours; check `docker logs coder` on the GPU node.",
        );
      await new Promise((r) => setTimeout(r, 10_000));
    }
    io.out(`  model load: ${((io.now() - last) / 1000).toFixed(0)} s (the gateway now serves the coder from the GPU)`);
    marks.set("model load", io.now());
  }
  return timedStages(upStarted, marks);
}

/** The phases' marks as the model's stages; a stage whose marks are missing is left out. */
function timedStages(upStarted: number, marks: ReadonlyMap<string, number>): TimedStages {
  const spans: [string, string, TimedStages[number]["covers"]][] = [
    ["up", "droplet", ["droplet create"]],
    ["droplet", "readiness", ["cloud-init"]],
    ["readiness", "containers started", ["image pull"]],
    ["containers started", "model load", ["weights from volume", "engine start", "first health check"]],
  ];
  const at = (name: string) => (name === "up" ? upStarted : marks.get(name));
  const out: TimedStages = [];
  for (const [from, to, covers] of spans) {
    const a = at(from);
    const b = at(to);
    if (a !== undefined && b !== undefined) out.push({ covers, seconds: Math.max(0, (b - a) / 1000) });
  }
  return out;
}

/** Whether the deployed stack has a GPU node, from its outputs (nodeAddresses names every node). */
async function gpuDeployed(ops: StackOps): Promise<boolean> {
  const outputs = await ops.outputs();
  const nodes = outputs.nodeAddresses?.value;
  return typeof nodes === "object" && nodes !== null && Object.keys(nodes).some((n) => n.startsWith("gpu-"));
}

export async function tierCommand(ops: StackOps, tier: string, io: Io): Promise<void> {
  const config = await ops.getConfig();
  await applyDecision(ops, config, decideTier(config, tier), io);
}

/**
 * `gpu scale N`: what the autoscale workflow runs when the controller asks. The reason and
 * decision id are printed first (the workflow's log) and go into Pulumi's update message (the
 * stack's history), so each change can be traced to the decision that asked for it.
 */
export async function scaleCommand(
  ops: StackOps,
  request: ScaleRequest,
  io: Io,
  now: Date = new Date(io.now()),
): Promise<void> {
  io.out(
    `${ops.stackName}: gpu scale ${request.nodes} asked (${requestLabel(request)}${request.force ? ", forced past any pin" : ""})`,
  );
  // From the count the stack runs, not the committed one a fresh checkout holds.
  const config = await keepDeployed(ops, io, now);
  const decision = decideScale(config, request, now.getTime());
  await applyDecision(
    ops,
    config,
    decision,
    io,
    undefined,
    `hub gpu scale ${request.nodes} (${requestLabel(request)})`,
  );
}

/**
 * `gpu keep`: sets this checkout's GPU count and pin to what the stack runs (from its outputs),
 * so an up from a fresh checkout (the deploy and autoscale pipelines) neither undoes the
 * autoscaler's last change nor drops a pin. Config only: nothing is previewed or applied.
 */
export async function keepDeployed(ops: StackOps, io: Io, now: Date = new Date(io.now())): Promise<StackConfig> {
  const config = await ops.getConfig();
  const deployed = deployedGpu(await ops.outputs());
  if (!deployed) {
    io.out(`${ops.stackName}: not deployed yet; the checkout's GPU settings stand.`);
    return config;
  }
  const changes = adoptDeployed(config, deployed, now.getTime());
  if (Object.keys(changes).length === 0) return config;
  for (const [k, value] of Object.entries(changes)) {
    if (value === null) await ops.removeConfig(k);
    else await ops.setConfig(k, value, false);
  }
  io.out(
    `${ops.stackName}: the stack runs ${deployed.nodes} GPU node(s)${deployed.pin ? `, pinned at ${deployed.pin.nodes} until ${deployed.pin.until}` : ""}; this checkout now says so (${Object.entries(
      changes,
    )
      .map(([k, v]) => `${k.split(":").pop()} ${v === null ? "removed" : `= ${v}`}`)
      .join(", ")}).`,
  );
  return Object.fromEntries(
    Object.entries({
      ...config,
      ...Object.fromEntries(
        Object.entries(changes).map(([k, v]) => [k, v === null ? undefined : { value: v, secret: false }]),
      ),
    }).filter(([, v]) => v !== undefined),
  ) as StackConfig;
}
