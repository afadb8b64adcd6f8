import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Actuator, backoffMs, DispatchRequest, GitHubPipeline } from "../programs/autoscaler/controller/actuator";
import { httpFetcher } from "../programs/autoscaler/controller/signals";
import { GitHubStandIn } from "./helpers/autoscaler";

/**
 * The actuator against a recording stand-in of GitHub's REST API (test/helpers/autoscaler.ts, a
 * local HTTP server, not GitHub): what it sent, when, its retries, and that it never sends the
 * same wish twice. Scheduling runs on a fake clock; the HTTP is real.
 */

const TOKEN = "github_pat_standin_0123456789";
const BACKOFF = { baseMs: 5_000, maxMs: 600_000 };
const CATCH_UP_MS = 40 * 60_000;
let github: GitHubStandIn;

beforeAll(async () => {
  github = await GitHubStandIn.start();
});
afterAll(() => github.close());
beforeEach(() => {
  github.calls.length = 0;
  github.script = [];
});

const pipeline = () =>
  new GitHubPipeline(
    { api: github.url, token: TOKEN, repo: "acme/inference-hub", ref: "main", workflow: "autoscale.yml" },
    httpFetcher,
  );
const request = (nodes: number, id = `d-${nodes}`): DispatchRequest => ({
  stack: "hybrid",
  nodes,
  reason: nodes > 0 ? "wake-on-demand" : "idle",
  decisionId: id,
});
// random() = 0: the shortest delay "equal jitter" allows, half the exponential ceiling.
const actuator = () => new Actuator(pipeline(), { catchUpMs: CATCH_UP_MS, backoff: BACKOFF, random: () => 0 });

describe("the dispatch actuator", () => {
  it("sends owners.md's workflow_dispatch: POST .../workflows/autoscale.yml/dispatches, ref and string inputs, the token as a bearer", async () => {
    const a = actuator();
    expect(a.want(request(1, "20261202T100000000Z-1-abc123"), 0, 0)).toBe("queued");
    const result = await a.step(0);
    expect(result).toEqual({ ok: true, status: 204 });
    expect(github.calls).toHaveLength(1);
    const call = github.calls[0];
    expect(call.method).toBe("POST");
    expect(call.path).toBe("/repos/acme/inference-hub/actions/workflows/autoscale.yml/dispatches");
    expect(call.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(call.headers.accept).toBe("application/vnd.github+json");
    expect(call.headers["x-github-api-version"]).toBe("2022-11-28");
    expect(call.body).toEqual({
      ref: "main",
      inputs: { stack: "hybrid", nodes: "1", reason: "wake-on-demand", decision_id: "20261202T100000000Z-1-abc123" },
    });
  });

  it("retries a 500 after backoff, honours a 429's Retry-After, and stops once accepted", async () => {
    github.script = [{ status: 500 }, { status: 429, retryAfter: 30 }, { status: 502 }, { status: 204 }];
    const a = actuator();
    a.want(request(1), 0, 0);
    expect((await a.step(0))?.ok).toBe(false);
    // First retry: half of base 5 s at the least.
    const first = a.snapshot().pending!;
    expect(first.nextAttemptMs).toBe(2_500);
    expect(first.failures).toBe(1);
    expect(await a.step(2_499)).toBeUndefined();
    expect(github.calls).toHaveLength(1);
    expect((await a.step(2_500, () => 2_500))?.ok).toBe(false);
    // 429 with Retry-After 30: the longer of 30 s and the backoff (5-10 s).
    expect(a.snapshot().pending!.nextAttemptMs).toBe(2_500 + 30_000);
    await a.step(32_500, () => 32_500);
    // Third failure: ceiling 20 s, at least 10 s.
    expect(a.snapshot().pending!.nextAttemptMs).toBe(32_500 + 10_000);
    expect((await a.step(42_500, () => 42_500))?.ok).toBe(true);
    expect(a.snapshot().pending).toBeNull();
    expect(a.snapshot().accepted?.acceptedMs).toBe(42_500);
    expect(github.calls).toHaveLength(4);
    // Every attempt carried the same decision: the workflow can tell a retry from a new wish.
    expect(
      new Set(github.calls.map((c) => (c.body as { inputs: { decision_id: string } }).inputs.decision_id)).size,
    ).toBe(1);
  });

  it("waits the longest after a refusal only the operator can fix (bad token, no such workflow)", async () => {
    github.script = [{ status: 401, message: "Bad credentials" }];
    const a = actuator();
    a.want(request(1), 0, 0);
    const result = await a.step(0);
    expect(result).toMatchObject({ ok: false, status: 401, message: "HTTP 401: Bad credentials" });
    expect(a.snapshot().pending!.nextAttemptMs).toBe(BACKOFF.maxMs);
    expect(a.snapshot().pending!.lastError).not.toContain(TOKEN);
  });

  it("keeps the backoff growing to its cap, with jitter inside [ceiling/2, ceiling]", () => {
    expect([1, 2, 3, 4].map((n) => backoffMs(n, BACKOFF, () => 1))).toEqual([5_000, 10_000, 20_000, 40_000]);
    expect(backoffMs(30, BACKOFF, () => 1)).toBe(600_000);
    expect(backoffMs(30, BACKOFF, () => 0)).toBe(300_000);
  });

  it("never sends the same count twice: not while it awaits a retry, nor while the stack catches up", async () => {
    github.script = [{ status: 503 }];
    const a = actuator();
    expect(a.want(request(1, "a"), 0, 0)).toBe("queued");
    expect(a.want(request(1, "b"), 0, 1_000)).toBe("duplicate-pending");
    await a.step(0);
    expect(a.want(request(1, "c"), 0, 3_000)).toBe("duplicate-pending");
    await a.step(5_000, () => 5_000);
    expect(github.calls).toHaveLength(2);
    // Accepted; the deploy has not named the node yet.
    expect(a.want(request(1, "d"), 0, 60_000)).toBe("duplicate-awaiting-stack");
    expect(a.outstanding(60_000, 0)).toEqual({ nodes: 1, sinceMs: 5_000, accepted: true });
    // The stack caught up: nothing to send.
    expect(a.want(request(1, "e"), 1, 120_000)).toBe("caught-up");
    expect(a.outstanding(120_000, 1)).toBeUndefined();
    expect(await a.step(120_000)).toBeUndefined();
    expect(github.calls).toHaveLength(2);
  });

  it("asks again when the stack never caught up within the catch-up window (a failed pipeline run)", async () => {
    const a = actuator();
    a.want(request(1, "a"), 0, 0);
    await a.step(0);
    expect(a.want(request(1, "b"), 0, CATCH_UP_MS - 1)).toBe("duplicate-awaiting-stack");
    expect(a.want(request(1, "c"), 0, CATCH_UP_MS + 1)).toBe("queued");
    await a.step(CATCH_UP_MS + 1);
    expect(github.calls.map((c) => (c.body as { inputs: { decision_id: string } }).inputs.decision_id)).toEqual([
      "a",
      "c",
    ]);
  });

  it("sends the newest wish when the count changes while one waits for a retry, and drops it when the stack already has it", async () => {
    github.script = [{ status: 500 }];
    const a = actuator();
    a.want(request(2, "two"), 1, 0);
    await a.step(0);
    expect(a.want(request(3, "three"), 1, 1_000)).toBe("replaced");
    await a.step(2_500, () => 2_500);
    expect((github.calls[1].body as { inputs: { nodes: string } }).inputs.nodes).toBe("3");
    const b = actuator();
    github.script = [{ status: 500 }];
    b.want(request(2), 1, 0);
    await b.step(0);
    expect(b.want(request(1), 1, 1_000)).toBe("caught-up");
    expect(b.snapshot().pending).toBeNull();
  });

  it("has one request in flight at a time", async () => {
    const a = actuator();
    a.want(request(1), 0, 0);
    const [first, second] = await Promise.all([a.step(0), a.step(0)]);
    expect(first?.ok).toBe(true);
    expect(second).toBeUndefined();
    expect(github.calls).toHaveLength(1);
  });

  it("in advice mode decides but never sends", async () => {
    const a = new Actuator(undefined, { catchUpMs: CATCH_UP_MS });
    expect(a.want(request(1), 0, 0)).toBe("advice");
    expect(await a.step(0)).toBeUndefined();
    expect(a.acting).toBe(false);
    expect(github.calls).toHaveLength(0);
  });

  it("reports a pipeline it cannot reach as a failure to retry", async () => {
    const unreachable = new GitHubPipeline(
      { api: "http://127.0.0.1:9", token: TOKEN, repo: "acme/inference-hub", ref: "main", workflow: "autoscale.yml" },
      httpFetcher,
    );
    const a = new Actuator(unreachable, { catchUpMs: CATCH_UP_MS, backoff: BACKOFF, random: () => 0 });
    a.want(request(1), 0, 0);
    const result = await a.step(0);
    expect(result).toMatchObject({ ok: false });
    expect(result && !result.ok && result.status).toBeUndefined();
    expect(a.snapshot().pending).toMatchObject({ failures: 1, nextAttemptMs: 2_500 });
  });
});
