/**
 * A request the holder answers counts as demand exactly once. The holder reports each arrival at
 * once (so the first request wakes the GPU without waiting for a tick) and each answer when it
 * ends. The gateway's own counter, which the controller also reads, counts a request either when
 * the door lets it through (an arrival-time source, such as the gatekeeper's allowed decisions) or
 * when its answer is complete (Traefik's router counter). An arrival-time source already holds the
 * holder's arrivals: the two are the same requests, so the tick takes the larger. A completion-time
 * source counts the holder's requests again when they end, minutes later for a held one: those are
 * owed back, at most one tick late (the counter sees a completion within milliseconds of the
 * holder, so an owed count older than one tick is a reading that raced it, and is dropped).
 */
export type DemandSource = "arrival" | "completion";

export interface HolderCounts {
  /** Requests the holder received since the last tick. */
  readonly arrived: number;
  /** Requests the holder finished answering since the last tick. */
  readonly finished: number;
}

export interface DemandState {
  /** Finished holder requests the completion-time counter has not shown yet. */
  readonly owed: number;
}

export const emptyDemandState = (): DemandState => ({ owed: 0 });

/**
 * This tick's demand from the gateway counter's increase and the holder's counts. `baseline`: the
 * counter was read for the first time (its increase is 0 and it already contains what finished).
 */
export function demandThisTick(
  source: DemandSource,
  counterIncrease: number,
  holder: HolderCounts,
  state: DemandState,
  baseline = false,
): { demand: number; state: DemandState } {
  if (source === "arrival") return { demand: Math.max(counterIncrease, holder.arrived), state: { owed: 0 } };
  if (baseline) return { demand: holder.arrived, state: { owed: 0 } };
  const owed = state.owed + holder.finished;
  const repaid = Math.min(owed, counterIncrease);
  // What is still owed after this tick came from this tick's finishes only: older debts are dropped.
  const carried = Math.min(owed - repaid, holder.finished);
  return { demand: counterIncrease - repaid + holder.arrived, state: { owed: carried } };
}
