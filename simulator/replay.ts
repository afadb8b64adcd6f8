import { DROPLET_MIN_BILLED_SECONDS } from "../stacks/catalogue/droplets";
import type { Trace } from "./traces";

/**
 * The replay loop: a trace's requests meet GPU nodes that a controller asks for every tick.
 *
 * Model (README "Autoscaling economics" states it for users):
 * - A wanted node count differing from the actual one starts one change through the deploy
 *   pipeline; while a change is in flight no other starts (the stack lock). The pipeline acts on
 *   the latest wanted count, so a removal is called off while its node is still in the routes. Adding nodes: the
 *   droplet exists (and bills) `pipelineSeconds` after the request and takes traffic
 *   `coldStartSeconds` after it; the change holds the lock for `changeSeconds`. Removing a node:
 *   it leaves the routes `pipelineSeconds` later, finishes what it holds, then is destroyed
 *   `destroySeconds` later (the lock is held until then).
 * - Billing: per second from droplet creation to destruction, at least 60 s per droplet.
 * - A ready node in the routes takes a request; with several, the one with the least work
 *   queued. A replica is one server working at its batched throughput: a request's work is
 *   (prompt + generated tokens) / tokens per second, and it waits for the work queued ahead of
 *   it. A request that would wait longer than `waitLimitSeconds` gets the gateway's 504 (refused)
 *   and costs the GPU nothing (vLLM aborts a request whose client has gone).
 * - No ready node: the CPU fallback answers, or with none, a 503 (refused). With holding
 *   (`hold`), a share of requests is willing to wait up to `hold.seconds` (programs/holding/): such
 *   a request is held, at most `hold.maxRequests` at once, and joins the first node to become ready
 *   before its deadline, at that moment (its wait is its hold plus the queue, and the gateway's
 *   `waitLimitSeconds` counts from its arrival); at its deadline, or as soon as no node is wanted
 *   or starting (the wake was refused), it gets the fallback or the 503. It counts as demand once,
 *   at its arrival, as it does in the controller. Who waits is drawn per request, seeded.
 * - The observed span ends at the trace's end; policies then keep ticking without requests for
 *   up to `windDownSeconds`; a node destroyed then is billed to its destruction, one still up is
 *   billed to the span's end plus its drain and teardown.
 */
export interface ReplayModel {
  readonly tickSeconds: number;
  readonly pipelineSeconds: number;
  readonly coldStartSeconds: number;
  readonly changeSeconds: number;
  readonly destroySeconds: number;
  readonly replicaTokensPerSecond: number;
  /** Sequences one replica holds at once: splits a replica's in-flight count into running and waiting. */
  readonly replicaCapacity: number;
  readonly waitLimitSeconds: number;
  readonly nodeHourlyUsd: number;
  readonly fallback: boolean;
  readonly maxNodes: number;
  readonly windDownSeconds: number;
  /** Holding while the GPU wakes: the share of requests that ask to wait, how long, and the cap on held requests. */
  readonly hold?: {
    readonly share: number;
    readonly seconds: number;
    readonly maxRequests: number;
    readonly seed: number;
  };
}

export interface TickView {
  /** Seconds from the trace's t = 0. */
  readonly t: number;
  readonly nowMs: number;
  readonly ready: number;
  readonly starting: number;
  readonly draining: number;
  readonly changeInFlight: boolean;
  /** Coder requests that arrived since the previous tick. */
  readonly coderRequests: number;
  readonly replicas: readonly { readonly running: number; readonly waiting: number }[];
  readonly monthToDateUsd: number;
}

/** A policy for one run: keeps its own state between ticks. */
export type Controller = (view: TickView) => number;

export interface PolicyRun {
  readonly name: string;
  readonly gpuHours: number;
  readonly costUsd: number;
  readonly requests: number;
  readonly servedByGpu: number;
  readonly servedByFallback: number;
  readonly refused: number;
  readonly gpuShareOutsideColdStarts: number;
  readonly waitP50s: number;
  readonly waitP95s: number;
  readonly scaleEvents: number;
  /** Served by the GPU after a hold (part of servedByGpu). */
  readonly servedByGpuAfterHold: number;
  /** Held, then answered by the fallback (or refused) at the deadline (part of servedByFallback / refused). */
  readonly heldThenFallback: number;
  /** Refused because the hold cap was full (part of the fallback or refused count, as the gateway answers them). */
  readonly holdCapRefused: number;
  readonly holdP50s: number;
  readonly holdP95s: number;
  /** Beyond the document's fields: for the human view and the tests. */
  readonly extra: {
    readonly arrivedDuringColdStart: number;
    readonly timedOut: number;
    readonly sessions: number;
  };
}

interface Node {
  requestedAt: number;
  createdAt: number;
  readyAt: number;
  routedOutAt: number;
  destroyAt: number;
  /** When the work queued on it is done. */
  freeAt: number;
  /** Completion times of what it holds, oldest first (a FIFO queue: they only grow). */
  done: Float64Array;
  head: number;
  tail: number;
}

function push(node: Node, completion: number): void {
  if (node.tail === node.done.length) {
    if (node.head > node.done.length / 2) {
      node.done.copyWithin(0, node.head, node.tail);
      node.tail -= node.head;
      node.head = 0;
    } else {
      const bigger = new Float64Array(node.done.length * 2);
      bigger.set(node.done.subarray(node.head, node.tail));
      node.tail -= node.head;
      node.head = 0;
      node.done = bigger;
    }
  }
  node.done[node.tail++] = completion;
}

function inFlightAt(node: Node, t: number): number {
  while (node.head < node.tail && node.done[node.head] <= t) node.head++;
  return node.tail - node.head;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

const monthKey = (ms: number) => {
  const d = new Date(ms);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
};

/** Where a run starts: early enough that a node woken then is ready for the first request. */
export function horizonStart(trace: Trace, model: Pick<ReplayModel, "coldStartSeconds">): number {
  return Math.min(trace.beginSeconds, trace.arrivals[0] - model.coldStartSeconds);
}

/** Whether request `k` asks to wait: a seeded hash of its index against the share (the same requests in every policy). */
export function willWait(k: number, share: number, seed: number): boolean {
  if (share <= 0) return false;
  if (share >= 1) return true;
  let h = (k + 1) * 0x9e3779b1 + seed * 0x85ebca6b;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296 < share;
}

export function replay(name: string, trace: Trace, model: ReplayModel, controller: Controller): PolicyRun {
  const { arrivals, inputTokens, outputTokens } = trace;
  const n = arrivals.length;
  const hold = model.hold && model.hold.share > 0 && model.hold.seconds > 0 ? model.hold : undefined;
  /** Held requests (indices), oldest first. */
  let held: number[] = [];
  const holds: number[] = [];
  let afterHold = 0,
    heldThenFallback = 0,
    holdCapRefused = 0;
  const rate = model.nodeHourlyUsd / 3600;
  const start = horizonStart(trace, model);
  const end = Math.max(trace.endSeconds, arrivals[n - 1]);
  const stop = end + model.windDownSeconds;
  const waits = new Float64Array(n);
  let served = 0,
    fallback = 0,
    refused = 0,
    timedOut = 0,
    duringColdStart = 0,
    scaleEvents = 0,
    sessions = 0;
  let billedSeconds = 0;
  const alive: Node[] = [];
  /** The create change holds the stack lock until then; a removal holds it until its nodes are gone. */
  let createUntil = -Infinity;
  let monthSpend = 0;
  let month = monthKey(trace.startMs + start * 1000);
  let i = 0;

  const close = (node: Node, until: number) => {
    billedSeconds += Math.max(DROPLET_MIN_BILLED_SECONDS, until - node.createdAt);
    sessions++;
  };

  const route = (k: number) => {
    const a = arrivals[k];
    let best: Node | undefined;
    let coldStart = false;
    for (const node of alive) {
      if (node.readyAt <= a && a < node.routedOutAt) {
        if (!best || node.freeAt < best.freeAt) best = node;
      } else if (node.requestedAt <= a && a < node.readyAt && a < node.routedOutAt) coldStart = true;
    }
    if (!best) {
      if (coldStart) duringColdStart++;
      if (hold && willWait(k, hold.share, hold.seed)) {
        if (held.length < hold.maxRequests) {
          held.push(k);
          return;
        }
        holdCapRefused++;
      }
      answerWithout();
      return;
    }
    serve(k, best, a);
  };
  const answerWithout = () => {
    if (model.fallback) fallback++;
    else refused++;
  };
  /** Request k starts on `node` no earlier than `from` (its arrival, or the moment its hold ended). */
  const serve = (k: number, node: Node, from: number) => {
    const a = arrivals[k];
    const begin = Math.max(from, node.freeAt);
    const wait = begin - a;
    if (wait > model.waitLimitSeconds) {
      refused++;
      timedOut++;
      return false;
    }
    node.freeAt = begin + (inputTokens[k] + outputTokens[k]) / model.replicaTokensPerSecond;
    push(node, node.freeAt);
    waits[served++] = wait;
    return true;
  };
  /** At time t: held requests join the first node ready before their deadline; past it, or with no wake coming, they are answered without the GPU. */
  const releaseHeld = (t: number, wakeComing: boolean) => {
    if (held.length === 0) return;
    const still: number[] = [];
    for (const k of held) {
      const a = arrivals[k];
      const deadline = a + hold!.seconds;
      let best: Node | undefined;
      for (const node of alive) {
        const at = Math.max(a, node.readyAt);
        if (
          node.readyAt <= t &&
          at <= deadline &&
          at < node.routedOutAt &&
          (!best || Math.max(at, node.freeAt) < Math.max(Math.max(a, best.readyAt), best.freeAt))
        )
          best = node;
      }
      if (best) {
        const from = Math.max(a, best.readyAt);
        holds.push(from - a);
        if (serve(k, best, from)) afterHold++;
      } else if (deadline <= t || !wakeComing) {
        holds.push(Math.min(deadline, t) - a);
        heldThenFallback++;
        answerWithout();
      } else still.push(k);
    }
    held = still;
  };

  for (let t = start; ; t += model.tickSeconds) {
    let requests = 0;
    while (i < n && arrivals[i] <= t) {
      route(i++);
      requests++;
    }
    releaseHeld(t, true);
    // Nodes leaving: a drained node is destroyed; billing and the ledger follow.
    const keyNow = monthKey(trace.startMs + t * 1000);
    if (keyNow !== month) {
      month = keyNow;
      monthSpend = 0;
    }
    for (let j = alive.length - 1; j >= 0; j--) {
      const node = alive[j];
      if (node.destroyAt === Infinity && t >= node.routedOutAt) {
        node.destroyAt = Math.max(node.routedOutAt, node.freeAt) + model.destroySeconds;
      }
      const from = Math.max(node.createdAt, t - model.tickSeconds);
      const to = Math.min(node.destroyAt, t);
      if (to > from) monthSpend += (to - from) * rate;
      if (t >= node.destroyAt) {
        close(node, node.destroyAt);
        alive.splice(j, 1);
      }
    }
    const done = t >= end && i >= n && held.length === 0;
    if (done && (alive.length === 0 || t >= stop)) break;

    let ready = 0,
      starting = 0,
      draining = 0;
    const replicas: { running: number; waiting: number }[] = [];
    for (const node of alive) {
      if (node.routedOutAt <= t) draining++;
      else if (node.readyAt <= t) {
        ready++;
        const inFlight = inFlightAt(node, t);
        const running = Math.min(inFlight, model.replicaCapacity);
        replicas.push({ running, waiting: inFlight - running });
      } else starting++;
    }
    const changeInFlight = t < createUntil || alive.some((node) => node.routedOutAt !== Infinity);
    const view: TickView = {
      t,
      nowMs: trace.startMs + t * 1000,
      ready,
      starting,
      draining,
      changeInFlight,
      coderRequests: requests,
      replicas,
      monthToDateUsd: monthSpend,
    };
    const wanted = Math.max(0, Math.min(model.maxNodes, Math.round(controller(view))));
    // The decision saw the held requests' demand and wants no GPU (budget, pin): the holder lets them go.
    if (wanted === 0 && !alive.some((node) => node.routedOutAt === Infinity)) releaseHeld(t, false);
    const active = alive.filter((node) => node.routedOutAt === Infinity);
    // The pipeline acts on the latest wanted count: a removal whose node is still in the routes is called off.
    if (wanted > active.length) {
      for (const node of alive) {
        if (active.length >= wanted) break;
        if (node.routedOutAt !== Infinity && node.routedOutAt > t) {
          node.routedOutAt = Infinity;
          active.push(node);
          scaleEvents--;
        }
      }
    }
    const lockHeld = t < createUntil || alive.some((node) => node.routedOutAt !== Infinity);
    if (lockHeld || wanted === active.length) continue;
    if (wanted > active.length) {
      for (let k = active.length; k < wanted; k++) {
        alive.push({
          requestedAt: t,
          createdAt: t + model.pipelineSeconds,
          readyAt: t + model.coldStartSeconds,
          routedOutAt: Infinity,
          destroyAt: Infinity,
          freeAt: 0,
          done: new Float64Array(64),
          head: 0,
          tail: 0,
        });
        scaleEvents++;
      }
      createUntil = t + model.changeSeconds;
    } else {
      // Remove the least useful first: nodes still starting, then the least loaded.
      const order = active
        .slice()
        .sort((a, b) => (b.readyAt > t ? 1 : 0) - (a.readyAt > t ? 1 : 0) || a.freeAt - b.freeAt);
      for (const node of order.slice(0, active.length - wanted)) {
        node.routedOutAt = t + model.pipelineSeconds;
        scaleEvents++;
      }
    }
  }
  // Still up when the wind-down ends: billed through the span, its drain and teardown.
  for (const node of alive) close(node, Math.max(node.createdAt, Math.max(end, node.freeAt) + model.destroySeconds));

  // Whatever is still held when the wind-down ends never met a GPU.
  for (let j = 0; j < held.length; j++) {
    holds.push(hold!.seconds);
    heldThenFallback++;
    answerWithout();
  }
  const sortedWaits = waits.subarray(0, served).sort();
  const sortedHolds = Float64Array.from(holds).sort();
  const outsideColdStarts = n - duringColdStart;
  return {
    name,
    gpuHours: billedSeconds / 3600,
    costUsd: billedSeconds * rate,
    requests: n,
    servedByGpu: served,
    servedByFallback: fallback,
    refused,
    // Requests held through a cold start arrived during it: this share counts those served without one.
    gpuShareOutsideColdStarts: outsideColdStarts > 0 ? (served - afterHold) / outsideColdStarts : 0,
    waitP50s: percentile(sortedWaits, 0.5),
    waitP95s: percentile(sortedWaits, 0.95),
    scaleEvents,
    servedByGpuAfterHold: afterHold,
    heldThenFallback,
    holdCapRefused,
    holdP50s: percentile(sortedHolds, 0.5),
    holdP95s: percentile(sortedHolds, 0.95),
    extra: { arrivedDuringColdStart: duringColdStart, timedOut, sessions },
  };
}
