import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedLlmRequests } from "../programs/autoscaler/demand";
import { parseSeries } from "../programs/autoscaler/controller/signals";
import { GitHubStandIn } from "./helpers/autoscaler";
import { GatewayRig, RIG_BACKEND_KEY, rigMissing, rigRequest, type RigResponse } from "./helpers/gateway-rig";
import { waitFor } from "./helpers/processes";

/**
 * Nobody without a key can spend the team's GPU budget, and no sink keeps a key (issue 18),
 * tried as an attacker would: through the real Traefik (built at the pinned version, with the
 * files the plan renders), the bundled gatekeeper with PostgreSQL, and the bundled controller
 * acting through the RECORDING STAND-IN of GitHub's dispatch API, for a hybrid stack whose coder
 * route falls back to the controller's off answer. Skips without the rig's programs (fails under CI).
 */

const missing = rigMissing();
if (missing && process.env.CI === "true") throw new Error(`the real-gateway money test cannot run: ${missing}`);
const TOKEN = "github_pat_rig_money_token";

describe.skipIf(missing !== undefined)("money and keys through the real gateway", () => {
  let rig: GatewayRig;
  let github: GitHubStandIn;
  /** Every response a client got, and every log a process wrote before it was restarted. */
  const responses: RigResponse[] = [];
  const earlierLogs: string[] = [];
  const madeUp = `ihk_${randomBytes(32).toString("base64url")}`;

  /** The demand the controller reads, summed over its series: what counts towards waking the GPU. */
  async function demand(): Promise<number> {
    return allowedLlmRequests(parseSeries((await rigRequest(rig.gatekeeperPort, { path: "/metrics" })).text));
  }
  const send = async (options: Parameters<GatewayRig["request"]>[0]) => {
    const r = await rig.request(options);
    responses.push(r);
    return r;
  };
  const chat = (headers: Record<string, string>, extra: Record<string, unknown> = {}) =>
    send({
      path: "/v1/chat/completions",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ model: "coder", messages: [{ role: "user", content: "hi" }], ...extra }),
      localAddress: "127.0.0.31",
    });
  const bearer = (name: string) => ({ authorization: `Bearer ${rig.keys[name].key}` });
  const status = async () => (await rigRequest(rig.autoscalerPorts.control, { path: "/status" })).json;
  /** Waits for a controller tick that began after now (its dispatch, if any, is sent within the tick). */
  async function nextTick(): Promise<Record<string, any>> {
    const after = Date.now();
    await waitFor("a controller tick", async () => ((await status())?.atMs ?? 0) > after, 40_000, {
      context: () => rig.autoscaler!.tail(),
    });
    return status();
  }

  beforeAll(async () => {
    github = await GitHubStandIn.start();
    rig = await GatewayRig.start({
      settings: { fallbackModel: "none", autoscalerDispatchRepo: "acme/inference-hub" },
      keys: {
        dev: { scopes: ["llm"] },
        speech: { scopes: ["stt"] },
        ops: { scopes: ["admin"] },
        gone: { scopes: ["llm"], revoked: true },
      },
      autoscaler: { githubApi: github.url, dispatchToken: TOKEN },
    });
    await waitFor(
      "the controller's first tick with its signals read",
      async () => (await rigRequest(rig.autoscalerPorts.control, { path: "/status" })).json?.signalsUp === true,
      45_000,
      { context: () => rig.autoscaler!.tail() },
    );
  }, 120_000);
  afterAll(async () => {
    await rig?.stop();
    await github?.close();
  });

  it("no request without an llm key counts as demand or wakes the GPU, in any form tried", async () => {
    const grpc = "application/grpc";
    const forms: [string, () => Promise<RigResponse>, number][] = [
      ["keyless chat, Content-Type gRPC", () => chat({ "content-type": grpc }), 415],
      ["keyless chat, gRPC+proto", () => chat({ "content-type": "application/grpc+proto" }), 415],
      [
        "keyless models, gRPC-Web",
        () =>
          send({
            path: "/v1/models",
            headers: { "content-type": "application/grpc-web+proto" },
            localAddress: "127.0.0.31",
          }),
        415,
      ],
      [
        "keyless completions, gRPC-Web text",
        () =>
          send({
            path: "/v1/completions",
            headers: { "content-type": "application/grpc-web-text" },
            body: "AAAA",
            localAddress: "127.0.0.31",
          }),
        415,
      ],
      ["wrong-scope key, gRPC", () => chat({ ...bearer("speech"), "content-type": grpc }), 415],
      ["llm key, gRPC (the hub serves no gRPC)", () => chat({ ...bearer("dev"), "content-type": grpc }), 415],
      ["keyless chat, Content-Type APPLICATION/GRPC", () => chat({ "content-type": "APPLICATION/GRPC" }), 415],
      ["keyless chat", () => chat({}), 401],
      ["made-up key", () => chat({ authorization: `Bearer ${madeUp}` }), 401],
      ["revoked key", () => chat(bearer("gone")), 401],
      ["stt key on the coder", () => chat(bearer("speech")), 403],
      ["admin key on the coder", () => chat(bearer("ops")), 403],
      ["keyless event stream", () => chat({ accept: "text/event-stream" }, { stream: true }), 401],
      [
        "keyless websocket upgrade",
        () =>
          send({
            path: "/v1/chat/completions",
            headers: { connection: "Upgrade", upgrade: "websocket" },
            localAddress: "127.0.0.31",
          }),
        401,
      ],
    ];
    const counted: Record<string, number> = {};
    for (const [name, request, status] of forms) {
      const before = await demand();
      const r = await request();
      expect(r.status, `${name}: ${r.text}`).toBe(status);
      if (status === 415)
        expect(r.json, name).toMatchObject({
          error: { type: "invalid_request_error", code: "unsupported_media_type" },
        });
      counted[name] = (await demand()) - before;
    }
    console.info(
      `[figure] forms that counted as demand: ${Object.values(counted).filter((n) => n > 0).length} of ${forms.length}`,
    );
    expect(counted).toEqual(Object.fromEntries(forms.map(([name]) => [name, 0])));
    // A controller tick later, nothing was asked of the pipeline.
    expect((await nextTick()).decision.reason).toBe("hold");
    expect(github.calls).toEqual([]);
  }, 90_000);

  it("a failing gatekeeper is not demand: the door's 500s wake nothing, keyed or not", async () => {
    earlierLogs.push(rig.gatekeeper.text());
    await rig.stopGatekeeper();
    try {
      for (const headers of [{}, bearer("dev"), { authorization: `Bearer ${madeUp}` }] as Record<string, string>[]) {
        const r = await chat(headers);
        expect(r.status, r.text).toBe(500);
        expect(r.json?.error?.code).toBe("auth_unavailable");
      }
      // The controller is blind meanwhile: it holds, and its off answer is never reached.
      expect((await nextTick()).decision.reason).toBe("hold-metrics-missing");
    } finally {
      await rig.startGatekeeper();
    }
    // A gatekeeper that starts again counts from zero: none of those requests was allowed.
    expect(await demand()).toBe(0);
    expect((await nextTick()).signalsUp).toBe(true);
    expect(github.calls).toEqual([]);
  }, 90_000);

  it("a valid llm key's chat, completion and stream each count once, and wake the GPU", async () => {
    const counts: number[] = [];
    for (const request of [
      () => chat(bearer("dev")),
      () =>
        send({
          path: "/v1/completions",
          headers: { ...bearer("dev"), "content-type": "application/json" },
          body: JSON.stringify({ model: "coder", prompt: "def" }),
          localAddress: "127.0.0.31",
        }),
      () => chat({ ...bearer("dev"), accept: "text/event-stream" }, { stream: true }),
    ]) {
      const before = await demand();
      const r = await request();
      // The GPU is off and the stack has no CPU stand-in: the controller's off answer.
      expect(r.status, r.text).toBe(503);
      expect(r.json?.error?.code).toBe("gpu_off");
      counts.push((await demand()) - before);
    }
    expect(counts).toEqual([1, 1, 1]);
    await waitFor("the wake dispatch", () => github.calls.length > 0, 20_000, {
      context: () => rig.autoscaler!.tail(),
    });
    expect(github.calls[0].body).toMatchObject({ inputs: { nodes: "1", reason: "wake-on-demand" } });
  }, 60_000);

  it("no key reaches any sink, from every spot a client can put one", async () => {
    const dev = rig.keys.dev.key;
    const basic = (user: string) => `Basic ${Buffer.from(`${user}:x`).toString("base64")}`;
    // The valid key and a made-up one, in every place a client can put text.
    for (const key of [dev, madeUp]) {
      const auth = bearer("dev");
      await send({ path: `/v1/models?api_key=${key}`, headers: auth, localAddress: "127.0.0.32" });
      await send({ path: `/v1/models?key=${key}&x=1`, localAddress: "127.0.0.32" });
      await send({ path: `/v1/models/${key}`, headers: auth, localAddress: "127.0.0.32" });
      await send({ path: `/nope/${key}`, localAddress: "127.0.0.32" });
      await send({ path: `/nope?token=${key}`, localAddress: "127.0.0.32" });
      await send({
        path: "/v1/models",
        headers: { ...auth, "user-agent": `curl/8 ${key}` },
        localAddress: "127.0.0.32",
      });
      await send({
        path: "/v1/models",
        headers: { "user-agent": key, referer: `https://example.com/?k=${key}` },
        localAddress: "127.0.0.32",
      });
      await send({ path: "/v1/models", headers: { authorization: basic(key) }, localAddress: "127.0.0.32" });
      await send({
        path: "/v1/models",
        headers: {
          "x-api-key": key,
          cookie: `session=${key}`,
          "x-request-id": key,
          "x-hub-key-id": key,
          "x-custom": key,
        },
        localAddress: "127.0.0.32",
      });
      await send({ path: "/v1/models", headers: { ...auth, host: `${key}.example.com` }, localAddress: "127.0.0.32" });
      await send({
        path: "/v1/chat/completions",
        headers: { ...auth, "content-type": `application/json; charset=${key}` },
        body: JSON.stringify({ api_key: key }),
        localAddress: "127.0.0.32",
      });
      await send({
        path: "/v1/chat/completions",
        headers: { "content-type": `application/grpc; key=${key}` },
        body: key,
        localAddress: "127.0.0.32",
      });
      await send({ method: key, path: "/v1/models", headers: auth, localAddress: "127.0.0.32" });
      await send({
        path: `/grafana/?api_key=${key}`,
        headers: { ...bearer("ops"), "user-agent": key },
        localAddress: "127.0.0.32",
      });
    }
    const keys = [...Object.values(rig.keys).map((k) => k.key), madeUp, RIG_BACKEND_KEY];
    // The key's random part alone counts too (a sink that dropped only the prefix still leaks it).
    const secrets = keys.flatMap((k) => [k, k.replace(/^ihk_/, "")]);
    const sinks: Record<string, string> = {
      // The gateway's own answers (Traefik, nginx, the gatekeeper, the controller); a stand-in echoing what it got is not one.
      "the gateway's answers": responses
        .filter((r) => r.headers["x-stand-in"] === undefined)
        .map((r) => JSON.stringify(r.headers) + r.text)
        .join("\n"),
      "traefik (access log and its own log)": rig.traefik.text(),
      "gatekeeper log": [...earlierLogs, rig.gatekeeper.text()].join("\n"),
      "controller log": rig.autoscaler!.text(),
      "nginx (error pages)": rig.nginx.text(),
      "audit rows": JSON.stringify(await rig.auditRows()),
      "traefik metrics": (await rigRequest(rig.entry.metrics, { path: "/metrics" })).text,
      "gatekeeper metrics": (await rigRequest(rig.gatekeeperPort, { path: "/metrics" })).text,
      "controller metrics and status":
        (await rigRequest(rig.autoscalerPorts.control, { path: "/metrics" })).text +
        (await rigRequest(rig.autoscalerPorts.control, { path: "/status" })).text,
      // Grafana shows what Prometheus holds (the metrics above) and is sent no credential: the route drops them.
      "grafana (credentials it received)": JSON.stringify(
        rig.grafana!.received.map((r) => [
          r.headers.authorization,
          r.headers["x-api-key"],
          r.headers.cookie,
          r.headers["x-hub-key-id"],
        ]),
      ),
    };
    const found: string[] = [];
    for (const [sink, text] of Object.entries(sinks))
      for (const s of secrets) if (text.includes(s)) found.push(`${sink} holds ${s.slice(0, 10)}…`);
    console.info(
      `[figure] keys found in ${Object.keys(sinks).length} sinks: ${found.length} (${responses.length} requests)`,
    );
    expect(found).toEqual([]);
    // The access log still says what happened: router, status, durations, and the request id that joins the audit row.
    const lines = rig.accessLog();
    expect(lines.length).toBeGreaterThan(20);
    const allowed = lines.filter((l) => l["request_X-Hub-Key-Id"] === rig.keys.dev.id);
    expect(allowed.length).toBeGreaterThan(0);
    for (const l of allowed)
      expect(l).toMatchObject({
        RouterName: expect.any(String),
        DownstreamStatus: expect.any(Number),
        Duration: expect.any(Number),
        "request_X-Request-Id": expect.any(String),
      });
  }, 60_000);
});
