import { isInsideWindows, GpuWindow } from "../../stacks/windows";
import { emptyLearned, gapEndsWithin, LEARNING_DEFAULTS, LearningTuning, observe, slotOf, startLikelihood } from "./learning";
import type { AutoscalerState, Decision, DecisionReason, PolicyConfig, TickInput } from "./types";

/**
 * The scaling rule (README.md in this directory has it in prose, with its defaults and the peers
 * it follows). Called every tick with plain data by the controller and by `npm run simulate`.
 */

/** Load must stay above the target this long before a node is added (SkyServe, dstack, Knative stable window: 60 s). */
export const SCALE_UP_WINDOW_SECONDS = 60;
/** ...and below it this long before one is removed (dstack 10 min; SkyServe 20 min; KEDA cooldown 6 min). */
export const SCALE_DOWN_DELAY_SECONDS = 600;
/** The spend guard refuses a wake or a scale-up whose next hour would pass the GPU budget. */
export const BUDGET_LOOKAHEAD_HOURS = 1;

export function initialState(wantedNodes = 0): AutoscalerState {
  return {
    version: 1,
    wantedNodes,
    lastRequestMs: null,
    overloadSinceMs: null,
    underloadSinceMs: null,
    lastChangeMs: null,
    speculativeUntilMs: null,
    predictedInGapOfMs: null,
    predictedSlot: null,
    learned: emptyLearned(),
  };
}

// Windows change on minute boundaries and Intl is slow: remember the last answer per window list.
const windowCache = new WeakMap<readonly GpuWindow[], { minute: number; inside: boolean }>();
export function insideWindowsAt(windows: readonly GpuWindow[], nowMs: number): boolean {
  if (windows.length === 0) return false;
  const minute = Math.floor(nowMs / 60_000);
  const cached = windowCache.get(windows);
  if (cached && cached.minute === minute) return cached.inside;
  const inside = isInsideWindows(windows, new Date(minute * 60_000));
  windowCache.set(windows, { minute, inside });
  return inside;
}

const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Whether a quiet spell of `idleSeconds` should keep the last node, and the idle limit that implies. */
export function keepThroughQuiet(config: PolicyConfig, state: AutoscalerState, idleSeconds: number, tuning: LearningTuning): { keep: boolean; gapEndChance: number | undefined } {
  if (!config.predictive) return { keep: idleSeconds < config.idleSeconds, gapEndChance: undefined };
  const floor = Math.max(60, config.idleSeconds / tuning.idleFloorDivisor);
  const ceiling = config.idleSeconds * tuning.idleCeilingFactor;
  if (idleSeconds < floor) return { keep: true, gapEndChance: undefined };
  if (idleSeconds >= ceiling) return { keep: false, gapEndChance: undefined };
  // Staying on until the gap ends is cheaper than a restart when it ends within the restart's cost.
  const chance = gapEndsWithin(state.learned.gapsSeconds, idleSeconds, config.restartCostSeconds, tuning.minGapSamples);
  if (chance === undefined) return { keep: idleSeconds < config.idleSeconds, gapEndChance: undefined };
  return { keep: chance >= tuning.keepOnProbability, gapEndChance: chance };
}

interface Ctx {
  readonly config: PolicyConfig;
  readonly input: TickInput;
  readonly tuning: LearningTuning;
  state: AutoscalerState;
  readonly numbers: Record<string, number>;
}

function result(ctx: Ctx, wantedNodes: number, reason: DecisionReason, message: string): Decision {
  const current = ctx.input.nodes.ready + ctx.input.nodes.starting;
  const changed = wantedNodes !== current;
  const state: AutoscalerState = {
    ...ctx.state,
    wantedNodes,
    lastChangeMs: changed ? ctx.input.nowMs : ctx.state.lastChangeMs,
    // A change restarts the sustained-load clocks: the new node count has to prove itself.
    overloadSinceMs: changed ? null : ctx.state.overloadSinceMs,
    underloadSinceMs: changed ? null : ctx.state.underloadSinceMs,
  };
  return { wantedNodes, reason, message, numbers: { ...ctx.numbers, wantedNodes, currentNodes: current }, state };
}

function budgetAllows(ctx: Ctx, nodesAfter: number): boolean {
  const nextHour = nodesAfter * ctx.config.nodeHourlyUsd * BUDGET_LOOKAHEAD_HOURS;
  return ctx.input.monthToDateUsd + nextHour <= ctx.config.gpuBudgetUsd;
}

function predictWake(ctx: Ctx, idleSeconds: number): { wake: boolean; why: string; gapChance?: number; slotChance: number } {
  const { config, input, state, tuning } = ctx;
  const lead = config.coldStartSeconds;
  // Time of day: traffic usually starts in the slot a cold start from now; be ready for it.
  const targetMs = input.nowMs + lead * 1000;
  const slot = slotOf(targetMs);
  const slotChance = startLikelihood(state.learned, targetMs);
  const slotFresh = state.predictedSlot === null || slot > state.predictedSlot + 1;
  if (slotChance >= tuning.wakeOnSlotProbability && slotFresh) return { wake: true, why: `traffic started around this time of day on ${Math.round(slotChance * 100)}% of recent days`, slotChance };
  // Recent gaps: quiet spells this old usually end within one cold start.
  if (state.lastRequestMs !== null && state.predictedInGapOfMs !== state.lastRequestMs) {
    const gapChance = gapEndsWithin(state.learned.gapsSeconds, idleSeconds, lead, tuning.minGapSamples);
    if (gapChance !== undefined && gapChance >= tuning.wakeOnGapProbability) return { wake: true, why: `${Math.round(gapChance * 100)}% of recent quiet spells this long ended within a cold start`, gapChance, slotChance };
    return { wake: false, why: "", gapChance, slotChance };
  }
  return { wake: false, why: "", slotChance };
}

/**
 * The decision for one tick. Order matters: missing metrics hold everything; a pin beats the
 * controller; a spent budget beats demand; then demand, load and quiet decide within the floor
 * (gpuMinNodes, or one node inside gpuWindows) and the ceiling (gpuMaxNodes).
 */
export function decide(config: PolicyConfig, input: TickInput, previous: AutoscalerState, tuning: LearningTuning = LEARNING_DEFAULTS): Decision {
  const { nodes, nowMs } = input;
  const current = nodes.ready + nodes.starting;
  const numbers: Record<string, number> = { readyNodes: nodes.ready, startingNodes: nodes.starting, drainingNodes: nodes.draining, monthToDateUsd: round(input.monthToDateUsd, 2), gpuBudgetUsd: round(config.gpuBudgetUsd, 2) };
  const ctx: Ctx = { config, input, tuning, state: previous, numbers };

  // Metrics missing: keep what was wanted, learn nothing, move no clock: never flap on a blind tick.
  const loadBlind = nodes.ready > 0 && input.replicas === undefined;
  if (input.coderRequests === undefined || loadBlind) {
    const what = input.coderRequests === undefined ? "the gateway's request counts" : "vLLM's /metrics";
    return { wantedNodes: previous.wantedNodes, reason: "hold-metrics-missing", message: `holding ${previous.wantedNodes} GPU node(s): ${what} could not be read this tick`, numbers: { ...numbers, wantedNodes: previous.wantedNodes, currentNodes: current }, state: previous };
  }

  const requests = input.coderRequests;
  const learned = config.predictive ? observe(previous.learned, nowMs, requests, previous.lastRequestMs, tuning) : previous.learned;
  const lastRequestMs = requests > 0 ? nowMs : previous.lastRequestMs;
  ctx.state = { ...previous, learned, lastRequestMs };
  const idleSeconds = lastRequestMs === null ? Infinity : (nowMs - lastRequestMs) / 1000;
  numbers.coderRequests = requests;
  numbers.idleSeconds = Number.isFinite(idleSeconds) ? round(idleSeconds, 0) : -1;

  if (input.pin && nowMs < input.pin.untilMs) {
    return result(ctx, input.pin.nodes, "pinned", `pinned at ${input.pin.nodes} GPU node(s) until ${new Date(input.pin.untilMs).toISOString()}; the autoscaler leaves it alone`);
  }

  const inWindow = insideWindowsAt(config.windows, nowMs);
  const floor = Math.min(config.maxNodes, Math.max(config.minNodes, inWindow ? 1 : 0));
  numbers.floorNodes = floor;
  if (input.monthToDateUsd >= config.gpuBudgetUsd) {
    return result(ctx, config.minNodes, "budget-spent", `the month's GPU budget is spent ($${input.monthToDateUsd.toFixed(2)} of $${config.gpuBudgetUsd.toFixed(2)}): down to gpuMinNodes ${config.minNodes}; coder requests go to the fallback until the month ends or budgetUsd is raised`);
  }

  if (current === 0) {
    if (requests > 0 || floor > 0) {
      const want = Math.max(1, floor);
      if (!budgetAllows(ctx, want)) return result(ctx, floor, "budget-refuses-wake", `not waking the GPU: another hour at $${(want * config.nodeHourlyUsd).toFixed(2)}/h would pass the month's GPU budget ($${input.monthToDateUsd.toFixed(2)} of $${config.gpuBudgetUsd.toFixed(2)} spent)`);
      if (requests > 0) return result(ctx, want, "wake-on-demand", `waking ${want} GPU node(s): ${requests} coder request(s) while off`);
      return result(ctx, want, inWindow ? "window-floor" : "floor", inWindow ? "inside gpuWindows: keeping one GPU node" : `keeping gpuMinNodes ${floor}`);
    }
    if (config.predictive) {
      const p = predictWake(ctx, idleSeconds);
      numbers.slotStartChance = round(p.slotChance);
      if (p.gapChance !== undefined) numbers.gapEndChance = round(p.gapChance);
      if (p.wake && budgetAllows(ctx, 1)) {
        ctx.state = {
          ...ctx.state,
          speculativeUntilMs: nowMs + (config.coldStartSeconds + tuning.speculativeHoldSeconds) * 1000,
          predictedSlot: slotOf(nowMs + config.coldStartSeconds * 1000),
          predictedInGapOfMs: ctx.state.lastRequestMs,
        };
        return result(ctx, 1, "wake-predicted", `waking one GPU node ahead of expected traffic: ${p.why}`);
      }
    }
    return result(ctx, 0, "hold", "no coder traffic: the GPU stays off");
  }

  // Load: (running + waiting) per ready replica against what one replica holds.
  const inFlight = (input.replicas ?? []).reduce((sum, r) => sum + r.running + r.waiting, 0);
  const load = nodes.ready > 0 ? inFlight / (nodes.ready * config.replicaCapacity) : 0;
  numbers.load = round(load);
  numbers.targetLoad = config.targetLoad;
  numbers.requestsInFlight = inFlight;
  const over = nodes.ready > 0 && load > config.targetLoad;
  // One node fewer would still run below the target: the hysteresis band that stops flapping.
  const under = nodes.ready > 1 && load * nodes.ready < config.targetLoad * (nodes.ready - 1);
  const state = ctx.state;
  ctx.state = { ...state, overloadSinceMs: over ? state.overloadSinceMs ?? nowMs : null, underloadSinceMs: under ? state.underloadSinceMs ?? nowMs : null };
  const overFor = ctx.state.overloadSinceMs === null ? 0 : (nowMs - ctx.state.overloadSinceMs) / 1000;
  const underFor = ctx.state.underloadSinceMs === null ? 0 : (nowMs - ctx.state.underloadSinceMs) / 1000;
  numbers.overloadSeconds = overFor;
  numbers.underloadSeconds = underFor;

  if (current > config.maxNodes) return result(ctx, config.maxNodes, "above-maximum", `${current} GPU nodes run, above gpuMaxNodes ${config.maxNodes}`);

  const quiet = keepThroughQuiet(config, ctx.state, idleSeconds, tuning);
  const speculative = ctx.state.speculativeUntilMs !== null && nowMs < ctx.state.speculativeUntilMs;
  numbers.idleLimitReached = quiet.keep ? 0 : 1;
  if (quiet.gapEndChance !== undefined) numbers.gapEndChance = round(quiet.gapEndChance);
  if (requests > 0) ctx.state = { ...ctx.state, speculativeUntilMs: null };
  if (!quiet.keep && !speculative && inFlight === 0 && floor < current) {
    const limit = config.predictive ? "the gaps seen lately say this quiet spell will last" : `gpuIdleMinutes ${config.idleSeconds / 60}`;
    return result(ctx, floor, "idle", `no coder request for ${Math.round(idleSeconds / 60)} min (${limit}): down to ${floor} GPU node(s)`);
  }

  if (overFor >= SCALE_UP_WINDOW_SECONDS && current < config.maxNodes && nodes.starting === 0) {
    if (!budgetAllows(ctx, current + 1)) return result(ctx, current, "budget-refuses-scale-up", `load ${Math.round(load * 100)}% above ${Math.round(config.targetLoad * 100)}% for ${overFor} s, but another node's hour would pass the month's GPU budget`);
    return result(ctx, current + 1, "scale-up", `load ${Math.round(load * 100)}% of ${nodes.ready} replica(s) above ${Math.round(config.targetLoad * 100)}% for ${overFor} s: adding a GPU node`);
  }
  const settled = previous.lastChangeMs === null || (nowMs - previous.lastChangeMs) / 1000 >= SCALE_DOWN_DELAY_SECONDS;
  if (underFor >= SCALE_DOWN_DELAY_SECONDS && settled && current > Math.max(1, floor)) {
    return result(ctx, current - 1, "scale-down", `load ${Math.round(load * 100)}% of ${nodes.ready} replicas fits ${nodes.ready - 1} below ${Math.round(config.targetLoad * 100)}% for ${underFor} s: removing a GPU node (it drains first)`);
  }
  if (current < floor) return result(ctx, floor, inWindow ? "window-floor" : "floor", inWindow ? "inside gpuWindows: keeping one GPU node" : `keeping gpuMinNodes ${floor}`);
  return result(ctx, current, "hold", `${current} GPU node(s), load ${Math.round(load * 100)}%`);
}
