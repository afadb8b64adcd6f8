import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedLlmRequests } from "../programs/autoscaler/demand";
import { parseSeries } from "../programs/autoscaler/controller/signals";
import { GitHubStandIn } from "./helpers/autoscaler";
import { GatewayRig, rigMissing, rigRequest } from "./helpers/gateway-rig";
import { waitFor } from "./helpers/processes";

/**
 * The off-state answer through the real gateway: Traefik built at the pinned version with the
 * files the plan renders, the bundled gatekeeper, and the bundled controller with its rendered
 * config and container environment (only addresses and directories moved to loopback), for a
 * hybrid stack without a CPU stand-in. The pipeline is the recording GitHub stand-in; the GPU
 * replica, when on, is the rig's vLLM stand-in. Skips without the rig's programs (fails under CI).
 */

const missing = rigMissing();
if (missing && process.env.CI === "true") throw new Error(`the real-gateway controller test cannot run: ${missing}`);
const TOKEN = "github_pat_rig_standin_token";

describe.skipIf(missing !== undefined)("the controller behind the real Traefik", () => {
  let rig: GatewayRig;
  let github: GitHubStandIn;
  const chat = (key: string) =>
    rig.request({
      path: "/v1/chat/completions",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "coder", messages: [{ role: "user", content: "hi" }] }),
    });

  beforeAll(async () => {
    github = await GitHubStandIn.start();
    rig = await GatewayRig.start({
      settings: { fallbackModel: "none", autoscalerDispatchRepo: "acme/inference-hub" },
      keys: { dev: { scopes: ["llm"] }, ops: { scopes: ["admin"] } },
      autoscaler: { githubApi: github.url, dispatchToken: TOKEN },
    });
    await rig.controllerSeesGateway();
  }, 120_000);
  afterAll(async () => {
    await rig?.stop();
    await github?.close();
  });

  it("answers a coder request while the GPU is off with an OpenAI-shaped 503, the state and Retry-After, and wakes the GPU", async () => {
    const res = await chat(rig.keys.dev.key);
    expect(res.status).toBe(503);
    expect(res.json).toMatchObject({ error: { code: "gpu_off", type: "server_error" } });
    expect(res.json.error.message).toMatch(/waking up/);
    expect(res.headers["x-hub-gpu-state"]).toBe("waking");
    expect(res.headers["x-hub-backend"]).toBe("gpu-off");
    // The stack's cold start from the catalogue, in whole seconds, as Retry-After.
    expect(Number(res.headers["retry-after"])).toBeGreaterThan(600);
    await waitFor("the wake dispatch", () => github.calls.length > 0, 10_000, {
      context: () => rig.autoscaler!.tail(),
    });
    expect(github.calls[0].path).toBe("/repos/acme/inference-hub/actions/workflows/autoscale.yml/dispatches");
    expect(github.calls[0].headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(github.calls[0].body).toMatchObject({
      ref: "main",
      inputs: { stack: "rig", nodes: "1", reason: "wake-on-demand" },
    });
    // A second request while waking sends no second dispatch.
    expect((await chat(rig.keys.dev.key)).status).toBe(503);
    await new Promise((r) => setTimeout(r, 1000));
    expect(github.calls).toHaveLength(1);
    // The controller's token never reaches its log.
    expect(rig.autoscaler!.tail()).not.toContain(TOKEN);
  });

  it("counts as demand the gatekeeper's allowed llm decisions only: a refusal at the door is not", async () => {
    const read = async () =>
      allowedLlmRequests(parseSeries((await rigRequest(rig.gatekeeperPort, { path: "/metrics" })).text));
    const before = await read();
    expect(
      (
        await rig.request({
          path: "/v1/chat/completions",
          headers: { authorization: "Bearer ihk_not_a_real_key" },
          body: "{}",
        })
      ).status,
    ).toBe(401);
    expect(await read()).toBe(before);
    expect((await chat(rig.keys.dev.key)).status).toBe(503);
    expect(await read()).toBe(before + 1);
    // What the controller read on its last tick is the same series.
    await waitFor(
      "a tick after the request",
      async () =>
        Object.values(
          (await rigRequest(rig.autoscalerPorts.control, { path: "/status" })).json?.demandCounters ?? {},
        ).reduce((a: number, b) => a + Number(b), 0) ===
        before + 1,
      20_000,
    );
  });

  it("reports its view at /admin/autoscaler to admin keys only", async () => {
    const denied = await rig.request({
      path: "/admin/autoscaler",
      headers: { authorization: `Bearer ${rig.keys.dev.key}` },
    });
    expect(denied.status).toBe(403);
    const res = await rig.request({
      path: "/admin/autoscaler",
      headers: { authorization: `Bearer ${rig.keys.ops.key}` },
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      stack: "rig",
      mode: "act",
      signalsUp: true,
      dispatch: { accepted: { request: { nodes: 1 } } },
    });
    expect(res.json.nodes.starting).toBe(1);
    expect(res.text).not.toContain(TOKEN);
  });

  it("sees the replica ready once the deploy names it and vLLM answers, with vLLM's queue", async () => {
    await rig.startGpu();
    rig.writeAutoscalerConfig("gpu-on");
    rig.writeRoutes("gpu-on");
    await waitFor(
      "the controller to see the replica ready",
      async () => (await rigRequest(rig.autoscalerPorts.control, { path: "/status" })).json?.nodes?.ready === 1,
      40_000,
      { context: () => rig.autoscaler!.tail() },
    );
    const status = (await rigRequest(rig.autoscalerPorts.control, { path: "/status" })).json;
    expect(status.replicas).toEqual([
      { node: "gpu-0", healthy: true, reading: { running: expect.any(Number), waiting: 0, kvCacheUsage: 0 } },
    ]);
    const metrics = parseSeries((await rigRequest(rig.autoscalerPorts.control, { path: "/metrics" })).text);
    expect(metrics.get("hub_autoscaler_nodes")?.find((s) => s.labels.state === "ready")?.value).toBe(1);
    expect(metrics.get("hub_autoscaler_signals_up")?.[0].value).toBe(1);
  }, 60_000);
});
