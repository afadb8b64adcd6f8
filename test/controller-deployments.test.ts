import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { bundleController } from "../programs/autoscaler/controller/bundle";
import { Actuator, DispatchRequest } from "../programs/autoscaler/controller/actuator";
import { PulumiDeploymentsPipeline, SCALE_ENV } from "../programs/autoscaler/controller/deployments";
import { httpFetcher } from "../programs/autoscaler/controller/signals";
import { autoscalerConfig } from "../services/autoscaler";
import { routeTable } from "../services/routes";
import { controllerFile, MetricsStandIn, PulumiCloudStandIn, demandText } from "./helpers/autoscaler";
import { rigRequest } from "./helpers/gateway-rig";
import { mustLoad } from "./helpers/load";
import { startControllerProcess } from "./helpers/controller-process";
import { ManagedProcess, waitFor } from "./helpers/processes";

/**
 * The Pulumi Deployments actuator against a recording stand-in of Pulumi Cloud's REST API
 * (test/helpers/autoscaler.ts, a local HTTP server, not Pulumi Cloud): what it asks for, with the
 * same retry and no-duplicate rules as the GitHub path. Scheduling runs on a fake clock; the HTTP is real.
 */
const TOKEN = "pul-standin-0123456789abcdef";
let cloud: PulumiCloudStandIn;
beforeAll(async () => {
  cloud = await PulumiCloudStandIn.start();
});
afterAll(() => cloud.close());
beforeEach(() => {
  cloud.calls.length = 0;
  cloud.script = [];
});

const pipeline = () =>
  new PulumiDeploymentsPipeline(
    { api: cloud.url, token: TOKEN, organization: "acme", project: "inference-hub", stack: "hybrid" },
    httpFetcher,
  );
const request = (nodes: number, id = `d-${nodes}`): DispatchRequest => ({
  stack: "hybrid",
  nodes,
  reason: nodes > 0 ? "wake-on-demand" : "idle",
  decisionId: id,
});

describe("the Pulumi Deployments actuator", () => {
  it("creates a deployment of the one stack: its settings inherited, the count only in environment variables, the hub's safe path as the command", async () => {
    const a = new Actuator(pipeline(), { catchUpMs: 40 * 60_000, random: () => 0 });
    expect(a.want(request(1, "20261207T100000000Z-1-abc123"), 0, 0)).toBe("queued");
    expect(await a.step(0)).toEqual({ ok: true, status: 202 });
    expect(cloud.calls).toHaveLength(1);
    const call = cloud.calls[0];
    expect(call.method).toBe("POST");
    expect(call.path).toBe("/api/stacks/acme/inference-hub/hybrid/deployments");
    expect(call.headers.authorization).toBe(`token ${TOKEN}`);
    expect(call.headers.accept).toBe("application/vnd.pulumi+8");
    expect(call.body).toEqual({
      operation: "preview",
      inheritSettings: true,
      operationContext: {
        environmentVariables: {
          HUB_SCALE_NODES: "1",
          HUB_SCALE_REASON: "wake-on-demand",
          HUB_SCALE_DECISION_ID: "20261207T100000000Z-1-abc123",
        },
        preRunCommands: [
          "npm ci --no-audit --no-fund",
          'npm run hub -- gpu scale "$HUB_SCALE_NODES" --stack hybrid --reason "$HUB_SCALE_REASON" --decision-id "$HUB_SCALE_DECISION_ID"',
        ],
      },
    });
    // The request's own text reaches no command: only the variables' names do.
    for (const command of (call.body as { operationContext: { preRunCommands: string[] } }).operationContext
      .preRunCommands)
      expect(command).not.toMatch(/wake-on-demand|abc123/);
    expect(Object.keys(SCALE_ENV).length).toBe(3);
    expect(JSON.stringify(call.body)).not.toContain(TOKEN);
  });

  it("retries a 5xx and a 429 with backoff, waits the longest after a refusal, sends no duplicate", async () => {
    cloud.script = [{ status: 503 }, { status: 429, retryAfter: 20 }, { status: 202 }];
    const a = new Actuator(pipeline(), {
      catchUpMs: 40 * 60_000,
      backoff: { baseMs: 5_000, maxMs: 600_000 },
      random: () => 0,
    });
    a.want(request(1), 0, 0);
    expect((await a.step(0))?.ok).toBe(false);
    expect(a.snapshot().pending!.nextAttemptMs).toBe(2_500);
    await a.step(2_500, () => 2_500);
    expect(a.snapshot().pending!.nextAttemptMs).toBe(22_500);
    expect((await a.step(22_500, () => 22_500))?.ok).toBe(true);
    // The same count again while the stack catches up: nothing sent.
    expect(a.want(request(1, "again"), 0, 30_000)).toBe("duplicate-awaiting-stack");
    expect(await a.step(30_000)).toBeUndefined();
    expect(cloud.calls).toHaveLength(3);

    cloud.script = [{ status: 403, message: "stack_deployment:create required" }];
    const refused = new Actuator(pipeline(), {
      catchUpMs: 40 * 60_000,
      backoff: { baseMs: 5_000, maxMs: 600_000 },
      random: () => 0,
    });
    refused.want(request(1), 0, 0);
    expect(await refused.step(0)).toMatchObject({
      ok: false,
      status: 403,
      message: "HTTP 403: stack_deployment:create required",
    });
    expect(refused.snapshot().pending!.nextAttemptMs).toBe(600_000);
  });

  it("refuses names that are not Pulumi's, so nothing else reaches a URL or a command", () => {
    expect(
      () =>
        new PulumiDeploymentsPipeline(
          { api: cloud.url, token: TOKEN, organization: "acme", project: "inference-hub", stack: "hybrid; rm -rf /" },
          httpFetcher,
        ),
    ).toThrow(/stack "hybrid; rm -rf \/" is not a valid name/);
  });

  it("the deploy renders the target from the stack: this organization, project and stack, and the Pulumi token instead of GitHub's", () => {
    const hub = mustLoad({ tier: "hybrid", autoscalerActuator: "pulumi-deployments" });
    const file = autoscalerConfig(hub, routeTable(hub), {
      stack: "hybrid",
      organization: "acme",
      privateIps: {},
      billingCrossCheck: false,
    });
    expect(file.dispatch).toEqual({
      kind: "pulumi-deployments",
      organization: "acme",
      project: "inference-hub",
      stack: "hybrid",
    });
  });
});

describe("the bundled controller with the Pulumi Deployments actuator", () => {
  it("wakes the GPU through a deployment of its stack on the first coder request, with the token from its environment", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ctl-deployments-"));
    const traefik = await MetricsStandIn.start(demandText({ allowed: 0 }));
    let proc: ManagedProcess | undefined;
    try {
      writeFileSync(path.join(dir, "autoscaler.js"), bundleController());
      writeFileSync(
        path.join(dir, "autoscaler.json"),
        JSON.stringify(
          controllerFile({
            demandUrl: traefik.url,
            dispatch: { kind: "pulumi-deployments", organization: "acme", project: "inference-hub", stack: "hybrid" },
          }),
        ),
      );
      const { proc: started, off } = await startControllerProcess(path.join(dir, "autoscaler.js"), dir, {
        AUTOSCALER_PULUMI_TOKEN: TOKEN,
        AUTOSCALER_PULUMI_API: cloud.url,
      });
      proc = started;
      // As Traefik forwards it: with the gatekeeper's key id, which makes it demand.
      const res = await rigRequest(off, {
        path: "/v1/chat/completions",
        headers: { "x-hub-key-id": "k_dev00001" },
        body: "{}",
      });
      expect(res.status).toBe(503);
      expect(res.headers["x-hub-gpu-state"]).toBe("waking");
      await waitFor("the deployment", () => cloud.calls.length > 0, 10_000, { context: () => proc!.tail() });
      expect(cloud.calls[0].path).toBe("/api/stacks/acme/inference-hub/hybrid/deployments");
      expect(cloud.calls[0].body).toMatchObject({
        operationContext: { environmentVariables: { HUB_SCALE_NODES: "1", HUB_SCALE_REASON: "wake-on-demand" } },
      });
      expect(proc.tail()).not.toContain(TOKEN);
    } finally {
      await proc?.stop();
      await traefik.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
