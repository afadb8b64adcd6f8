import { DROPLET_MIN_BILLED_SECONDS } from "../../../stacks/catalogue/droplets";
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
 * - No ready node: the CPU fallback answers, or with none, a 503 (refused).
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

export function replay(name: string, trace: Trace, model: ReplayModel, controller: Controller): PolicyRun {
  const { arrivals, inputTokens, outputTokens } = trace;
  const n = arrivals.length;
  const rate = model.nodeHourlyUsd / 3600;
  const start = horizonStart(trace, model);
  const end = Math.max(trace.endSeconds, arrivals[n - 1]);
  const stop = end + model.windDownSeconds;
  const waits = new Float64Array(n);
  let served = 0, fallback = 0, refused = 0, timedOut = 0, duringColdStart = 0, scaleEvents = 0, sessions = 0;
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
      if (model.fallback) fallback++;
      else refused++;
      return;
    }
    const begin = Math.max(a, best.freeAt);
    const wait = begin - a;
    if (wait > model.waitLimitSeconds) {
      refused++;
      timedOut++;
      return;
    }
    best.freeAt = begin + (inputTokens[k] + outputTokens[k]) / model.replicaTokensPerSecond;
    push(best, best.freeAt);
    waits[served++] = wait;
  };

  for (let t = start; ; t += model.tickSeconds) {
    let requests = 0;
    while (i < n && arrivals[i] <= t) {
      route(i++);
      requests++;
    }
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
    const done = t >= end && i >= n;
    if (done && (alive.length === 0 || t >= stop)) break;

    let ready = 0, starting = 0, draining = 0;
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
    const view: TickView = { t, nowMs: trace.startMs + t * 1000, ready, starting, draining, changeInFlight, coderRequests: requests, replicas, monthToDateUsd: monthSpend };
    const wanted = Math.max(0, Math.min(model.maxNodes, Math.round(controller(view))));
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
        alive.push({ requestedAt: t, createdAt: t + model.pipelineSeconds, readyAt: t + model.coldStartSeconds, routedOutAt: Infinity, destroyAt: Infinity, freeAt: 0, done: new Float64Array(64), head: 0, tail: 0 });
        scaleEvents++;
      }
      createUntil = t + model.changeSeconds;
    } else {
      // Remove the least useful first: nodes still starting, then the least loaded.
      const order = active.slice().sort((a, b) => (b.readyAt > t ? 1 : 0) - (a.readyAt > t ? 1 : 0) || a.freeAt - b.freeAt);
      for (const node of order.slice(0, active.length - wanted)) {
        node.routedOutAt = t + model.pipelineSeconds;
        scaleEvents++;
      }
    }
  }
  // Still up when the wind-down ends: billed through the span, its drain and teardown.
  for (const node of alive) close(node, Math.max(node.createdAt, Math.max(end, node.freeAt) + model.destroySeconds));

  const sortedWaits = waits.subarray(0, served).sort();
  const outsideColdStarts = n - duringColdStart;
  return {
    name,
    gpuHours: billedSeconds / 3600,
    costUsd: billedSeconds * rate,
    requests: n,
    servedByGpu: served,
    servedByFallback: fallback,
    refused,
    gpuShareOutsideColdStarts: outsideColdStarts > 0 ? served / outsideColdStarts : 0,
    waitP50s: percentile(sortedWaits, 0.5),
    waitP95s: percentile(sortedWaits, 0.95),
    scaleEvents,
    extra: { arrivedDuringColdStart: duringColdStart, timedOut, sessions },
  };
}
