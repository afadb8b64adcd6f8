import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrafanaProxy, upstreamOrigin } from "../cli/grafana/proxy";
import { GatewayRig, RIG_BACKEND_KEY, rigMissing, rigRequest } from "./helpers/gateway-rig";

/**
 * Grafana behind the real gateway: Traefik built at the pinned version with the plan's routes
 * file, the real gatekeeper and nginx (test/helpers/gateway-rig.ts), and a labelled Grafana
 * STAND-IN (test/helpers/grafana-stand-in.ts) where the grafana container would be. What is
 * checked is the gateway's part: no key, or a key without the admin scope, never reaches Grafana;
 * an admin key does, as the key's id in X-Hub-Key-Id, with no credential forwarded.
 */

const missing = rigMissing();
if (missing) console.warn(`Grafana gateway tests skipped: ${missing}`);

it.runIf(Boolean(missing) && process.env.CI === "true")(
  "Traefik, nginx and PostgreSQL are installed (required in CI)",
  () => {
    expect.fail(missing);
  },
);

describe.skipIf(Boolean(missing))(
  "Grafana at /grafana/ through the real Traefik and gatekeeper (Grafana itself a stand-in)",
  () => {
    let rig: GatewayRig;
    const received = () => rig.grafana!.received.filter((r) => !r.url.endsWith("/api/health"));

    beforeAll(async () => {
      rig = await GatewayRig.start({
        keys: {
          admin: { scopes: ["admin"], ratePerMinute: 100_000, burst: 1000 },
          coder: { scopes: ["llm", "ocr", "stt", "tts"], ratePerMinute: 100_000, burst: 1000 },
        },
      });
    }, 120_000);
    afterAll(async () => {
      await rig?.stop();
    });

    it("refuses a request without a key before it reaches Grafana", async () => {
      const before = received().length;
      const r = await rig.request({ path: "/grafana/d/hub-gateway" });
      expect(r.status).toBe(401);
      expect(r.headers["x-stand-in"]).toBeUndefined();
      expect(received().length).toBe(before);
    });

    it("refuses a key without the admin scope", async () => {
      const before = received().length;
      const r = await rig.request({
        path: "/grafana/d/hub-gateway",
        headers: { authorization: `Bearer ${rig.keys.coder.key}` },
      });
      expect(r.status).toBe(403);
      expect(received().length).toBe(before);
    });

    it("a forged X-Hub-Key-Id opens nothing: without a key it is refused, with one it is replaced by the key's own id", async () => {
      const before = received().length;
      const forged = await rig.request({ path: "/grafana/api/search", headers: { "x-hub-key-id": rig.keys.admin.id } });
      expect(forged.status).toBe(401);
      expect(received().length).toBe(before);

      const r = await rig.request({
        path: "/grafana/api/search",
        headers: { authorization: `Bearer ${rig.keys.admin.key}`, "x-hub-key-id": "somebody-else" },
      });
      expect(r.status).toBe(200);
      expect(r.json).toEqual({ login: rig.keys.admin.id, path: "/grafana/api/search" });
    });

    it("passes an admin key's request to Grafana as the key's id, path unchanged, with no credential forwarded", async () => {
      const variants: Record<string, string>[] = [
        { authorization: `Bearer ${rig.keys.admin.key}` },
        { "x-api-key": rig.keys.admin.key },
      ];
      for (const headers of variants) {
        const r = await rig.request({ path: "/grafana/d/hub-vllm?orgId=1", headers });
        expect(r.status).toBe(200);
        expect(r.headers["x-stand-in"]).toBe("grafana");
        expect(r.json).toEqual({ login: rig.keys.admin.id, path: "/grafana/d/hub-vllm?orgId=1" });
        const seen = received().at(-1)!;
        // Neither the client's key nor the backends' key the gatekeeper swaps in reaches Grafana.
        expect(seen.headers.authorization).toBeUndefined();
        expect(seen.headers["x-api-key"]).toBeUndefined();
        expect(JSON.stringify(seen.headers)).not.toContain(rig.keys.admin.key);
        expect(JSON.stringify(seen.headers)).not.toContain(RIG_BACKEND_KEY);
      }
    });

    it("only /grafana/ is Grafana's: a look-alike path is the gateway's 404, and the VPC metrics port does not serve it", async () => {
      const before = received().length;
      const lookalike = await rig.request({
        path: "/grafanax/api/search",
        headers: { authorization: `Bearer ${rig.keys.admin.key}` },
      });
      expect(lookalike.status).toBe(404);
      expect(lookalike.json?.error?.code).toBe("not_found");
      const vpc = await rig.request({
        path: "/grafana/api/search",
        port: rig.entry.metrics,
        headers: { authorization: `Bearer ${rig.keys.admin.key}` },
      });
      expect(vpc.status).toBe(404);
      expect(received().length).toBe(before);
    });

    it("npm run grafana's loopback proxy lets a browser in with the admin key it adds, and forwards nothing but /grafana/", async () => {
      const proxy = await startGrafanaProxy({ upstream: `${rig.baseUrl}/v1`, key: rig.keys.admin.key, port: 0 });
      try {
        const port = Number(new URL(proxy.url).port);
        // A browser sends no key (or a stale one of its own): the proxy's admin key is what counts.
        for (const headers of [{}, { authorization: "Bearer ihk_not-a-real-key" }] as Record<string, string>[]) {
          const r = await rigRequest(port, { path: "/grafana/api/search?query=hub", headers });
          expect(r.status).toBe(200);
          expect(r.json).toEqual({ login: rig.keys.admin.id, path: "/grafana/api/search?query=hub" });
        }
        expect((await rigRequest(port, { path: "/" })).headers.location).toBe("/grafana/");
        const before = rig.accessLog().length;
        expect((await rigRequest(port, { path: "/v1/models" })).status).toBe(404);
        expect(rig.accessLog().length).toBe(before);
      } finally {
        await proxy.close();
      }
    });

    it("the proxy takes only http(s) gateway URLs", () => {
      expect(upstreamOrigin("https://hub.example.com/v1").href).toBe("https://hub.example.com/");
      expect(() => upstreamOrigin("ftp://hub.example.com")).toThrow(/http:\/\/ or https:\/\//);
    });
  },
);
