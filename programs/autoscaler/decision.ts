import { MAX_PIN_MS } from "../../stacks/hub-config";
import type { GpuWindow } from "../../stacks/windows";
import {
  activeLikelihood,
  emptyLearned,
  gapEndsWithin,
  LEARNING_DEFAULTS,
  LearningTuning,
  observe,
  scorePrediction,
  slotOf,
  startLikelihood,
} from "./learning";
import { SLOT_SECONDS } from "./types";
import type { AutoscalerState, Decision, DecisionReason, LearnedTraffic, PolicyConfig, TickInput } from "./types";

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
/** The predictive rule's spending is measured over the last few days (3-day half-life). */
const SPEND_MEMORY_SECONDS = (3 * 86400) / Math.LN2;
/** A gap in ticks longer than this (a restart) counts as this much. */
const MAX_TICK_SECONDS = 300;

/** Whether the predictive rule may spend more GPU time now: what it wasted lately is within its share of the GPU time. */
export const mayPredict = (
  config: PolicyConfig,
  nodeSeconds: number,
  wastedNodeSeconds: number,
  tuning: LearningTuning,
): boolean => config.predictive && wastedNodeSeconds <= tuning.speculativeShare * nodeSeconds;

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
    extending: false,
    nodeSeconds: 0,
    speculativeNodeSeconds: 0,
    pendingNodeSeconds: 0,
    lastTickMs: null,
    learned: emptyLearned(),
  };
}

// isInsideWindows builds an Intl formatter per call, too slow for a replay's every tick. A zone's
// UTC offset changes only at quarter-hour boundaries, so it is read once per quarter hour and
// the rest is arithmetic; test/autoscaler-decision.test.ts checks it against isInsideWindows.
const formatters = new Map<string, Intl.DateTimeFormat>();
const offsets = new Map<string, { quarter: number; offsetMs: number }>();
function zoneOffsetMs(timeZone: string, nowMs: number): number {
  const quarter = Math.floor(nowMs / 900_000);
  const cached = offsets.get(timeZone);
  if (cached && cached.quarter === quarter) return cached.offsetMs;
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      hourCycle: "h23",
    });
    formatters.set(timeZone, f);
  }
  const at = quarter * 900_000;
  const part: Record<string, number> = {};
  for (const p of f.formatToParts(new Date(at))) if (p.type !== "literal") part[p.type] = Number(p.value);
  const offsetMs = Date.UTC(part.year, part.month - 1, part.day, part.hour, part.minute) - at;
  offsets.set(timeZone, { quarter, offsetMs });
  return offsetMs;
}

/** Whether `nowMs` falls inside any window, as stacks/windows.ts isInsideWindows decides it. */
export function insideWindowsAt(windows: readonly GpuWindow[], nowMs: number): boolean {
  for (const w of windows) {
    const local = new Date(Math.floor(nowMs / 60_000) * 60_000 + zoneOffsetMs(w.timeZone, nowMs));
    const minutes = local.getUTCHours() * 60 + local.getUTCMinutes();
    if (w.days.has(local.getUTCDay()) && minutes >= w.start && minutes < w.end) return true;
  }
  return false;
}

const pct = (n: number) => `${Math.round(n * 100)}%`;
const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;

/** What catching a burst's start is worth, node-seconds: the requests a wake on demand sends to the fallback, priced. */
export const burstValueSeconds = (learned: LearnedTraffic, tuning: LearningTuning): number =>
  learned.burstRequests * tuning.requestValueNodeSeconds;

/**
 * Whether a quiet spell of `idleSeconds` should keep the last node. Reactive: until
 * gpuIdleMinutes. Predictive: at least that long, then while the chance p that traffic resumes
 * within one restart's cost R (from the gaps seen, the time of day, or the slot usually being
 * busy) makes staying on pay: p x (R + burst value) >= R. Never past gpuIdleMinutes x the ceiling.
 */
export function keepThroughQuiet(
  config: PolicyConfig,
  learned: LearnedTraffic,
  nowMs: number,
  idleSeconds: number,
  tuning: LearningTuning,
): { keep: boolean; chance: number | undefined } {
  if (idleSeconds < config.idleSeconds) return { keep: true, chance: undefined };
  if (!config.predictive || idleSeconds >= config.idleSeconds * tuning.idleCeilingFactor)
    return { keep: false, chance: undefined };
  const horizon = config.restartCostSeconds;
  const chance = Math.max(
    gapEndsWithin(learned.gapsSeconds, idleSeconds, horizon, tuning.minGapSamples) ?? 0,
    startLikelihood(learned, nowMs + config.coldStartSeconds * 1000),
    activeLikelihood(learned, nowMs),
    activeLikelihood(learned, nowMs + SLOT_SECONDS * 1000),
  );
  const trusted = Math.min(chance, learned.keepHitRate);
  return { keep: trusted * (horizon + burstValueSeconds(learned, tuning)) >= horizon, chance: trusted };
}

/** What the tick changes in the state, gathered before one state object is built. */
interface Draft {
  learned: AutoscalerState["learned"];
  lastRequestMs: number | null;
  overloadSinceMs: number | null;
  underloadSinceMs: number | null;
  speculativeUntilMs: number | null;
  predictedInGapOfMs: number | null;
  predictedSlot: number | null;
  extending: boolean;
  nodeSeconds: number;
  speculativeNodeSeconds: number;
  pendingNodeSeconds: number;
}

function finish(
  previous: AutoscalerState,
  draft: Draft,
  input: TickInput,
  numbers: Record<string, number>,
  wantedNodes: number,
  reason: DecisionReason,
  message: string,
): Decision {
  const current = input.nodes.ready + input.nodes.starting;
  const changed = wantedNodes !== current;
  numbers.wantedNodes = wantedNodes;
  numbers.currentNodes = current;
  const state: AutoscalerState = {
    version: 1,
    wantedNodes,
    lastRequestMs: draft.lastRequestMs,
    // A change restarts the sustained-load clocks: the new node count has to prove itself.
    overloadSinceMs: changed ? null : draft.overloadSinceMs,
    underloadSinceMs: changed ? null : draft.underloadSinceMs,
    lastChangeMs: changed ? input.nowMs : previous.lastChangeMs,
    speculativeUntilMs: draft.speculativeUntilMs,
    predictedInGapOfMs: draft.predictedInGapOfMs,
    predictedSlot: draft.predictedSlot,
    extending: draft.extending,
    nodeSeconds: draft.nodeSeconds,
    speculativeNodeSeconds: draft.speculativeNodeSeconds,
    pendingNodeSeconds: draft.pendingNodeSeconds,
    lastTickMs: input.nowMs,
    learned: draft.learned,
  };
  return { wantedNodes, reason, message, numbers, state };
}

const budgetAllows = (config: PolicyConfig, input: TickInput, nodesAfter: number): boolean =>
  input.monthToDateUsd + nodesAfter * config.nodeHourlyUsd * BUDGET_LOOKAHEAD_HOURS <= config.gpuBudgetUsd;

/**
 * While off: wake ahead when the chance p that a burst starts within a cold start (time of day, or
 * the gaps seen) pays for a wake that may be wasted: p x burst value >= restart cost + the hold.
 * One such wake per quiet gap and per time-of-day slot.
 */
function predictWake(
  config: PolicyConfig,
  nowMs: number,
  draft: Draft,
  idleSeconds: number,
  tuning: LearningTuning,
): { wake: boolean; why: string; chance: number } {
  const value = burstValueSeconds(draft.learned, tuning);
  const price = config.restartCostSeconds + tuning.speculativeHoldSeconds;
  const targetMs = nowMs + config.coldStartSeconds * 1000;
  const slot = slotOf(targetMs);
  const slotChance =
    draft.predictedSlot === null || slot > draft.predictedSlot + 1 ? startLikelihood(draft.learned, targetMs) : 0;
  const gapChance =
    draft.lastRequestMs !== null && draft.predictedInGapOfMs !== draft.lastRequestMs
      ? (gapEndsWithin(
          draft.learned.gapsSeconds,
          idleSeconds,
          config.coldStartSeconds + tuning.speculativeHoldSeconds,
          tuning.minGapSamples,
        ) ?? 0)
      : 0;
  const chance = Math.min(Math.max(slotChance, gapChance), draft.learned.wakeHitRate);
  if (chance * value < price || chance === 0) return { wake: false, why: "", chance };
  const why =
    slotChance >= gapChance
      ? `traffic started around this time of day on ${pct(slotChance)} of recent days`
      : `${pct(gapChance)} of recent quiet spells this long ended within a cold start`;
  return {
    wake: true,
    why: `${why}; a burst's first cold start held ${draft.learned.burstRequests.toFixed(0)} requests lately`,
    chance,
  };
}

/** A pin the decision honours: not expired, and reaching no further than 31 days ahead (a longer one came from no checked source). */
const pinInForce = (pin: TickInput["pin"], nowMs: number): pin is NonNullable<TickInput["pin"]> =>
  pin !== undefined && nowMs < pin.untilMs && pin.untilMs - nowMs <= MAX_PIN_MS;

/**
 * The decision for one tick. Order matters: a spent budget beats everything, blind ticks, pins
 * and demand included; then a pin beats the controller; missing metrics hold (and never wake);
 * then demand, load and quiet decide within the floor (gpuMinNodes, or one node inside
 * gpuWindows) and the ceiling (gpuMaxNodes).
 */
export function decide(
  config: PolicyConfig,
  input: TickInput,
  previous: AutoscalerState,
  tuning: LearningTuning = LEARNING_DEFAULTS,
): Decision {
  const { nodes, nowMs } = input;
  const current = nodes.ready + nodes.starting;
  const numbers: Record<string, number> = {
    readyNodes: nodes.ready,
    startingNodes: nodes.starting,
    drainingNodes: nodes.draining,
    monthToDateUsd: round(input.monthToDateUsd, 2),
    gpuBudgetUsd: round(config.gpuBudgetUsd, 2),
  };
  const spend = `$${input.monthToDateUsd.toFixed(2)} of $${config.gpuBudgetUsd.toFixed(2)}`;
  const budgetSpent = input.monthToDateUsd >= config.gpuBudgetUsd;
  const budgetSpentMessage = `the month's GPU budget is spent (${spend}): down to gpuMinNodes ${config.minNodes}; coder requests go to the fallback until the month ends or budgetUsd is raised`;
  const pin = pinInForce(input.pin, nowMs) ? input.pin : undefined;
  const pinRefused =
    input.pin !== undefined && nowMs < input.pin.untilMs && pin === undefined
      ? `; a pin until ${new Date(input.pin.untilMs).toISOString()} is ignored: pins reach at most 31 days ahead`
      : "";

  // Metrics missing: learn nothing, move no clock, never wake on a blind tick. The budget and a pin still decide.
  if (input.coderRequests === undefined || (nodes.ready > 0 && input.replicas === undefined)) {
    const what = input.coderRequests === undefined ? "the gatekeeper's request counts" : "vLLM's /metrics";
    numbers.currentNodes = current;
    const blind = (wantedNodes: number, reason: DecisionReason, message: string): Decision => {
      numbers.wantedNodes = wantedNodes;
      const changed = wantedNodes !== previous.wantedNodes;
      return {
        wantedNodes,
        reason,
        message,
        numbers,
        state: changed
          ? { ...previous, wantedNodes, lastChangeMs: nowMs, overloadSinceMs: null, underloadSinceMs: null }
          : previous,
      };
    };
    if (budgetSpent)
      return blind(config.minNodes, "budget-spent", `${budgetSpentMessage} (${what} could not be read this tick)`);
    if (pin)
      return blind(
        pin.nodes,
        "pinned",
        `pinned at ${pin.nodes} GPU node(s) until ${new Date(pin.untilMs).toISOString()} (${what} could not be read this tick)`,
      );
    // The controller asks nothing of the pipeline on a hold, so holding never starts a wake.
    return blind(
      previous.wantedNodes,
      "hold-metrics-missing",
      `holding ${previous.wantedNodes} GPU node(s): ${what} could not be read this tick${pinRefused}`,
    );
  }

  const requests = input.coderRequests;
  let learned = config.predictive
    ? observe(previous.learned, nowMs, requests, previous.lastRequestMs, config.coldStartSeconds, tuning)
    : previous.learned;
  // The GPU time since the last tick; while a prediction is out, its time is pending.
  const tickSeconds =
    previous.lastTickMs === null ? 0 : Math.min(MAX_TICK_SECONDS, Math.max(0, (nowMs - previous.lastTickMs) / 1000));
  const decay = Math.exp(-tickSeconds / SPEND_MEMORY_SECONDS);
  const nodeTime = tickSeconds * current;
  const predicting =
    previous.extending || (previous.speculativeUntilMs !== null && nowMs <= previous.speculativeUntilMs);
  let pending = previous.pendingNodeSeconds + (predicting ? nodeTime : 0);
  let wasted = previous.speculativeNodeSeconds * decay;
  // Score the last prediction once its outcome is known; a miss charges its time as wasted.
  const settle = (kind: "wake" | "keep", hit: boolean) => {
    learned = scorePrediction(learned, kind, hit, tuning);
    if (!hit) wasted += pending;
    pending = 0;
  };
  // A wake ahead was right if traffic came while its node was ready (traffic during its cold start came too soon to help).
  let speculativeUntilMs = previous.speculativeUntilMs;
  if (speculativeUntilMs !== null && (requests > 0 || nowMs >= speculativeUntilMs)) {
    settle("wake", requests > 0 && nowMs <= speculativeUntilMs && nodes.ready > 0);
    speculativeUntilMs = null;
  }
  // A keep-on was right if traffic came back before the extension cost more than a restart.
  let extending = previous.extending;
  if (extending && requests > 0) {
    const extendedSeconds =
      previous.lastRequestMs === null ? Infinity : (nowMs - previous.lastRequestMs) / 1000 - config.idleSeconds;
    settle("keep", extendedSeconds <= config.restartCostSeconds);
    extending = false;
  }
  const draft: Draft = {
    nodeSeconds: previous.nodeSeconds * decay + nodeTime,
    speculativeNodeSeconds: wasted,
    pendingNodeSeconds: pending,
    learned,
    lastRequestMs: requests > 0 ? nowMs : previous.lastRequestMs,
    overloadSinceMs: previous.overloadSinceMs,
    underloadSinceMs: previous.underloadSinceMs,
    // A request ends a predicted wake's grace: from here the ordinary rules apply.
    speculativeUntilMs,
    predictedInGapOfMs: previous.predictedInGapOfMs,
    predictedSlot: previous.predictedSlot,
    extending,
  };
  const done = (wanted: number, reason: DecisionReason, message: string) =>
    finish(previous, draft, input, numbers, wanted, reason, `${message}${pinRefused}`);
  const idleSeconds = draft.lastRequestMs === null ? Infinity : (nowMs - draft.lastRequestMs) / 1000;
  numbers.coderRequests = requests;
  numbers.idleSeconds = Number.isFinite(idleSeconds) ? Math.round(idleSeconds) : -1;

  if (budgetSpent) return done(config.minNodes, "budget-spent", budgetSpentMessage);
  if (pin)
    return done(
      pin.nodes,
      "pinned",
      `pinned at ${pin.nodes} GPU node(s) until ${new Date(pin.untilMs).toISOString()}; the autoscaler leaves it alone`,
    );

  const inWindow = insideWindowsAt(config.windows, nowMs);
  const floor = Math.min(config.maxNodes, Math.max(config.minNodes, inWindow ? 1 : 0));
  numbers.floorNodes = floor;
  const floorReason: DecisionReason = inWindow && floor > config.minNodes ? "window-floor" : "floor";
  const floorMessage =
    floorReason === "window-floor" ? "inside gpuWindows: keeping one GPU node" : `keeping gpuMinNodes ${floor}`;

  if (current === 0) {
    if (requests > 0 || floor > 0) {
      const want = Math.max(1, floor);
      if (!budgetAllows(config, input, want))
        return done(
          floor,
          "budget-refuses-wake",
          `not waking the GPU: another hour at $${(want * config.nodeHourlyUsd).toFixed(2)}/h would pass the month's GPU budget (${spend} spent)`,
        );
      if (requests > 0)
        return done(want, "wake-on-demand", `waking ${want} GPU node(s): ${requests} coder request(s) while off`);
      return done(want, floorReason, floorMessage);
    }
    if (mayPredict(config, draft.nodeSeconds, draft.speculativeNodeSeconds, tuning)) {
      const p = predictWake(config, nowMs, draft, idleSeconds, tuning);
      numbers.trafficChance = round(p.chance);
      numbers.burstRequests = round(draft.learned.burstRequests, 1);
      if (p.wake && budgetAllows(config, input, 1)) {
        // Held through the slot traffic is expected in, and a grace after it.
        draft.predictedSlot = slotOf(nowMs + config.coldStartSeconds * 1000);
        draft.speculativeUntilMs = ((draft.predictedSlot + 1) * SLOT_SECONDS + tuning.speculativeHoldSeconds) * 1000;
        draft.predictedInGapOfMs = draft.lastRequestMs;
        return done(1, "wake-predicted", `waking one GPU node ahead of expected traffic: ${p.why}`);
      }
    }
    return done(0, "hold", "no coder traffic: the GPU stays off");
  }

  // Load: (running + waiting) per ready replica against what one replica holds.
  let inFlight = 0;
  for (const r of input.replicas ?? []) inFlight += r.running + r.waiting;
  const load = nodes.ready > 0 ? inFlight / (nodes.ready * config.replicaCapacity) : 0;
  const over = nodes.ready > 0 && load > config.targetLoad;
  // One node fewer would still run below the target: the hysteresis band that stops flapping.
  const under = nodes.ready > 1 && load * nodes.ready < config.targetLoad * (nodes.ready - 1);
  draft.overloadSinceMs = over ? (previous.overloadSinceMs ?? nowMs) : null;
  draft.underloadSinceMs = under ? (previous.underloadSinceMs ?? nowMs) : null;
  const overFor = draft.overloadSinceMs === null ? 0 : (nowMs - draft.overloadSinceMs) / 1000;
  const underFor = draft.underloadSinceMs === null ? 0 : (nowMs - draft.underloadSinceMs) / 1000;
  numbers.load = round(load);
  numbers.targetLoad = config.targetLoad;
  numbers.requestsInFlight = inFlight;
  numbers.overloadSeconds = overFor;
  numbers.underloadSeconds = underFor;

  if (current > config.maxNodes)
    return done(config.maxNodes, "above-maximum", `${current} GPU nodes run, above gpuMaxNodes ${config.maxNodes}`);

  const quiet = mayPredict(config, draft.nodeSeconds, draft.speculativeNodeSeconds, tuning)
    ? keepThroughQuiet(config, draft.learned, nowMs, idleSeconds, tuning)
    : keepThroughQuiet({ ...config, predictive: false }, draft.learned, nowMs, idleSeconds, tuning);
  const speculative = draft.speculativeUntilMs !== null && nowMs < draft.speculativeUntilMs;
  if (quiet.chance !== undefined) numbers.trafficChance = round(quiet.chance);
  if (quiet.keep && idleSeconds >= config.idleSeconds && config.predictive && floor < current) draft.extending = true;
  if (!quiet.keep && !speculative && inFlight === 0 && floor < current) {
    if (draft.extending) {
      draft.learned = scorePrediction(draft.learned, "keep", false, tuning);
      draft.speculativeNodeSeconds += draft.pendingNodeSeconds;
      draft.pendingNodeSeconds = 0;
      draft.extending = false;
    }
    const limit = config.predictive
      ? "the gaps seen lately say this quiet spell will outlast a restart"
      : `gpuIdleMinutes ${config.idleSeconds / 60}`;
    return done(
      floor,
      "idle",
      `no coder request for ${Math.round(idleSeconds / 60)} min (${limit}): down to ${floor} GPU node(s)`,
    );
  }

  if (overFor >= SCALE_UP_WINDOW_SECONDS && current < config.maxNodes && nodes.starting === 0) {
    if (!budgetAllows(config, input, current + 1))
      return done(
        current,
        "budget-refuses-scale-up",
        `load ${pct(load)} above ${pct(config.targetLoad)} for ${overFor} s, but another node's hour would pass the month's GPU budget (${spend} spent)`,
      );
    return done(
      current + 1,
      "scale-up",
      `load ${pct(load)} of ${nodes.ready} replica(s) above ${pct(config.targetLoad)} for ${overFor} s: adding a GPU node`,
    );
  }
  const settled = previous.lastChangeMs === null || (nowMs - previous.lastChangeMs) / 1000 >= SCALE_DOWN_DELAY_SECONDS;
  if (underFor >= SCALE_DOWN_DELAY_SECONDS && settled && current > Math.max(1, floor)) {
    return done(
      current - 1,
      "scale-down",
      `load ${pct(load)} of ${nodes.ready} replicas fits ${nodes.ready - 1} below ${pct(config.targetLoad)} for ${underFor} s: removing a GPU node (it drains first)`,
    );
  }
  if (current < floor) return done(floor, floorReason, floorMessage);
  return done(current, "hold", `${current} GPU node(s), load ${pct(load)}`);
}
