import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { measureWake, parseWakeArgs, wakeStagesFile } from "../cli/smoke/wake";
import { measuredStages, parseStagesFile } from "../simulator/stages";
import { servingModel } from "../programs/autoscaler/serving-model";
import { mustLoad } from "./helpers/load";

/**
 * `npm run smoke -- --wake` against a STAND-IN HUB (a loopback server, not the gateway): its
 * /admin/autoscaler reports the node deployed 300 ms and ready 700 ms after the first coder
 * request, which it holds until then and answers from "gpu-0". The measured stages must match
 * that timeline and read back into the simulator.
 */
let server: http.Server;
let base = "";
let firstAt: number | undefined;
const seen: http.IncomingHttpHeaders[] = [];
beforeAll(async () => {
  server = http.createServer((req, res) => {
    const since = firstAt === undefined ? -1 : Date.now() - firstAt;
    if (req.url === "/admin/autoscaler") {
      if (req.headers.authorization !== "Bearer ihk_admin") return void res.writeHead(403).end("{}");
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(
        JSON.stringify({ deployedNodes: since >= 300 ? 1 : 0, nodes: { ready: since >= 700 ? 1 : 0 } }),
      );
    }
    seen.push(req.headers);
    firstAt ??= Date.now();
    const answer = () => {
      res.writeHead(200, { "content-type": "application/json", "x-hub-backend": "gpu-0" });
      res.end(JSON.stringify({ choices: [{ message: { content: "OK" } }] }));
    };
    req.resume();
    setTimeout(answer, Math.max(0, 700 - (Date.now() - firstAt)));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("npm run smoke -- --wake", () => {
  it("times the stages from the waiting request, the deploy naming the node, the replica ready, the answer; and the simulator reads them back", async () => {
    const built = servingModel(mustLoad({ tier: "hybrid" }));
    if (!built.ok) throw new Error(built.reason);
    const model = Object.fromEntries(built.model.coldStart.stages.map((s) => [s.name, s.seconds]));
    const report = await measureWake(
      {
        baseUrl: base,
        apiKey: "ihk_user",
        adminKey: "ihk_admin",
        waitSeconds: 30,
        pollMs: 25,
        timeoutMs: 10_000,
        model,
      },
      { fetch, now: Date.now, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) },
    );
    expect(report.ok).toBe(true);
    expect(report.answeredBy).toBe("gpu-0");
    expect(seen[0]["x-hub-wait"]).toBe("30");
    const [toNamed, toReady, toAnswer] = report.stages.map((s) => s.seconds);
    expect(toNamed).toBeGreaterThanOrEqual(0.3);
    expect(toNamed).toBeLessThan(0.5);
    expect(toReady).toBeGreaterThanOrEqual(0.3);
    expect(toReady).toBeLessThan(0.6);
    expect(toAnswer).toBeLessThan(0.2);
    expect(report.stages[0]).toMatchObject({
      covers: ["pipeline", "droplet create"],
      modelSeconds: model.pipeline + model["droplet create"],
    });
    const file = parseStagesFile(wakeStagesFile(report, new Date(), "hybrid"), "wake.json");
    const read = servingModel(mustLoad({ tier: "hybrid" }), { measured: measuredStages(file) });
    expect(read.ok && read.model.coldStart.stages.map((s) => s.name)).toEqual([
      "pipeline + droplet create",
      "cloud-init + image pull + weights from volume + engine start",
      "first health check",
    ]);
  });

  it("refuses to measure a GPU that runs already, and a key without the admin scope", async () => {
    const deps = { fetch, now: Date.now, sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)) };
    const running = await measureWake(
      { baseUrl: base, apiKey: "ihk_user", adminKey: "ihk_admin", waitSeconds: 30, pollMs: 25, timeoutMs: 1000 },
      deps,
    );
    expect(running).toMatchObject({ ok: false, problem: expect.stringMatching(/runs already.*wake from off/) });
    const notAdmin = await measureWake(
      { baseUrl: base, apiKey: "ihk_user", adminKey: "ihk_user", waitSeconds: 30, pollMs: 25, timeoutMs: 1000 },
      deps,
    );
    expect(notAdmin.problem).toMatch(/403: --admin-key must be a key with the admin scope/);
  });

  it("reports every usage problem at once", () => {
    expect(() => parseWakeArgs(["--wake", "--url", "nope", "--wait", "900"], {})).toThrow(
      /missing --key.*missing --admin-key.*--wait "900".*--url "nope" is not a URL/,
    );
  });
});
