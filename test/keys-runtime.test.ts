import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../programs/gatekeeper/keys";
import { AdminClient } from "../cli/hub/admin-client";
import { GatewayRig, rigMissing, rigRequest } from "./helpers/gateway-rig";

/**
 * Keys managed at runtime through the real Traefik and the real gatekeeper bundle: with the audit
 * PostgreSQL (two replicas sharing it) and without one (the state directory). The admin client is
 * the CLI's own (cli/hub/admin-client.ts).
 */

const missing = rigMissing();
if (missing) {
  if (process.env.CI === "true") throw new Error(`runtime keys rig cannot run in CI: ${missing}`);
  console.warn(`runtime keys rig tests skipped: ${missing}`);
}

/** Polls `probe` until it says yes; the time it took, in ms (fails after `limitMs`). */
async function within(limitMs: number, probe: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > limitMs) throw new Error(`not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const models = (rig: GatewayRig, key: string) =>
  rig.request({ path: "/v1/models", headers: { authorization: `Bearer ${key}` } }).then((r) => r.status);
const auth = (port: number, key: string) =>
  rigRequest(port, { path: "/auth?scope=llm", headers: { authorization: `Bearer ${key}` } }).then((r) => r.status);

describe.skipIf(Boolean(missing))("runtime keys with the audit PostgreSQL, through the real Traefik", () => {
  let rig: GatewayRig;
  let admin: AdminClient;
  const responses: string[] = [];
  const keysSeen: string[] = [];
  beforeAll(async () => {
    rig = await GatewayRig.start({ keys: { admin: { scopes: ["admin"] }, user: { scopes: ["llm"] } } });
    const recording = async (
      url: string,
      init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal },
    ) => {
      const answer = await fetch(url, init);
      const text = await answer.text();
      responses.push(text);
      return { status: answer.status, text: async () => text };
    };
    admin = new AdminClient(`${rig.baseUrl}/v1`, rig.keys.admin.key, recording);
  }, 120_000);
  afterAll(async () => rig?.stop());

  it("a key created at runtime is accepted within a second, and a revoked one refused within a second", async () => {
    const created = await admin.createKey({ name: "ci runner", scopes: ["llm"] });
    keysSeen.push(created.key);
    expect(created).toMatchObject({ name: "ci runner", scopes: ["llm"], origin: "runtime", revoked: false });
    expect(created.key).toMatch(/^ihk_/);
    expect(await within(1000, async () => (await models(rig, created.key)) === 200)).toBeLessThan(1000);
    await admin.revokeKey(created.id);
    expect(await within(1000, async () => (await models(rig, created.key)) === 401)).toBeLessThan(1000);
    const listed = (await admin.listKeys()).data.find((k) => k.id === created.id);
    expect(listed).toMatchObject({ revoked: true, origin: "runtime", revokedBy: rig.keys.admin.id });
    expect(listed?.lastUsed).not.toBeNull();
  });

  it("a key without the admin scope gets 403 on every admin route, and no key 401", async () => {
    const routes: [string, string, string?][] = [
      ["GET", "/admin/keys"],
      ["POST", "/admin/keys", JSON.stringify({ name: "x", scopes: ["llm"] })],
      ["GET", `/admin/keys/${rig.keys.user.id}`],
      ["PATCH", `/admin/keys/${rig.keys.user.id}`, JSON.stringify({ dailyQuota: 5 })],
      ["POST", `/admin/keys/${rig.keys.user.id}/revoke`],
      ["POST", `/admin/keys/${rig.keys.admin.id}/rotate`],
      ["GET", "/admin/status"],
    ];
    for (const [method, p, body] of routes) {
      const user = await rig.request({
        method,
        path: p,
        headers: { authorization: `Bearer ${rig.keys.user.key}`, "content-type": "application/json" },
        body,
      });
      expect(user.status, `${method} ${p}`).toBe(403);
      const none = await rig.request({ method, path: p, body });
      expect(none.status, `${method} ${p}`).toBe(401);
    }
    // Nothing changed: the user key still works.
    expect(await models(rig, rig.keys.user.key)).toBe(200);
  });

  it("two gatekeepers sharing the database see each other's changes within a second", async () => {
    const replica = await rig.startReplica();
    const created = await admin.createKey({ name: "shared", scopes: ["llm"] });
    keysSeen.push(created.key);
    expect(await within(1000, async () => (await auth(replica.port, created.key)) === 200)).toBeLessThan(1000);
    // Revoked through the replica's own admin API; refused by the first gatekeeper, behind Traefik.
    const viaReplica = new AdminClient(`http://127.0.0.1:${replica.port}`, rig.keys.admin.key);
    await viaReplica.revokeKey(created.id);
    expect(await within(1000, async () => (await models(rig, created.key)) === 401)).toBeLessThan(1000);
  });

  it("rotate: the successor works, the old key is refused; limits: a daily quota refuses past it with 429", async () => {
    const first = await admin.createKey({ name: "rotating", scopes: ["llm"] });
    const next = await admin.rotateKey(first.id);
    keysSeen.push(first.key, next.key);
    expect(next).toMatchObject({ name: "rotating", rotatedFrom: first.id });
    expect(
      await within(1000, async () => (await models(rig, next.key)) === 200 && (await models(rig, first.key)) === 401),
    ).toBeLessThan(1000);
    await admin.setLimits(next.id, { dailyQuota: 3 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await models(rig, next.key));
    // The one request before the limit counts too.
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1);
    const refused = await rig.request({ path: "/v1/models", headers: { authorization: `Bearer ${next.key}` } });
    expect(refused.status).toBe(429);
    expect(refused.json.error.code).toBe("quota_exceeded");
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    await admin.setLimits(next.id, { dailyQuota: null });
    expect(await within(1000, async () => (await models(rig, next.key)) === 200)).toBeLessThan(1000);
  });

  it("a deploy (the declared file rewritten) never removes a runtime key, and a declared key revoked at runtime stays revoked", async () => {
    const runtime = await admin.createKey({ name: "survivor", scopes: ["llm"] });
    keysSeen.push(runtime.key);
    await admin.revokeKey(rig.keys.user.id);
    expect(await within(1000, async () => (await models(rig, rig.keys.user.key)) === 401)).toBeLessThan(1000);
    // What a deploy writes: the stack's apiKeys, here with the user key declared again, not revoked.
    const keysFile = path.join(rig.dir, "keys", "keys.json");
    const declared = [
      {
        id: rig.keys.admin.id,
        name: "admin",
        sha256: sha256Hex(rig.keys.admin.key),
        scopes: ["admin"],
        created: "2026-12-01T00:00:00Z",
      },
      {
        id: rig.keys.user.id,
        name: "user",
        sha256: sha256Hex(rig.keys.user.key),
        scopes: ["llm"],
        created: "2026-12-01T00:00:00Z",
      },
    ];
    writeFileSync(`${keysFile}.tmp`, JSON.stringify({ version: 1, keys: declared }));
    const { renameSync } = await import("node:fs");
    renameSync(`${keysFile}.tmp`, keysFile);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await models(rig, runtime.key)).toBe(200);
    expect(await models(rig, rig.keys.user.key)).toBe(401);
  });

  it("status reports each backend (one down), the controller, the keys and the URL", async () => {
    const status = await rig.withStandInDown("stt", async () => {
      return admin.status();
    });
    const backends = status.backends as { service: string; up: boolean }[];
    expect(status.gateway).toMatchObject({ reachable: true });
    expect(backends.find((b) => b.service === "stt")?.up).toBe(false);
    expect(backends.find((b) => b.service === "coder-fallback")?.up).toBe(true);
    expect(backends.find((b) => b.service === "tts")?.up).toBe(true);
    expect(status.gpu).toMatchObject({ deployed: 0, ready: 0 });
    // The rig runs the controller whenever the stack does (advice mode).
    expect(status.controller).toMatchObject({ runs: true, reachable: true, mode: "advice" });
    expect(status.keys).toMatchObject({ store: "postgresql", declared: 2 });
    expect(status.url).toBe(`${rig.baseUrl}/v1`);
    expect(status.tier).toBe("hybrid");
  });

  it("no key appears in any answer but its create, in any log line, audit row or the key table", async () => {
    const client = new Client({ connectionString: rig.databaseUrl });
    client.on("error", () => undefined);
    await client.connect();
    const table = JSON.stringify((await client.query("SELECT * FROM gatekeeper.api_keys")).rows);
    await client.end();
    const audit = JSON.stringify(await rig.auditRows());
    const logs = rig.gatekeeper.text() + rig.traefik.text() + JSON.stringify(rig.accessLog());
    expect(keysSeen.length).toBeGreaterThan(4);
    for (const key of keysSeen) {
      const creates = responses.filter((r) => r.includes(key));
      expect(creates).toHaveLength(1);
      for (const place of [table, audit, logs]) expect(place.includes(key)).toBe(false);
      // Nor its hash in any answer.
      expect(responses.some((r) => r.includes(sha256Hex(key)))).toBe(false);
    }
  });
});

describe.skipIf(Boolean(missing))("runtime keys without a database: the gatekeeper's state directory", () => {
  let rig: GatewayRig;
  let admin: AdminClient;
  beforeAll(async () => {
    rig = await GatewayRig.start({ keys: { admin: { scopes: ["admin"] } }, database: false });
    admin = new AdminClient(`${rig.baseUrl}/v1`, rig.keys.admin.key);
  }, 120_000);
  afterAll(async () => rig?.stop());

  it("create and revoke take effect within a second, and runtime keys survive a restart", async () => {
    const kept = await admin.createKey({ name: "kept", scopes: ["llm"] });
    const revoked = await admin.createKey({ name: "gone", scopes: ["llm"] });
    expect(await within(1000, async () => (await models(rig, kept.key)) === 200)).toBeLessThan(1000);
    await admin.revokeKey(revoked.id);
    expect(await within(1000, async () => (await models(rig, revoked.key)) === 401)).toBeLessThan(1000);
    expect((await admin.listKeys()).store).toBe("file");
    await rig.stopGatekeeper();
    await rig.startGatekeeper();
    expect(await models(rig, kept.key)).toBe(200);
    expect(await models(rig, revoked.key)).toBe(401);
  });
});
