import { PROJECT } from "../../stacks";
import { MAX_PIN_MS } from "../../stacks/hub-config";
import { ConfigChanges, decide, Decision, PIN_KEYS, resolveConfig, StackConfig, unpinChanges } from "./decisions";

/**
 * `gpu scale N` (what the autoscale workflow runs for the controller) and the pins (`gpu on|off
 * --for 8h`, `gpu unpin`), as plain functions over the stack's config. Applying them is the
 * shared safe path of commands.ts: set config, preview, refuse a volume delete or replace, up.
 */

const key = (name: string) => `${PROJECT}:${name}`;
const GPU_TIERS = ["gpu", "hybrid", "multigpu"];

/** Who asked, for the log and Pulumi's update message: the controller's reason and decision id. */
export interface ScaleRequest {
  readonly nodes: number;
  readonly reason?: string;
  readonly decisionId?: string;
  /** Override an active pin (and remove it). */
  readonly force?: boolean;
}

/** Reasons are DecisionReason words from the controller, or a few words from a person. */
const REASON = /^[A-Za-z0-9][A-Za-z0-9 ._:/=-]{0,119}$/;
const DECISION_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$/;

/**
 * Checks the words that reach logs and Pulumi's update history: they come from a workflow input,
 * so nothing that could break a log line or a shell is taken.
 */
export function requestProblem(request: ScaleRequest): string | undefined {
  if (!Number.isInteger(request.nodes) || request.nodes < 0)
    return `the node count must be a whole number 0 or more, not ${JSON.stringify(request.nodes)}`;
  if (request.reason !== undefined && !REASON.test(request.reason))
    return `--reason must be 1-120 letters, digits, spaces or ._:/=- (e.g. wake-on-demand), not ${JSON.stringify(request.reason.slice(0, 40))}`;
  if (request.decisionId !== undefined && !DECISION_ID.test(request.decisionId))
    return `--decision-id must be 1-80 letters, digits or ._:- (e.g. the controller's decision id), not ${JSON.stringify(request.decisionId.slice(0, 40))}`;
  return undefined;
}

/** The words every scale line and Pulumi update carries: `reason wake-on-demand, decision d-42`. */
export function requestLabel(request: ScaleRequest): string {
  return [
    `reason ${request.reason ?? "manual"}`,
    ...(request.decisionId ? [`decision ${request.decisionId}`] : []),
  ].join(", ");
}

const pinText = (pin: { nodes: number; untilMs: number }) =>
  `${pin.nodes} GPU node(s) until ${isoSeconds(pin.untilMs)}`;
/** ISO-8601 UTC to the second, the form gpuPinUntil takes. */
export const isoSeconds = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * `gpu scale N`: the GPU node count, within gpuMinNodes..gpuMaxNodes (the gpu and multigpu tiers
 * never below 1). Nothing to do when the stack already runs N. An active pin refuses any other
 * count unless forced (the pin is then removed); an expired pin is removed with the change.
 * Scaling down removes the highest-numbered replicas (gpu-<N>..): the nodes are gpu-0..gpu-(N-1).
 */
export function decideScale(config: StackConfig, request: ScaleRequest, nowMs: number): Decision {
  const bad = requestProblem(request);
  if (bad) return { ok: false, reason: bad };
  const current = resolveConfig(config, {}, nowMs);
  if (!current.ok)
    return { ok: false, reason: `the stack's current config is refused; fix it first:\n  ${current.reason}` };
  const hub = current.hub;
  const n = request.nodes;
  if (!GPU_TIERS.includes(hub.tier) || !hub.gpu)
    return {
      ok: false,
      reason: `the ${hub.tier} tier runs no GPU, so there is nothing to scale. Switch tiers with: npm run hub -- tier hybrid --stack <name>`,
    };
  const running = hub.gpu.on ? hub.gpu.count : 0;
  const { gpuMinNodes: min, gpuMaxNodes: max } = hub.settings;
  const floor = hub.tier === "hybrid" ? min : Math.max(1, min);
  if (n < floor || n > max) {
    const why =
      hub.tier === "hybrid"
        ? ""
        : ` (the ${hub.tier} tier keeps at least one GPU node; for scale to zero use tier hybrid)`;
    return {
      ok: false,
      reason: `${n} GPU node(s) is outside the stack's range ${floor}..${max} (gpuMinNodes..gpuMaxNodes)${why}. Ask for ${n < floor ? floor : max}, or widen the range: pulumi config set ${n < floor ? "gpuMinNodes" : "gpuMaxNodes"} ${n}`,
    };
  }
  const pin = hub.gpuPin;
  const pinActive = pin !== undefined && nowMs < pin.untilMs;
  if (pinActive && n !== pin.nodes && !request.force) {
    return {
      ok: false,
      reason: `the GPU is pinned at ${pinText(pin)} (gpu on|off --for); the autoscaler leaves it alone until then, so ${n} node(s) is refused. Nothing was changed. Use --force to override (it removes the pin), or npm run hub -- gpu unpin.`,
    };
  }
  if (n === running)
    return {
      ok: true,
      changes: {},
      before: hub,
      after: hub,
      summary: `the stack already runs ${n} GPU node(s) (${requestLabel(request)})`,
    };

  const changes: Record<string, string | null> = {};
  // An expired pin goes with the change; a forced one too (the operator overrode it).
  if (pin && (!pinActive || request.force)) Object.assign(changes, unpinChanges(config));
  if (hub.tier === "hybrid") {
    // Off keeps gpuCount (the hybrid tier needs at least one for when it is on).
    changes[key("gpuEnabled")] = String(n > 0);
    if (n > 0 && n !== hub.gpu.count) changes[key("gpuCount")] = String(n);
  } else {
    changes[key("gpuCount")] = String(n);
  }
  // Unset, gpuMaxNodes follows gpuCount upwards, and one model-cache volume exists per node slot
  // (max of the two): written down before a scale-down, so no volume leaves the program.
  if (!config[key("gpuMaxNodes")]) changes[key("gpuMaxNodes")] = String(max);
  const direction = n > running ? "up" : "down";
  const removed =
    direction === "down" && n > 0
      ? ` (removing ${Array.from({ length: running - n }, (_, i) => `gpu-${n + i}`).join(", ")}: it leaves the routes, drains, then its droplet goes; its model-cache volume stays)`
      : "";
  return decide(
    config,
    changes,
    `scaling ${direction} from ${running} to ${n} GPU node(s)${removed}; ${requestLabel(request)}`,
    nowMs,
  );
}

/** Durations a pin takes: `8h`, `90m`, `1d`, `2h30m`. */
const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$/;

export function parsePinDuration(text: string): { ok: true; ms: number } | { ok: false; reason: string } {
  const m = DURATION.exec(text.trim());
  const ms = m ? ((Number(m[1] ?? 0) * 24 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 60_000 : NaN;
  if (!m || !(ms > 0))
    return {
      ok: false,
      reason: `--for takes a duration such as 8h, 90m, 1d or 2h30m, not ${JSON.stringify(text.slice(0, 40))}`,
    };
  if (ms > MAX_PIN_MS)
    return {
      ok: false,
      reason: `--for ${text} is longer than 31 days; for a GPU that is always on use tier gpu (npm run hub -- tier gpu), which the budget check prices for the month`,
    };
  return { ok: true, ms };
}

/**
 * `gpu on --for 8h` / `gpu off --for 2h` (hybrid): the GPU on or off now, and the controller (and
 * the windows' `gpu sync`) leave it there until the pin ends. The pin lives in the stack's config.
 */
export function decidePin(config: StackConfig, on: boolean, durationMs: number, nowMs: number): Decision {
  const current = resolveConfig(config, {}, nowMs);
  if (current.ok && current.hub.tier !== "hybrid") {
    return {
      ok: false,
      reason: `the ${current.hub.tier} tier has no on-demand GPU to pin (${current.hub.tier === "cpu" ? "it runs no GPU" : "its GPU is always on"}). Switch tiers with: npm run hub -- tier hybrid --stack <name>`,
    };
  }
  if (!current.ok)
    return { ok: false, reason: `the stack's current config is refused; fix it first:\n  ${current.reason}` };
  const nodes = on ? (current.hub.gpu?.count ?? 1) : 0;
  const until = isoSeconds(nowMs + durationMs);
  const changes: ConfigChanges = {
    [key("gpuEnabled")]: String(on),
    [PIN_KEYS[0]]: String(nodes),
    [PIN_KEYS[1]]: until,
  };
  return decide(
    config,
    changes,
    `turning the GPU ${on ? "on" : "off"} and pinning it at ${nodes} node(s) until ${until}`,
    nowMs,
  );
}

/** `gpu unpin`: removes the pin, so the controller decides again. Works even when the pin itself is what the checks refuse. */
export function decideUnpin(config: StackConfig, nowMs: number): Decision {
  const changes = unpinChanges(config);
  const after = resolveConfig(config, changes, nowMs);
  if (!after.ok)
    return {
      ok: false,
      reason: `the stack's config is refused even without the pin; fix it first:\n  ${after.reason}`,
    };
  if (Object.keys(changes).length === 0)
    return { ok: true, changes, before: after.hub, after: after.hub, summary: "the GPU is not pinned" };
  const before = resolveConfig(config, {}, nowMs);
  return {
    ok: true,
    changes,
    before: before.ok ? before.hub : after.hub,
    after: after.hub,
    summary: "removing the GPU pin; the autoscaler decides again",
  };
}

/** Stack outputs as the Automation API returns them. */
export type StackOutputs = Readonly<Record<string, { readonly value: unknown; readonly secret: boolean }>>;

/** What the stack runs, from its outputs: the GPU nodes (nodeAddresses names each) and the pin. Undefined before a first deploy. */
export function deployedGpu(
  outputs: StackOutputs,
): { nodes: number; pin?: { nodes: number; until: string } } | undefined {
  const nodes = outputs.nodeAddresses?.value;
  if (typeof nodes !== "object" || nodes === null) return undefined;
  const count = Object.keys(nodes).filter((n) => /^gpu-\d+$/.test(n)).length;
  const pin = outputs.gpuPin?.value as { nodes?: unknown; until?: unknown } | undefined;
  const validPin =
    pin && typeof pin.nodes === "number" && typeof pin.until === "string"
      ? { nodes: pin.nodes, until: pin.until }
      : undefined;
  return { nodes: count, ...(validPin ? { pin: validPin } : {}) };
}

/**
 * Config changes that make a checkout say what the stack runs (the state is the truth): a runner's
 * fresh checkout has the committed gpuEnabled/gpuCount and no pin, while the autoscaler or an
 * operator may have moved the GPU since. Only the GPU count and the pin are taken over.
 */
export function adoptDeployed(
  config: StackConfig,
  deployed: { nodes: number; pin?: { nodes: number; until: string } },
  nowMs: number,
): ConfigChanges {
  const current = resolveConfig(config, {}, nowMs);
  const tier = current.ok ? current.hub.tier : config[key("tier")]?.value;
  if (!tier || !GPU_TIERS.includes(tier)) return {};
  const changes: Record<string, string | null> = {};
  const set = (name: string, value: string | null) => {
    const have = config[key(name)]?.value;
    if (value === null ? have !== undefined : have !== value) changes[key(name)] = value;
  };
  if (tier === "hybrid") {
    set("gpuEnabled", String(deployed.nodes > 0));
    if (deployed.nodes > 0 && (!current.ok || current.hub.gpu?.count !== deployed.nodes))
      set("gpuCount", String(deployed.nodes));
  } else if (deployed.nodes > 0 && (!current.ok || current.hub.gpu?.count !== deployed.nodes)) {
    set("gpuCount", String(deployed.nodes));
  }
  set("gpuPinNodes", deployed.pin ? String(deployed.pin.nodes) : null);
  set("gpuPinUntil", deployed.pin ? deployed.pin.until : null);
  return changes;
}
