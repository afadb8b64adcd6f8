import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleController } from "../programs/autoscaler/controller/bundle";
import { parseSeries } from "../programs/autoscaler/controller/signals";
import { controllerFile, demandText, MetricsStandIn } from "./helpers/autoscaler";
import { rigRequest } from "./helpers/gateway-rig";
import { startControllerProcess } from "./helpers/controller-process";
import { ManagedProcess, waitFor } from "./helpers/processes";

/** The controller as shipped: its esbuild bundle run by node, configured as its container is. */

/** owners.md "Controller metrics", written out here rather than imported from the code under test. */
const CONTRACT_METRICS = [
  "hub_autoscaler_wanted_nodes",
  "hub_autoscaler_nodes",
  "hub_autoscaler_decisions_total",
  "hub_autoscaler_month_spend_usd",
  "hub_autoscaler_gpu_budget_usd",
  "hub_autoscaler_ledger_floor_usd",
  "hub_autoscaler_signals_up",
  "hub_autoscaler_dispatch_failures_total",
  "hub_autoscaler_dispatch_pending",
  "hub_autoscaler_wake_ready_seconds",
];

describe("the bundled controller", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ctl-program-"));
  const bundle = path.join(dir, "autoscaler.js");
  let gatekeeper: MetricsStandIn;
  let proc: ManagedProcess;
  let control = 0;
  let off = 0;

  beforeAll(async () => {
    writeFileSync(bundle, bundleController());
    gatekeeper = await MetricsStandIn.start(demandText({ allowed: 0 }));
    writeFileSync(path.join(dir, "autoscaler.json"), JSON.stringify(controllerFile({ demandUrl: gatekeeper.url })));
    ({ proc, control, off } = await startControllerProcess(bundle, dir, {
      AUTOSCALER_DISPATCH_TOKEN: "",
    }));
  }, 60_000);
  afterAll(async () => {
    await proc?.stop();
    await gatekeeper?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("exports every metric of the contract on its control port", async () => {
    const text = (await rigRequest(control, { path: "/metrics" })).text;
    const names = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const name of CONTRACT_METRICS) expect(names, name).toContain(name);
    const families = parseSeries(text);
    expect(
      families
        .get("hub_autoscaler_nodes")
        ?.map((s) => s.labels.state)
        .sort(),
    ).toEqual(["draining", "ready", "starting"]);
    expect(families.get("hub_autoscaler_gpu_budget_usd")?.[0].value).toBe(300);
    expect(families.get("hub_autoscaler_signals_up")?.[0].value).toBe(1);
  });

  it("answers Docker's health check, and reports advice mode with an empty token", async () => {
    const health = await rigRequest(control, { path: "/healthz" });
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ status: "ok", mode: "advice" });
    expect(proc.tail()).toMatch(/advice mode/);
  });

  it("serves nothing but the off-state answer on its off port, whatever the path; a caller that did not come through the gatekeeper is not demand", async () => {
    const before = Date.now();
    for (const p of ["/v1/chat/completions", "/metrics", "/status"]) {
      const res = await rigRequest(off, { path: p, method: "POST", body: "{}" });
      expect(res.status, p).toBe(503);
      expect(res.json.error.code).toBe("gpu_off");
      expect(res.headers["retry-after"]).toMatch(/^\d+$/);
      expect(res.text).not.toContain("hub_autoscaler");
    }
    // Each answer asked for a tick at once; without the gatekeeper's X-Hub-Key-Id none counted.
    await waitFor(
      "a tick after the answers",
      async () => (await rigRequest(control, { path: "/status" })).json.atMs >= before,
      20_000,
    );
    const status = (await rigRequest(control, { path: "/status" })).json;
    expect(status.coderRequests).toBe(0);
    expect(status.decision.reason).toBe("hold");
  });

  it("writes one JSON log line per decision", () => {
    const decisions = proc
      .tail()
      .split("\n")
      .filter((l) => l.includes('"msg":"decision"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(decisions.length).toBeGreaterThanOrEqual(1);
    expect(decisions[0]).toMatchObject({
      level: "info",
      reason: expect.any(String),
      wantedNodes: expect.any(Number),
      numbers: expect.any(Object),
    });
  });

  it("refuses to start on a config file it cannot use, naming the field", async () => {
    const bad = path.join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ ...controllerFile({ demandUrl: gatekeeper.url }), tickSeconds: 0 }));
    // Not spawnSync: a blocked worker starves vitest's RPC.
    const run = ManagedProcess.start("bad autoscaler", process.execPath, [bundle], {
      env: {
        PATH: process.env.PATH ?? "",
        AUTOSCALER_CONFIG_FILE: bad,
        AUTOSCALER_STATE_DIR: path.join(dir, "bad-state"),
      },
    });
    expect(await run.exited).toBe(1);
    expect(run.tail()).toMatch(/tickSeconds/);
  });
});
