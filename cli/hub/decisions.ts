import { loadHubConfig, PROJECT, TIERS, Tier } from "../../stacks";
import type { HubConfig } from "../../stacks/hub-config";
import { formatProblem } from "../../stacks/problems";
import { isInsideWindows, parseWindows } from "../../stacks/windows";

/**
 * What the hub command decides, as plain functions: which config to set, what to refuse, whether
 * a preview is safe to apply. The Pulumi calls live behind StackOps (ops.ts); tests drive these.
 */

/** Stack config as the Automation API returns it: `inference-hub:key` → value. */
export type StackConfig = Readonly<Record<string, { readonly value: string; readonly secret: boolean }>>;
/** Values to set; `null` removes the key so the tier preset decides. */
export type ConfigChanges = Readonly<Record<string, string | null>>;

export type Decision =
  | {
      readonly ok: true;
      readonly changes: ConfigChanges;
      readonly before: HubConfig;
      readonly after: HubConfig;
      readonly summary: string;
    }
  | { readonly ok: false; readonly reason: string };

const plain = (config: StackConfig): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) if (!v.secret) out[k] = v.value;
  return out;
};
const key = (name: string) => `${PROJECT}:${name}`;

export function applyChanges(config: StackConfig, changes: ConfigChanges): Record<string, string> {
  const out = plain(config);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

export function resolveConfig(
  config: StackConfig,
  changes: ConfigChanges = {},
  nowMs: number = Date.now(),
): { ok: true; hub: HubConfig } | { ok: false; reason: string } {
  const loaded = loadHubConfig(applyChanges(config, changes), [], [], nowMs);
  if (loaded.ok) return { ok: true, hub: loaded.config };
  return { ok: false, reason: loaded.problems.map(formatProblem).join("\n  ") };
}

export function decide(
  config: StackConfig,
  changes: ConfigChanges,
  what: string,
  nowMs: number = Date.now(),
): Decision {
  const before = resolveConfig(config, {}, nowMs);
  if (!before.ok)
    return { ok: false, reason: `the stack's current config is refused; fix it first:\n  ${before.reason}` };
  const after = resolveConfig(config, changes, nowMs);
  if (!after.ok) return { ok: false, reason: `${what} would be refused:\n  ${after.reason}` };
  return { ok: true, changes, before: before.hub, after: after.hub, summary: what };
}

/** The config keys of a GPU pin (`gpu on|off --for`). */
export const PIN_KEYS = [key("gpuPinNodes"), key("gpuPinUntil")] as const;
/** Changes that remove a pin, when the stack has one (either key). */
export const unpinChanges = (config: StackConfig): ConfigChanges =>
  PIN_KEYS.some((k) => config[k]) ? Object.fromEntries(PIN_KEYS.map((k) => [k, null])) : {};

/** What the GPU commands say on the k8s tier, where KEDA and the cluster autoscaler move the GPU (docs/kubernetes.md). */
export function k8sGpuAnswer(command: string, stack = "<name>"): string {
  if (command === "gpu image build" || command === "gpu image status")
    return `the k8s tier's GPU nodes boot DigitalOcean's own DOKS GPU node image (driver and container toolkit included); there is no baked image to build or check (docs/kubernetes.md).`;
  if (command === "gpu keep")
    return "on the k8s tier the GPU count belongs to KEDA and the cluster autoscaler (the stack sets only gpuMinNodes..gpuMaxNodes and never moves the count): nothing to keep.";
  const range = `the range: pulumi config set gpuMinNodes N --stack ${stack} (an always-on floor) or gpuMaxNodes N, then pulumi up`;
  if (command === "gpu scale")
    return `KEDA sizes the k8s tier's coder between gpuMinNodes and gpuMaxNodes from the queue and the month's budget; a node count set here would be undone. Change ${range} (docs/kubernetes.md).`;
  return `KEDA scales the k8s tier's GPU pool: it wakes on the first allowed coder request and empties the pool when idle; there is nothing to turn on, off or pin. For an always-on GPU change ${range} (docs/kubernetes.md).`;
}

/**
 * `gpu on|off`: only the hybrid tier has an on-demand GPU. A plain on or off replaces any pin:
 * the operator has just said what the GPU should do (`--for` pins it again; see scale.ts).
 */
export function decideGpu(config: StackConfig, on: boolean, nowMs: number = Date.now()): Decision {
  const current = resolveConfig(config, {}, nowMs);
  if (current.ok && current.hub.tier === "k8s") {
    return { ok: false, reason: k8sGpuAnswer(on ? "gpu on" : "gpu off") };
  }
  if (current.ok && current.hub.tier !== "hybrid") {
    return {
      ok: false,
      reason: `the ${current.hub.tier} tier has no on-demand GPU (${current.hub.tier === "cpu" ? "it runs no GPU" : "its GPU is always on"}). Switch tiers with: npm run hub -- tier hybrid --stack <name>`,
    };
  }
  const unpin = unpinChanges(config);
  if (current.ok && current.hub.gpu?.on === on && Object.keys(unpin).length === 0)
    return {
      ok: true,
      changes: {},
      before: current.hub,
      after: current.hub,
      summary: `the GPU is already ${on ? "on" : "off"}`,
    };
  return decide(
    config,
    { [key("gpuEnabled")]: String(on), ...unpin },
    `turning the GPU ${on ? "on" : "off"}${Object.keys(unpin).length ? " (and removing the pin)" : ""}`,
    nowMs,
  );
}

/**
 * `tier <tier>`: sets the tier and pins what must not move with it. The region stays (a volume
 * cannot leave its region) and the model cache never shrinks (volumes only grow in place).
 */
export function decideTier(config: StackConfig, tierText: string): Decision {
  if (!(TIERS as readonly string[]).includes(tierText))
    return { ok: false, reason: `unknown tier "${tierText}"; tiers: ${TIERS.join(", ")}` };
  const tier = tierText as Tier;
  const current = resolveConfig(config);
  if (!current.ok)
    return { ok: false, reason: `the stack's current config is refused; fix it first:\n  ${current.reason}` };
  if (current.hub.tier === tier)
    return {
      ok: true,
      changes: {},
      before: current.hub,
      after: current.hub,
      summary: `the stack is already on the ${tier} tier`,
    };
  const changes: Record<string, string | null> = { [key("tier")]: tier, [key("region")]: current.hub.region };
  // The old tier's on-demand settings would fight the new preset (gpuEnabled false on gpu, hours on cpu).
  for (const name of ["gpuEnabled", "gpuHoursPerMonth", "gpuWindows"]) if (config[key(name)]) changes[key(name)] = null;
  // A new hybrid stack starts with its GPU off: the operator turns it on.
  if (tier === "hybrid") changes[key("gpuEnabled")] = "false";
  const target = resolveConfig(config, changes);
  if (target.ok && target.hub.modelCache.sizeGiB < current.hub.modelCache.sizeGiB)
    changes[key("modelCacheGiB")] = String(current.hub.modelCache.sizeGiB);
  return decide(config, changes, `switching from ${current.hub.tier} to ${tier}`);
}

/** `gpu sync`: what the scheduled pipeline does — on inside a window, off outside it. */
export function decideGpuSync(config: StackConfig, now: Date): Decision {
  const current = resolveConfig(config, {}, now.getTime());
  if (!current.ok)
    return { ok: false, reason: `the stack's current config is refused; fix it first:\n  ${current.reason}` };
  const windows = parseWindows(current.hub.settings.gpuWindows).windows;
  if (windows.length === 0)
    return {
      ok: false,
      reason:
        "the stack has no gpuWindows; set them, e.g. pulumi config set --path 'gpuWindows[0]' 'mon-fri 08:00-18:00 Europe/Berlin'",
    };
  // A pin (gpu on|off --for) outranks the windows until it expires; an expired one is removed below.
  const pin = current.hub.gpuPin;
  if (pin && now.getTime() < pin.untilMs)
    return {
      ok: true,
      changes: {},
      before: current.hub,
      after: current.hub,
      summary: `the GPU is pinned at ${pin.nodes} node(s) until ${new Date(pin.untilMs).toISOString()}; the windows wait`,
    };
  return decideGpu(config, isInsideWindows(windows, now), now.getTime());
}

/** A step of a preview, as the engine reports it. */
export interface PreviewStep {
  readonly op: string;
  readonly urn: string;
  readonly type: string;
}

const VOLUME_TYPE = "digitalocean:index/volume:Volume";
const DESTRUCTIVE_OPS = new Set([
  "delete",
  "replace",
  "create-replacement",
  "delete-replaced",
  "discard",
  "discard-replaced",
]);

/** Refuses a preview that would delete or replace any volume: the model cache must survive everything. */
export function checkPreview(steps: readonly PreviewStep[]): { ok: true } | { ok: false; reason: string } {
  const risky = steps.filter((s) => s.type === VOLUME_TYPE && DESTRUCTIVE_OPS.has(s.op));
  if (risky.length === 0) return { ok: true };
  return {
    ok: false,
    reason: `the preview would ${[...new Set(risky.map((s) => s.op))].join("/")} ${risky.length} volume(s): ${risky.map((s) => s.urn.split("::").pop()).join(", ")}. Nothing was changed; the model cache is never deleted or replaced by this command.`,
  };
}

const money = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;

/** The closing lines: what changed, the burn rate now, and the projected month. */
export function describeOutcome(before: HubConfig, after: HubConfig, steps: readonly PreviewStep[]): string[] {
  const counts = new Map<string, number>();
  for (const s of steps) if (s.op !== "same") counts.set(s.op, (counts.get(s.op) ?? 0) + 1);
  const changed = [...counts].map(([op, n]) => `${n} ${op}`).join(", ") || "no resource changes";
  return [
    `changed: ${changed}`,
    `burn: ${money(before.cost.hourlyNowUsd)}/h → ${money(after.cost.hourlyNowUsd)}/h`,
    `projected month: ${money(after.cost.monthlyUsd)} (budget ${money(after.budgetUsd)})`,
  ];
}
