import type { GpuWindow } from "../../stacks/windows";

/**
 * The autoscaler's contract: plain data in, plain data out. The controller (and the trace
 * simulator) call `decide` every tick with what they observed; the decision says how many GPU
 * nodes it wants, why, and the numbers behind it, and returns the state to pass next time.
 * Everything here is JSON-serialisable except `PolicyConfig.windows` (parsed from the stack's
 * gpuWindows text), so the controller can persist the state and rebuild it after a restart.
 */

/** What the stack's settings and the serving model say; fixed between ticks. */
export interface PolicyConfig {
  readonly minNodes: number;
  readonly maxNodes: number;
  /** gpuIdleMinutes in seconds: the fixed idle time (reactive), or the learned idle time's starting point. */
  readonly idleSeconds: number;
  /** gpuTargetLoadPercent / 100: (running + waiting) per replica over what one replica holds. */
  readonly targetLoad: number;
  /** gpuPredictiveWake: learn traffic times, wake ahead, adapt the idle time. */
  readonly predictive: boolean;
  readonly windows: readonly GpuWindow[];
  /** Sequences one replica holds at once (KV cache at typical request length, capped by vLLM's max-num-seqs). */
  readonly replicaCapacity: number;
  /** From the wake request until the replica takes traffic (the pipeline, boot, image pull, weights, engine start). */
  readonly coldStartSeconds: number;
  /** The billed part of a cold start plus the teardown: what a scale-to-zero and wake again costs in node-seconds. */
  readonly restartCostSeconds: number;
  readonly nodeHourlyUsd: number;
  /** What the month's GPU spend may reach: budgetUsd minus the always-on costs (CPU node, volumes). */
  readonly gpuBudgetUsd: number;
}

export interface TickInput {
  readonly nowMs: number;
  /** Nodes as the stack and health checks report them; draining nodes have left the routes already. */
  readonly nodes: { readonly ready: number; readonly starting: number; readonly draining: number };
  /**
   * Demand since the previous tick: coder requests the gatekeeper allowed for the `llm` scope
   * (demand.ts), however they were then answered (the GPU, the fallback, the off answer). Absent
   * when the gatekeeper's counts could not be read.
   */
  readonly coderRequests?: number;
  /** vLLM's num_requests_running / num_requests_waiting per ready replica. Absent when they could not be read. */
  readonly replicas?: readonly { readonly running: number; readonly waiting: number }[];
  /** The ledger: GPU node spend so far this calendar month. */
  readonly monthToDateUsd: number;
  /** A manual `gpu on --for 8h` (or off): the controller leaves the node count alone until it expires. */
  readonly pin?: { readonly nodes: number; readonly untilMs: number };
}

export type DecisionReason =
  | "hold-metrics-missing"
  | "pinned"
  | "budget-spent"
  | "budget-refuses-wake"
  | "budget-refuses-scale-up"
  | "wake-on-demand"
  | "wake-predicted"
  | "floor"
  | "window-floor"
  | "scale-up"
  | "scale-down"
  | "above-maximum"
  | "idle"
  | "hold";

export interface Decision {
  readonly wantedNodes: number;
  readonly reason: DecisionReason;
  /** One line for the log and the 503/fallback message. */
  readonly message: string;
  /** The figures behind it (the controller exports them as metrics). */
  readonly numbers: Readonly<Record<string, number>>;
  readonly state: AutoscalerState;
}

/** Slots of the day the learned profile keeps: 15 minutes each. */
export const SLOT_SECONDS = 900;
export const SLOTS_PER_DAY = 96;

/** What the autoscaler learned about when coder traffic comes. Plain numbers only. */
export interface LearnedTraffic {
  /** Per 15-minute slot of the (UTC) day: how often traffic started there after a quiet spell (exponentially weighted over days). */
  readonly startBySlot: readonly number[];
  /** Per slot: how often the slot had any coder request. */
  readonly activeBySlot: readonly number[];
  readonly daysSeen: number;
  /** The slot being observed (absolute slot number since the epoch) and what it has seen so far. */
  readonly slot: number | null;
  readonly slotActive: boolean;
  readonly slotStarted: boolean;
  /** The latest quiet gaps between coder requests, seconds (the newest last). */
  readonly gapsSeconds: readonly number[];
  /** Requests in a burst's first cold start (exponentially weighted over bursts): what a late wake loses. */
  readonly burstRequests: number;
  readonly burstsSeen: number;
  /** Counting the current burst's first cold start until then. */
  readonly countingUntilMs: number | null;
  readonly countingRequests: number;
  /**
   * How often the predictive rule was right lately (exponentially weighted, 0..1): a wake ahead
   * that met traffic before its hold ran out, a keep-on past gpuIdleMinutes that traffic ended.
   * The rule never trusts its own estimate more than its record.
   */
  readonly wakeHitRate: number;
  readonly keepHitRate: number;
}

export interface AutoscalerState {
  readonly version: 1;
  readonly wantedNodes: number;
  readonly lastRequestMs: number | null;
  /** Since when load has stayed above (or below) the threshold, for the sustained-load rules. */
  readonly overloadSinceMs: number | null;
  readonly underloadSinceMs: number | null;
  readonly lastChangeMs: number | null;
  /** A predicted wake keeps the node this long even without a request. */
  readonly speculativeUntilMs: number | null;
  /** The quiet gap (its first instant) a gap-based predicted wake was spent on: one per gap. */
  readonly predictedInGapOfMs: number | null;
  /** The absolute slot a time-of-day predicted wake was made for: one per slot. */
  readonly predictedSlot: number | null;
  /** The node is being kept past gpuIdleMinutes on the predictive rule's word. */
  readonly extending: boolean;
  /**
   * GPU node-seconds lately (exponentially decayed, half-life 3 days): all of them, and those the
   * predictive rule wasted (kept past gpuIdleMinutes or woken ahead, and no traffic came in time).
   * Wasted time may be at most `speculativeShare` of the total: the rule's spending has a ceiling
   * whatever it believes. `pendingNodeSeconds` is the current prediction's time, charged if it misses.
   */
  readonly nodeSeconds: number;
  readonly speculativeNodeSeconds: number;
  readonly pendingNodeSeconds: number;
  readonly lastTickMs: number | null;
  readonly learned: LearnedTraffic;
}
