import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleController } from "../programs/autoscaler/controller/bundle";
import { controllerFile, GitHubStandIn, MetricsStandIn, demandText } from "./helpers/autoscaler";
import { rigRequest } from "./helpers/gateway-rig";
import { startControllerProcess } from "./helpers/controller-process";
import { ManagedProcess } from "./helpers/processes";

/**
 * The budget guard has the last word over holding: the bundled controller, whose GPU budget
 * cannot pay another hour, gets a coder request that asks to wait. The wake is refused, so the
 * hold ends at once with the 503 naming the budget, and nothing is asked of the pipeline
 * (the recording GitHub stand-in). Traefik is a metrics stand-in.
 */
describe("holding under the budget guard (the bundled controller)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "ctl-hold-"));
  let traefik: MetricsStandIn;
  let github: GitHubStandIn;
  let proc: ManagedProcess;
  let control = 0;
  let off = 0;

  beforeAll(async () => {
    writeFileSync(path.join(dir, "autoscaler.js"), bundleController());
    traefik = await MetricsStandIn.start(demandText({ allowed: 0 }));
    github = await GitHubStandIn.start();
    const base = controllerFile({ demandUrl: traefik.url });
    // $1 of GPU budget left for the month: an hour at $3.60 would pass it.
    writeFileSync(
      path.join(dir, "autoscaler.json"),
      JSON.stringify({
        ...base,
        policy: { ...base.policy, gpuBudgetUsd: 1 },
        holding: { maxSeconds: 600, maxRequests: 64, maxPerKey: 8, fallbackUrl: null },
      }),
    );
    ({ proc, control, off } = await startControllerProcess(path.join(dir, "autoscaler.js"), dir, {
      AUTOSCALER_DISPATCH_TOKEN: "github_pat_hold",
      AUTOSCALER_GITHUB_API: github.url,
    }));
  }, 60_000);
  afterAll(async () => {
    await proc?.stop();
    await traefik?.close();
    await github?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a request that asks to wait is let go as soon as the decision refuses the wake, with the budget's 503; nothing is dispatched", async () => {
    const started = Date.now();
    const res = await rigRequest(off, {
      path: "/v1/chat/completions",
      headers: { "content-type": "application/json", "x-hub-key-id": "k_test", "x-hub-wait": "120" },
      body: JSON.stringify({ model: "coder", messages: [] }),
    });
    expect(res.status).toBe(503);
    expect(res.headers["x-hub-gpu-state"]).toBe("budget-spent");
    expect(res.json.error).toMatchObject({ code: "gpu_off" });
    expect(Date.now() - started).toBeLessThan(10_000);
    const status = (await rigRequest(control, { path: "/status" })).json;
    expect(status.decision.reason).toBe("budget-refuses-wake");
    expect(github.calls).toEqual([]);
  }, 30_000);
});
