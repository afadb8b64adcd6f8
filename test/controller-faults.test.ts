import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { GitHubPipeline } from "../programs/autoscaler/controller/actuator";
import { DigitalOceanBilling } from "../programs/autoscaler/controller/billing";
import { EXTERNAL_SPEND_FILE, type ControllerFile } from "../programs/autoscaler/controller/contract";
import { Controller, LEDGER_FILE, STATE_FILE } from "../programs/autoscaler/controller/controller";
import { MemoryLogger } from "../programs/autoscaler/controller/log";
import { httpFetcher, parseSeries } from "../programs/autoscaler/controller/signals";
import { JsonStore } from "../programs/autoscaler/controller/store";
import { controllerFile, demandText, GitHubStandIn, MetricsStandIn, vllmText } from "./helpers/autoscaler";

/**
 * The controller's loop with its real HTTP reads and writes, against stand-ins on loopback: a
 * gatekeeper-shaped and a vLLM-shaped metrics server (STAND-INS serving only the series the controller
 * reads) and the recording GitHub stand-in. The clock is fake, so backoff and idle times are exact.
 */

const T0 = Date.parse("2026-12-10T10:00:00Z");
let github: GitHubStandIn;
let gatekeeper: MetricsStandIn;
let vllm: MetricsStandIn;
let dir: string;
let now: number;
let log: MemoryLogger;

beforeAll(async () => {
  github = await GitHubStandIn.start();
  gatekeeper = await MetricsStandIn.start();
  vllm = await MetricsStandIn.start();
});
afterAll(async () => {
  await Promise.all([github.close(), gatekeeper.close(), vllm.close()]);
});
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ctl-faults-"));
  now = T0;
  log = new MemoryLogger();
  github.calls.length = 0;
  github.script = [];
  gatekeeper.text = demandText({ allowed: 0 });
  gatekeeper.down = false;
  vllm.text = vllmText([{ running: 0, waiting: 0 }]);
  vllm.down = false;
  vllm.healthy = true;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const configPath = () => path.join(dir, "autoscaler.json");
function writeFile(overrides: Partial<ControllerFile> & { replicaUrls?: readonly string[] } = {}): ControllerFile {
  const file = controllerFile({ demandUrl: gatekeeper.url, ...overrides });
  writeFileSync(configPath(), JSON.stringify(file));
  return file;
}

async function start(options: { acting?: boolean } = {}): Promise<Controller> {
  const pipeline =
    options.acting === false
      ? undefined
      : new GitHubPipeline(
          {
            api: github.url,
            token: "github_pat_standin",
            repo: "acme/inference-hub",
            ref: "main",
            workflow: "autoscale.yml",
          },
          httpFetcher,
        );
  return Controller.start({
    configFile: configPath(),
    store: new JsonStore(path.join(dir, "state")),
    fetcher: httpFetcher,
    clock: () => now,
    log,
    pipeline,
    random: () => 0,
    backoff: { baseMs: 5_000, maxMs: 600_000 },
  });
}

/** A histogram's _count and _sum, from prom-client's own reading. */
async function wakeHistogram(c: Controller): Promise<{ count?: number; sum?: number }> {
  const values = (await c.metrics.wakeReady.get()).values;
  return {
    count: values.find((v) => v.metricName?.endsWith("_count"))?.value,
    sum: values.find((v) => v.metricName?.endsWith("_sum"))?.value,
  };
}

async function metric(c: Controller, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const series = parseSeries(await c.metrics.text()).get(name) ?? [];
  return series.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

const tick = async (c: Controller, advanceSeconds = 15) => {
  const status = await c.requestTick();
  now += advanceSeconds * 1000;
  return status!;
};
const dispatchedNodes = () => github.calls.map((c) => (c.body as { inputs: { nodes: string } }).inputs.nodes);

describe("the controller loop", () => {
  it("wakes on the first coder request through the pipeline, once, and times the wake to the first ready replica", async () => {
    writeFile();
    const c = await start();
    expect((await tick(c)).decision?.reason).toBe("hold");
    // 50 refused at the door (bad keys) are not demand.
    gatekeeper.text = demandText({ allowed: 0, unauthorized: 50 });
    expect((await tick(c)).decision?.reason).toBe("hold");
    gatekeeper.text = demandText({ allowed: 2, unauthorized: 50 });
    const woke = await tick(c);
    expect(woke.decision).toMatchObject({ reason: "wake-on-demand", wantedNodes: 1 });
    expect(woke.coderRequests).toBe(2);
    expect(dispatchedNodes()).toEqual(["1"]);
    // The pipeline accepted it: the node counts as starting, and nothing is sent again.
    for (let i = 0; i < 4; i++) expect((await tick(c)).nodes).toEqual({ ready: 0, starting: 1, draining: 0 });
    expect(dispatchedNodes()).toEqual(["1"]);
    // The deploy names the node (loading), then it answers.
    vllm.healthy = false;
    writeFile({ replicaUrls: [vllm.url] });
    expect((await tick(c, 300)).nodes).toEqual({ ready: 0, starting: 1, draining: 0 });
    vllm.healthy = true;
    const ready = await tick(c);
    expect(ready.nodes).toEqual({ ready: 1, starting: 0, draining: 0 });
    // The droplet is billed from the accepted wake (T0 + 30 s), before the deploy could name it.
    expect(ready.ledger.nodeSeconds).toBe(7 * 15 + 300 - 30);
    // Dispatched at the third tick (T0 + 30 s); ready at the ninth: 7 ticks of 15 s and the 300 s wait after T0.
    expect(await wakeHistogram(c)).toEqual({ count: 1, sum: 7 * 15 + 300 - 30 });
    expect(await metric(c, "hub_autoscaler_nodes", { state: "ready" })).toBe(1);
    expect(await metric(c, "hub_autoscaler_decisions_total", { reason: "wake-on-demand" })).toBe(1);
    expect(dispatchedNodes()).toEqual(["1"]);
  });

  it("holds, and asks nothing of the pipeline, while the gatekeeper's counts cannot be read", async () => {
    writeFile({ replicaUrls: [vllm.url] });
    const c = await start();
    await tick(c);
    gatekeeper.down = true;
    // Long past gpuIdleMinutes: a controller that read silence as no traffic would turn the GPU off.
    for (let i = 0; i < 3; i++) {
      const s = await tick(c, 600);
      expect(s.decision?.reason).toBe("hold-metrics-missing");
      expect(s.signalsUp).toBe(false);
    }
    expect(await metric(c, "hub_autoscaler_signals_up")).toBe(0);
    expect(await metric(c, "hub_autoscaler_wanted_nodes")).toBe(1);
    expect(github.calls).toHaveLength(0);
    gatekeeper.down = false;
    // Readable again: the first reading is a baseline (no requests), and the quiet spell was never seen, so it holds.
    expect((await tick(c)).signalsUp).toBe(true);
    expect(await metric(c, "hub_autoscaler_signals_up")).toBe(1);
  });

  it("holds while a ready replica's vLLM /metrics cannot be read", async () => {
    writeFile({ replicaUrls: [vllm.url] });
    const c = await start();
    await tick(c);
    vllm.text = "# not vLLM\n";
    const s = await tick(c, 900);
    expect(s.decision?.reason).toBe("hold-metrics-missing");
    expect(s.decision?.message).toMatch(/vLLM's \/metrics/);
    expect(github.calls).toHaveLength(0);
  });

  it("backs off while the pipeline fails, says so in its metrics, and clears once it is through", async () => {
    github.script = [{ status: 500 }, { status: 502 }];
    writeFile();
    const c = await start();
    await tick(c);
    gatekeeper.text = demandText({ allowed: 1 });
    await tick(c, 1);
    expect(await metric(c, "hub_autoscaler_dispatch_failures_total")).toBe(1);
    expect(await metric(c, "hub_autoscaler_dispatch_pending")).toBe(1);
    // Not due yet (2.5 s after the failure): no second call.
    await tick(c, 2);
    expect(github.calls).toHaveLength(1);
    await tick(c, 10);
    expect(github.calls).toHaveLength(2);
    expect(await metric(c, "hub_autoscaler_dispatch_failures_total")).toBe(2);
    // Meanwhile the wake counts as starting: the decision does not forget it and flap to 0.
    expect(c.status()?.nodes.starting).toBe(1);
    await tick(c, 15);
    expect(github.calls).toHaveLength(3);
    expect(await metric(c, "hub_autoscaler_dispatch_pending")).toBe(0);
    expect(log.lines.filter((l) => l.msg === "dispatch failed; will retry")).toHaveLength(2);
    expect(JSON.stringify(log.lines)).not.toContain("github_pat_standin");
  });

  it("rebuilds the same view after a restart from its files and live metrics, and sends no duplicate", async () => {
    writeFile();
    const first = await start();
    await tick(first);
    gatekeeper.text = demandText({ allowed: 1 });
    await tick(first);
    const before = await tick(first);
    expect(dispatchedNodes()).toEqual(["1"]);
    // A new process: nothing carried over in memory.
    const second = await start();
    const after = await tick(second);
    expect(after.nodes).toEqual(before.nodes);
    expect(after.dispatch.accepted?.request.nodes).toBe(1);
    expect(after.decision?.wantedNodes).toBe(1);
    expect(dispatchedNodes()).toEqual(["1"]);
    // The wake's clock survived too.
    expect(after.wakeSinceMs).toBe(before.wakeSinceMs);
  });

  it("keeps counting a droplet through a restart, and restarts the learned state afresh when its file is corrupt", async () => {
    writeFile({ replicaUrls: [vllm.url] });
    const first = await start();
    await tick(first, 3600);
    const spent = first.status()!.ledger.monthToDateUsd;
    writeFileSync(path.join(dir, "state", STATE_FILE), "{ torn");
    writeFileSync(path.join(dir, "state", `${STATE_FILE}.prev`), "{ torn too");
    const second = await start();
    const s = await tick(second);
    // The downtime counts as alive: an hour later, an hour more at $3.60/h.
    expect(s.ledger.monthToDateUsd - spent).toBeCloseTo(3.6, 6);
    expect(log.lines.some((l) => l.level === "error" && /state file unreadable/.test(l.msg))).toBe(true);
    expect(readdirSync(path.join(dir, "state")).some((f) => f.startsWith(`${STATE_FILE}.corrupt-`))).toBe(true);
  });

  it("a corrupt ledger restarts from the worst case, so the spend guard keeps the GPU off rather than under-count", async () => {
    writeFile({ replicaUrls: [] });
    const first = await start();
    await tick(first);
    writeFileSync(path.join(dir, "state", LEDGER_FILE), "not json");
    writeFileSync(path.join(dir, "state", `${LEDGER_FILE}.prev`), "not json either");
    const second = await start();
    gatekeeper.text = demandText({ allowed: 0 });
    await tick(second);
    gatekeeper.text = demandText({ allowed: 5 });
    const s = await tick(second);
    // 9 days and 10 h into December x 1 node x $3.60/h is past the $300 GPU budget.
    expect(s.ledger.monthToDateUsd).toBeCloseTo(((T0 - Date.parse("2026-12-01T00:00:00Z")) / 3_600_000) * 3.6, 0);
    expect(s.decision?.reason).toBe("budget-spent");
    expect(s.ledger.floorReason).toMatch(/ledger was lost/);
    expect(github.calls).toHaveLength(0);
    const off = second.answerOff();
    expect(off.state).toBe("budget-spent");
    expect(off.body.error.message).toMatch(/budget/);
    expect(existsSync(path.join(dir, "state", LEDGER_FILE))).toBe(true);
  });

  it("with the read-only billing token, a lost ledger restarts from DigitalOcean's month-to-date usage instead of the worst case", async () => {
    // A STAND-IN of DigitalOcean's GET /v2/customers/my/balance (the fields the controller reads).
    const seen: string[] = [];
    const billing = http.createServer((req, res) => {
      seen.push(`${req.url} ${req.headers.authorization}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          month_to_date_balance: "41.20",
          account_balance: "0.00",
          month_to_date_usage: "41.20",
          generated_at: "2026-12-10T09:59:00Z",
        }),
      );
    });
    await new Promise<void>((r) => billing.listen(0, "127.0.0.1", () => r()));
    try {
      writeFile();
      const store = new JsonStore(path.join(dir, "state"));
      store.write(LEDGER_FILE, "not a ledger");
      const c = await Controller.start({
        configFile: configPath(),
        store,
        fetcher: httpFetcher,
        clock: () => now,
        log,
        billing: new DigitalOceanBilling(
          `http://127.0.0.1:${(billing.address() as AddressInfo).port}`,
          "dop_v1_readonly_standin",
          httpFetcher,
        ),
      });
      const s = await tick(c);
      expect(s.ledger.monthToDateUsd).toBe(41.2);
      expect(s.ledger.accountMonthToDateUsd).toBe(41.2);
      expect(seen[0]).toBe("/v2/customers/my/balance Bearer dop_v1_readonly_standin");
      expect(JSON.stringify(log.lines)).not.toContain("dop_v1_readonly_standin");
    } finally {
      billing.closeAllConnections();
      await new Promise<void>((r) => billing.close(() => r()));
    }
  });

  it("counts its own 503 answers as demand: the tick right after a restart wakes the GPU although the gatekeeper's counter gives no delta yet", async () => {
    writeFile();
    const c = await start();
    gatekeeper.text = demandText({ allowed: 7 });
    const answer = c.answerOff();
    expect(answer).toMatchObject({
      status: 503,
      state: "waking",
      body: { error: { code: "gpu_off", type: "server_error" } },
    });
    expect(answer.retryAfterSeconds).toBe(870);
    // answerOff asked for a tick at once: it is the first, a baseline for the gatekeeper's counter, yet it wakes.
    await c.requestTick();
    expect(await metric(c, "hub_autoscaler_decisions_total", { reason: "wake-on-demand" })).toBe(1);
    expect(dispatchedNodes()).toEqual(["1"]);
    // The next answer says how long is left.
    now += 300_000;
    expect(c.answerOff().retryAfterSeconds).toBe(570);
  });

  it("treats a counter that went down as reset (the gatekeeper restarted): its new value is the increase, and only allowed requests count", async () => {
    writeFile({ policy: { ...controllerFile({ demandUrl: gatekeeper.url }).policy, minNodes: 0 } });
    const c = await start({ acting: false });
    gatekeeper.text = demandText({ allowed: 40 });
    await tick(c);
    gatekeeper.text = demandText({ allowed: 3 });
    expect((await tick(c)).coderRequests).toBe(3);
    // The gatekeeper's own 503s (outcome "unavailable") are a failing door, not demand.
    gatekeeper.text = demandText({ allowed: 10, unavailable: 2 });
    expect((await tick(c)).coderRequests).toBe(7);
  });

  it("in advice mode decides and logs what it would ask, and sends nothing", async () => {
    writeFile();
    const c = await start({ acting: false });
    await tick(c);
    gatekeeper.text = demandText({ allowed: 1 });
    const s = await tick(c);
    expect(s.mode).toBe("advice");
    expect(s.decision?.reason).toBe("wake-on-demand");
    expect(github.calls).toHaveLength(0);
    const line = log.lines.find((l) => l.msg === "decision" && l.fields.reason === "wake-on-demand");
    expect(line?.fields).toMatchObject({ mode: "advice", dispatch: "advice", wantedNodes: 1 });
    expect(c.answerOff().state).toBe("advice");
  });

  it("logs one JSON line per decision with its reason and numbers", async () => {
    writeFile({ replicaUrls: [vllm.url] });
    vllm.text = vllmText([
      { running: 20, waiting: 5 },
      { running: 3, waiting: 0 },
    ]);
    const c = await start();
    await tick(c);
    const decisions = log.lines.filter((l) => l.msg === "decision");
    expect(decisions).toHaveLength(1);
    expect(decisions[0].fields).toMatchObject({
      reason: "hold",
      wantedNodes: 1,
      numbers: { readyNodes: 1, requestsInFlight: 28 },
    });
    expect(c.status()?.replicas[0].reading).toEqual({ running: 23, waiting: 5, kvCacheUsage: 0 });
  });
});

describe("fine-tuning jobs' spend (external-spend.json, written by `hub finetune`)", () => {
  it("counts this month's entries against the GPU budget, so a wake the budget cannot take is refused; a torn file keeps the last value", async () => {
    writeFile({ replicaUrls: [] });
    const c = await start();
    gatekeeper.text = demandText({ allowed: 0 });
    await tick(c);
    // Written after the controller's first tick, as `hub finetune` does on a running stack (a state
    // directory with files but no ledger would be a lost ledger, counted from the worst case).
    const store = new JsonStore(path.join(dir, "state"));
    // $299.90 of fine-tuning this month (and $50 in November, which is not this month's).
    store.write(EXTERNAL_SPEND_FILE, {
      version: 1,
      entries: {
        "finetune:hybrid/acme:2026-12": { month: "2026-12", usd: 299.9, what: "fine-tuning job acme" },
        "finetune:hybrid/old:2026-11": { month: "2026-11", usd: 50, what: "fine-tuning job old" },
      },
    });
    gatekeeper.text = demandText({ allowed: 5 });
    const s = await tick(c);
    expect(s.ledger.externalUsd).toBeCloseTo(299.9, 9);
    expect(s.ledger.monthToDateUsd).toBeCloseTo(299.9, 9);
    // Demand wants the GPU, but an hour at $3.60 would pass the $300 GPU budget.
    expect(s.decision?.reason).toBe("budget-refuses-wake");
    expect(github.calls).toHaveLength(0);
    writeFileSync(path.join(dir, "state", EXTERNAL_SPEND_FILE), "{ torn");
    writeFileSync(path.join(dir, "state", `${EXTERNAL_SPEND_FILE}.prev`), "{ torn");
    const after = await tick(c);
    expect(after.ledger.externalUsd).toBeCloseTo(299.9, 9);
    expect(log.lines.some((l) => l.level === "error" && /external spend file unreadable/.test(l.msg))).toBe(true);
  });
});
