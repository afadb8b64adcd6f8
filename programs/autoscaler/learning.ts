import { LearnedTraffic, SLOT_SECONDS, SLOTS_PER_DAY } from "./types";

/**
 * How the autoscaler learns when coder traffic comes, from nothing but the per-tick request
 * counts: a time-of-day profile of where quiet spells end (exponentially weighted over days) and
 * the latest quiet gaps between requests. Pure functions over plain data; the state is returned,
 * never mutated.
 *
 * The constants were chosen on 20 ServeGen m-large clients drawn at random from the upstream
 * data set (none of the four shared ones) and are reported on 20 other clients and on the
 * shared traces (docs/autoscaling.md, "Figures for the shared traces", gives the procedure and the figures).
 */
export interface LearningTuning {
  /** Weight of the newest day in the per-slot averages (0.3: a pattern fades after ~3 quiet days). */
  readonly dayWeight: number;
  /** A request after this much quiet counts as traffic starting. */
  readonly startGapSeconds: number;
  /** Gaps shorter than this are not kept (they say nothing about turning off). */
  readonly minGapSeconds: number;
  readonly gapHistory: number;
  /** Fewer recorded gaps than this longer than the current quiet spell: the gaps give no estimate. */
  readonly minGapSamples: number;
  /**
   * What serving one request on the GPU instead of the fallback is worth, in node-seconds of GPU
   * time. It prices the requests a cold start would miss (those seen in the first cold start of
   * recent bursts) against the GPU time a keep-on or an early wake costs; the only knob of the
   * predictive rule.
   */
  readonly requestValueNodeSeconds: number;
  /** The most of the GPU time lately that missed predictions may have cost, as a share of all of it. */
  readonly speculativeShare: number;
  /** A predicted wake holds the node this long past its expected start without a request. */
  readonly speculativeHoldSeconds: number;
  /** The learned idle time runs from gpuIdleMinutes up to gpuIdleMinutes x idleCeilingFactor: learning only ever keeps the node longer. */
  readonly idleCeilingFactor: number;
}

export const LEARNING_DEFAULTS: LearningTuning = {
  dayWeight: 0.3,
  startGapSeconds: 1800,
  minGapSeconds: 60,
  gapHistory: 64,
  minGapSamples: 4,
  requestValueNodeSeconds: 90,
  speculativeShare: 0.1,
  speculativeHoldSeconds: 900,
  idleCeilingFactor: 6,
};

export function emptyLearned(): LearnedTraffic {
  return {
    startBySlot: Array<number>(SLOTS_PER_DAY).fill(0),
    activeBySlot: Array<number>(SLOTS_PER_DAY).fill(0),
    daysSeen: 0,
    slot: null,
    slotActive: false,
    slotStarted: false,
    gapsSeconds: [],
    burstRequests: 0,
    burstsSeen: 0,
    countingUntilMs: null,
    countingRequests: 0,
    wakeHitRate: 0.5,
    keepHitRate: 0.5,
  };
}

/** Records whether a prediction came true. */
export function scorePrediction(
  l: LearnedTraffic,
  kind: "wake" | "keep",
  hit: boolean,
  tuning: LearningTuning = LEARNING_DEFAULTS,
): LearnedTraffic {
  const w = tuning.dayWeight;
  return kind === "wake"
    ? { ...l, wakeHitRate: l.wakeHitRate + w * ((hit ? 1 : 0) - l.wakeHitRate) }
    : { ...l, keepHitRate: l.keepHitRate + w * ((hit ? 1 : 0) - l.keepHitRate) };
}

export const slotOf = (ms: number): number => Math.floor(ms / 1000 / SLOT_SECONDS);
const slotOfDay = (absoluteSlot: number): number => ((absoluteSlot % SLOTS_PER_DAY) + SLOTS_PER_DAY) % SLOTS_PER_DAY;

function closeSlot(l: LearnedTraffic, weight: number): LearnedTraffic {
  if (l.slot === null) return l;
  const i = slotOfDay(l.slot);
  const startBySlot = l.startBySlot.slice();
  const activeBySlot = l.activeBySlot.slice();
  startBySlot[i] += weight * ((l.slotStarted ? 1 : 0) - startBySlot[i]);
  activeBySlot[i] += weight * ((l.slotActive ? 1 : 0) - activeBySlot[i]);
  return { ...l, startBySlot, activeBySlot, daysSeen: i === SLOTS_PER_DAY - 1 ? l.daysSeen + 1 : l.daysSeen };
}

/**
 * One tick's observation. `lastRequestMs` is the tick that last saw a request before this one.
 * A slot the controller did not watch (it was down) is left as it was: absence of data is not
 * absence of traffic.
 */
export function observe(
  l: LearnedTraffic,
  nowMs: number,
  requests: number,
  lastRequestMs: number | null,
  coldStartSeconds: number,
  tuning: LearningTuning = LEARNING_DEFAULTS,
): LearnedTraffic {
  const slot = slotOf(nowMs);
  let next = l;
  if (l.slot !== slot) {
    next = l.slot !== null && slot === l.slot + 1 ? closeSlot(l, tuning.dayWeight) : l;
    next = { ...next, slot, slotActive: false, slotStarted: false };
  }
  // A burst's first cold start: how many requests a wake on demand would have sent to the fallback.
  if (next.countingUntilMs !== null && nowMs > next.countingUntilMs) {
    const burstsSeen = next.burstsSeen + 1;
    const weight = Math.max(tuning.dayWeight, 1 / burstsSeen);
    next = {
      ...next,
      burstRequests: next.burstRequests + weight * (next.countingRequests - next.burstRequests),
      burstsSeen,
      countingUntilMs: null,
      countingRequests: 0,
    };
  }
  if (requests <= 0) return next;
  const gapSeconds = lastRequestMs === null ? Infinity : (nowMs - lastRequestMs) / 1000;
  const started = gapSeconds >= tuning.startGapSeconds;
  const keepGap = Number.isFinite(gapSeconds) && gapSeconds >= tuning.minGapSeconds;
  if (started) next = { ...next, countingUntilMs: nowMs + coldStartSeconds * 1000, countingRequests: requests };
  else if (next.countingUntilMs !== null) next = { ...next, countingRequests: next.countingRequests + requests };
  // Continuous traffic in a slot already marked: nothing more to record.
  if (next.slotActive && !keepGap && (!started || next.slotStarted)) return next;
  const gapsSeconds = keepGap ? [...next.gapsSeconds.slice(-(tuning.gapHistory - 1)), gapSeconds] : next.gapsSeconds;
  return { ...next, slotActive: true, slotStarted: next.slotStarted || started, gapsSeconds };
}

/**
 * Of the recorded gaps longer than `elapsedSeconds`, the share that ended within a further
 * `horizonSeconds`: the chance that a quiet spell this old ends that soon. Undefined with too few gaps.
 */
export function gapEndsWithin(
  gaps: readonly number[],
  elapsedSeconds: number,
  horizonSeconds: number,
  minSamples: number,
): number | undefined {
  let longer = 0;
  let endedSoon = 0;
  for (const g of gaps) {
    if (g <= elapsedSeconds) continue;
    longer++;
    if (g <= elapsedSeconds + horizonSeconds) endedSoon++;
  }
  return longer >= minSamples ? endedSoon / longer : undefined;
}

/** How often the slot holding `atMs` had coder traffic. */
export function activeLikelihood(l: LearnedTraffic, atMs: number): number {
  return l.daysSeen < 1 ? 0 : l.activeBySlot[slotOfDay(slotOf(atMs))];
}

/** How often traffic started around the slot holding `atMs` (that slot, half of each neighbour), capped at 1. */
export function startLikelihood(l: LearnedTraffic, atMs: number): number {
  if (l.daysSeen < 1) return 0;
  const i = slotOfDay(slotOf(atMs));
  const s = l.startBySlot;
  return Math.min(1, s[i] + 0.5 * (s[(i + SLOTS_PER_DAY - 1) % SLOTS_PER_DAY] + s[(i + 1) % SLOTS_PER_DAY]));
}
