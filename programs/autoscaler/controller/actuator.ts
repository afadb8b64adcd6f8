import type { Fetcher } from "./signals";

/**
 * The controller acts by asking the deploy pipeline to act: a GitHub `workflow_dispatch` of
 * autoscale.yml with the wanted node count (owners.md "Dispatch"). The workflow runs
 * `npm run hub -- gpu scale <nodes>` where the DigitalOcean and Pulumi credentials live, in the
 * deploy's concurrency group; the CPU node holds only a token that can start that workflow.
 *
 * Rules: one request in flight at a time; a failure (network, 429, 5xx, or any other refusal) is
 * retried with exponential backoff and jitter; no second request for a count already asked for,
 * while it awaits a retry or while the stack has not yet caught up with it.
 */

export interface DispatchRequest {
  readonly stack: string;
  readonly nodes: number;
  readonly reason: string;
  readonly decisionId: string;
}

export type DispatchResult =
  | { readonly ok: true; readonly status: number }
  | { readonly ok: false; readonly status?: number; readonly retryAfterMs?: number; readonly message: string };

/** The one call the actuator makes; the GitHub implementation, or a recording one in tests. */
export interface Pipeline {
  dispatch(request: DispatchRequest): Promise<DispatchResult>;
}

/**
 * POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches with `{ ref, inputs }`
 * (GitHub REST "Create a workflow dispatch event": 204 No Content on success; inputs are strings).
 */
export class GitHubPipeline implements Pipeline {
  constructor(
    private readonly options: {
      readonly api: string;
      readonly token: string;
      readonly repo: string;
      readonly ref: string;
      readonly workflow: string;
    },
    private readonly fetcher: Fetcher,
  ) {}

  async dispatch(request: DispatchRequest): Promise<DispatchResult> {
    const { api, token, repo, ref, workflow } = this.options;
    const url = `${api.replace(/\/$/, "")}/repos/${repo}/actions/workflows/${encodeURIComponent(workflow)}/dispatches`;
    const body = JSON.stringify({
      ref,
      inputs: {
        stack: request.stack,
        nodes: String(request.nodes),
        reason: request.reason,
        decision_id: request.decisionId,
      },
    });
    try {
      const res = await this.fetcher(url, {
        method: "POST",
        body,
        timeoutMs: 15_000,
        headers: {
          accept: "application/vnd.github+json",
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "x-github-api-version": "2022-11-28",
          "user-agent": "inference-hub-autoscaler",
        },
      });
      // GitHub's error bodies name the problem ("Bad credentials", "Workflow does not have 'workflow_dispatch' trigger"); never the token.
      return dispatchAnswer(res);
    } catch (err) {
      return { ok: false, message: `request failed: ${(err as Error).message}` };
    }
  }
}

/** A pipeline API's answer: 2xx accepted; else its status, Retry-After and the `message` of its JSON error body (GitHub's and Pulumi Cloud's both carry one). */
export function dispatchAnswer(res: Awaited<ReturnType<Fetcher>>): DispatchResult {
  if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
  const retryAfter = Number(res.headers.get("retry-after"));
  let message = `HTTP ${res.status}`;
  try {
    const parsed = JSON.parse(res.text) as { message?: unknown };
    if (typeof parsed.message === "string") message += `: ${parsed.message.slice(0, 200)}`;
  } catch {
    /* not JSON: the status says enough */
  }
  return {
    ok: false,
    status: res.status,
    retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
    message,
  };
}

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 5_000, maxMs: 10 * 60_000 };

/** The delay before retry number `attempt` (1 = the first retry): base x 2^(attempt-1), capped, with "equal jitter" (half fixed, half random). */
export function backoffMs(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/** What the actuator remembers (persisted with the controller's state, so a restart sends no duplicate). */
export interface ActuatorState {
  /** Asked for and not yet accepted by the pipeline. */
  readonly pending: {
    readonly request: DispatchRequest;
    readonly failures: number;
    readonly nextAttemptMs: number;
    readonly lastError?: string;
  } | null;
  /** The last request the pipeline accepted, until the stack catches up with it. */
  readonly accepted: { readonly request: DispatchRequest; readonly acceptedMs: number } | null;
}

export const emptyActuatorState = (): ActuatorState => ({ pending: null, accepted: null });

export type WantOutcome =
  | "caught-up"
  | "queued"
  | "replaced"
  | "duplicate-pending"
  | "duplicate-awaiting-stack"
  | "advice";

export interface ActuatorEvents {
  onAttempt?(request: DispatchRequest, result: DispatchResult, nextAttemptMs: number | undefined): void;
}

export class Actuator {
  private state: ActuatorState;
  private inFlight = false;

  constructor(
    /** Undefined: advice mode (decide, log, export; never act). */
    private readonly pipeline: Pipeline | undefined,
    private readonly options: {
      readonly catchUpMs: number;
      readonly backoff?: BackoffPolicy;
      readonly random?: () => number;
      readonly events?: ActuatorEvents;
    },
    initial: ActuatorState = emptyActuatorState(),
  ) {
    this.state = initial;
  }

  get acting(): boolean {
    return this.pipeline !== undefined;
  }

  snapshot(): ActuatorState {
    return this.state;
  }

  /** The count the stack is being moved to: what awaits sending, or what was accepted and not yet reached. */
  outstanding(nowMs: number, deployedNodes: number): { nodes: number; sinceMs: number; accepted: boolean } | undefined {
    const { pending, accepted } = this.state;
    if (pending) return { nodes: pending.request.nodes, sinceMs: accepted?.acceptedMs ?? nowMs, accepted: false };
    if (accepted && accepted.request.nodes !== deployedNodes && nowMs - accepted.acceptedMs < this.options.catchUpMs)
      return { nodes: accepted.request.nodes, sinceMs: accepted.acceptedMs, accepted: true };
    return undefined;
  }

  /** The decision wants `request.nodes`; the stack has `deployedNodes`. Queues a dispatch unless it would duplicate one. */
  want(request: DispatchRequest, deployedNodes: number, nowMs: number): WantOutcome {
    const { pending, accepted } = this.state;
    // The stack reached what was accepted: that request is history.
    const awaiting =
      accepted && accepted.request.nodes !== deployedNodes && nowMs - accepted.acceptedMs < this.options.catchUpMs
        ? accepted
        : null;
    if (accepted && !awaiting) this.state = { ...this.state, accepted: null };
    if (pending) {
      if (pending.request.nodes === request.nodes) return "duplicate-pending";
      // A different count while one waits for a retry: send the newer wish instead, on the same backoff.
      if (request.nodes === deployedNodes && !awaiting) {
        this.state = { ...this.state, pending: null };
        return "caught-up";
      }
      this.state = { ...this.state, pending: { ...pending, request } };
      return "replaced";
    }
    if (awaiting && awaiting.request.nodes === request.nodes) return "duplicate-awaiting-stack";
    if (request.nodes === deployedNodes && !awaiting) return "caught-up";
    if (!this.pipeline) return "advice";
    this.state = { ...this.state, pending: { request, failures: 0, nextAttemptMs: nowMs } };
    return "queued";
  }

  /** Sends the pending request if it is due and nothing is in flight. Resolves when that one call is done. */
  async step(nowMs: number, clock: () => number = () => nowMs): Promise<DispatchResult | undefined> {
    const pending = this.state.pending;
    if (!this.pipeline || !pending || this.inFlight || nowMs < pending.nextAttemptMs) return undefined;
    this.inFlight = true;
    let result: DispatchResult;
    try {
      result = await this.pipeline.dispatch(pending.request);
    } finally {
      this.inFlight = false;
    }
    const after = clock();
    // The request may have been replaced while in flight; what was sent is what counts.
    const current = this.state.pending;
    if (result.ok) {
      const replaced =
        current && current.request.decisionId !== pending.request.decisionId
          ? { ...current, nextAttemptMs: after }
          : null;
      this.state = { pending: replaced, accepted: { request: pending.request, acceptedMs: after } };
      this.options.events?.onAttempt?.(pending.request, result, undefined);
      return result;
    }
    const failures = pending.failures + 1;
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    // A refusal that is not rate limiting or a server error (bad token, no such workflow) waits the longest: only the operator can fix it.
    const refusal =
      result.status !== undefined &&
      result.status >= 400 &&
      result.status < 500 &&
      result.status !== 429 &&
      !(result.status === 403 && result.retryAfterMs !== undefined);
    const delay = refusal
      ? policy.maxMs
      : Math.max(backoffMs(failures, policy, this.options.random ?? Math.random), result.retryAfterMs ?? 0);
    const next = after + delay;
    this.state = {
      ...this.state,
      pending: { ...(current ?? pending), failures, nextAttemptMs: next, lastError: result.message },
    };
    this.options.events?.onAttempt?.(pending.request, result, next);
    return result;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isRequest = (v: unknown): v is DispatchRequest =>
  isRecord(v) &&
  typeof v.stack === "string" &&
  typeof v.nodes === "number" &&
  typeof v.reason === "string" &&
  typeof v.decisionId === "string";

/** A persisted actuator state, checked; a malformed one is dropped (at worst one duplicate dispatch, which the workflow absorbs). */
export function asActuatorState(v: unknown): ActuatorState | undefined {
  if (!isRecord(v)) return undefined;
  const pending =
    v.pending === null
      ? null
      : isRecord(v.pending) &&
          isRequest(v.pending.request) &&
          typeof v.pending.failures === "number" &&
          typeof v.pending.nextAttemptMs === "number"
        ? (v.pending as unknown as ActuatorState["pending"])
        : undefined;
  const accepted =
    v.accepted === null
      ? null
      : isRecord(v.accepted) && isRequest(v.accepted.request) && typeof v.accepted.acceptedMs === "number"
        ? (v.accepted as unknown as ActuatorState["accepted"])
        : undefined;
  if (pending === undefined || accepted === undefined) return undefined;
  return { pending, accepted };
}
