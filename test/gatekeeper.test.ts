import { builtinModules } from "node:module";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { bundleGatekeeper } from "../programs/gatekeeper/bundle";
import { GatekeeperConfigError, readGatekeeperConfig } from "../programs/gatekeeper/config";
import { MAX_CREDENTIAL_HEADER_CHARS, presentedCredential } from "../programs/gatekeeper/credentials";
import type { DecisionRecord } from "../programs/gatekeeper/decision";
import { KeysFileError, KeyStore, newApiKey, parseKeysFile, sha256Hex } from "../programs/gatekeeper/keys";
import { silentLogger } from "../programs/gatekeeper/log";
import { applyMigrations, MIGRATIONS } from "../programs/gatekeeper/migrations";
import { RateLimiter } from "../programs/gatekeeper/rate-limit";
import { startGatekeeper } from "../programs/gatekeeper/server";
import { parseDecisionLine, segmentFileName, Spool } from "../programs/gatekeeper/spool";
import {
  ALL_KEYS,
  alice,
  auth,
  BACKEND_KEY,
  bearer,
  bob,
  bundledGatekeeper,
  capturingLogger,
  carol,
  childEnv,
  dora,
  erin,
  childFixture,
  expectExactlyOnce,
  expectOpenAiError,
  get,
  keysFileText,
  makeKey,
  olga,
  rawAuth,
  type Reply,
  removeBundle,
  requestStream,
  scratch,
  sleep,
  spawnGatekeeper,
  spoolRecords,
  spoolText,
  startInProcess,
  testConfig,
  waitFor,
  waitHealthy,
  writeKeys,
} from "./helpers/gatekeeper";
import { findPostgres, freeLoopbackPort, POSTGRES_MISSING_REASON, PostgresCluster } from "./helpers/postgres";

afterAll(removeBundle);

// ---- keys file, key generation, credentials, rate limit (no server) -----------------------------

describe("keys file and API keys", () => {
  it("parses a valid keys file", () => {
    const file = parseKeysFile(keysFileText(ALL_KEYS));
    expect(file.keys.map((k) => k.id)).toEqual(ALL_KEYS.map((k) => k.entry.id));
    expect(file.keys[2]).toMatchObject({ ratePerMinute: 60, burst: 3 });
  });

  it("reports every problem at once, with paths", () => {
    const bad = {
      version: 1,
      keys: [
        { ...alice.entry, sha256: "xyz", scopes: ["llm", "video"] },
        { ...olga.entry, id: alice.entry.id, created: "yesterday", extra: 1 },
        { id: "k_abcd1234", name: "", sha256: olga.entry.sha256, scopes: [] },
      ],
    };
    let error: unknown;
    try {
      parseKeysFile(JSON.stringify(bad));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KeysFileError);
    const problems = (error as KeysFileError).problems.join("\n");
    for (const expected of [
      "keys[0].sha256",
      "keys[0].scopes[1]",
      "keys[1].created",
      "keys[1]",
      "keys[2].name",
      "keys[2].scopes",
      "keys[2].created",
      "keys[1].id: duplicates keys[0].id",
      "keys[2].sha256: duplicates keys[1].sha256",
    ]) {
      expect(problems).toContain(expected);
    }
    expect((error as KeysFileError).problems.length).toBeGreaterThanOrEqual(8);
    expect(() => parseKeysFile("{ not json")).toThrow(/not valid JSON/);
    expect(() => parseKeysFile(JSON.stringify({ version: 2, keys: [] }))).toThrow(/version/);
  });

  it("generates high-entropy prefixed keys with unrelated short ids, storing only the hash", () => {
    const keys = Array.from({ length: 500 }, () => newApiKey());
    for (const k of keys) {
      expect(k.key).toMatch(/^ihk_[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
      expect(k.id).toMatch(/^k_[a-z0-9]{8}$/);
      expect(k.sha256).toBe(sha256Hex(k.key));
      expect(k.key).not.toContain(k.id.slice(2));
    }
    expect(new Set(keys.map((k) => k.key)).size).toBe(500);
    expect(new Set(keys.map((k) => k.id)).size).toBe(500);
  });

  it("finds a key by its digest only", () => {
    const store = new KeyStore(parseKeysFile(keysFileText(ALL_KEYS)));
    expect(store.find(alice.key)?.id).toBe(alice.entry.id);
    expect(store.find(bob.key)?.revoked).toBe(true);
    expect(store.find(`${alice.key.slice(0, -1)}x`)).toBeUndefined();
    // Upper-case hex in the file is the same digest.
    const upper = new KeyStore(
      parseKeysFile(keysFileText([{ ...alice, entry: { ...alice.entry, sha256: alice.entry.sha256.toUpperCase() } }])),
    );
    expect(upper.find(alice.key)?.id).toBe(alice.entry.id);
  });
});

describe("presented credentials", () => {
  const k = alice.key;
  const cases: [string, Record<string, string[]>, string][] = [
    ["Bearer", { authorization: [`Bearer ${k}`] }, "key"],
    ["lower-case bearer", { authorization: [`bearer ${k}`] }, "key"],
    ["upper-case BEARER, extra spaces and a tab", { authorization: [`BEARER \t  ${k}  `] }, "key"],
    ["x-api-key", { "x-api-key": [k] }, "key"],
    ["x-api-key with whitespace", { "x-api-key": [`  ${k}\t`] }, "key"],
    ["both headers, same key", { authorization: [`Bearer ${k}`], "x-api-key": [k] }, "key"],
    ["both headers, different keys", { authorization: [`Bearer ${k}`], "x-api-key": [olga.key] }, "conflicting_keys"],
    ["Authorization twice, different", { authorization: [`Bearer ${k}`, `Bearer ${olga.key}`] }, "conflicting_keys"],
    ["Authorization twice, same", { authorization: [`Bearer ${k}`, `Bearer ${k}`] }, "key"],
    ["nothing", {}, "missing_key"],
    ["empty headers", { authorization: [" "], "x-api-key": [""] }, "missing_key"],
    ["Bearer without a key", { authorization: ["Bearer"] }, "malformed_key"],
    ["Basic scheme", { authorization: [`Basic ${Buffer.from(`u:${k}`).toString("base64")}`] }, "malformed_key"],
    ["two tokens", { authorization: [`Bearer ${k} extra`] }, "malformed_key"],
    [
      "OpenAI-style sk- key",
      { authorization: ["Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"] },
      "malformed_key",
    ],
    ["short ihk_ key", { "x-api-key": ["ihk_short"] }, "malformed_key"],
    ["non-ASCII", { "x-api-key": [`${k.slice(0, -1)}é`] }, "malformed_key"],
    ["oversized", { authorization: [`Bearer ihk_${"a".repeat(MAX_CREDENTIAL_HEADER_CHARS)}`] }, "oversized_credential"],
  ];
  it.each(cases)("%s", (_name, headers, expected) => {
    const credential = presentedCredential(headers);
    if (expected === "key") expect(credential).toEqual({ kind: "key", key: k });
    else expect(credential).toMatchObject({ kind: "problem", problem: expected });
  });
});

describe("token bucket", () => {
  it("allows the burst, then refills at the per-minute rate, per key and per scope", () => {
    const limiter = new RateLimiter();
    const limit = { ratePerMinute: 60, burst: 3 };
    const t0 = 1_000_000;
    expect([0, 1, 2].map(() => limiter.take("k_a", "llm", limit, t0).allowed)).toEqual([true, true, true]);
    expect(limiter.take("k_a", "llm", limit, t0)).toEqual({ allowed: false, retryAfterSeconds: 1 });
    // Another key, and the same key on another service, each have their own full bucket.
    expect(limiter.take("k_b", "llm", limit, t0).allowed).toBe(true);
    expect([0, 1, 2].map(() => limiter.take("k_a", "stt", limit, t0).allowed)).toEqual([true, true, true]);
    expect(limiter.take("k_a", "stt", limit, t0).allowed).toBe(false);
    expect(limiter.take("k_a", "llm", limit, t0 + 999).allowed).toBe(false);
    expect(limiter.take("k_a", "llm", limit, t0 + 2000).allowed).toBe(true);
    // A lowered burst takes effect at once.
    expect(limiter.take("k_b", "llm", { ratePerMinute: 60, burst: 1 }, t0 + 600_000).allowed).toBe(true);
    expect(limiter.take("k_b", "llm", { ratePerMinute: 60, burst: 1 }, t0 + 600_000).allowed).toBe(false);
    // A refunded token can be taken again; a refund never lifts the bucket above its burst.
    limiter.refund("k_b", "llm", { ratePerMinute: 60, burst: 1 });
    limiter.refund("k_b", "llm", { ratePerMinute: 60, burst: 1 });
    expect(limiter.take("k_b", "llm", { ratePerMinute: 60, burst: 1 }, t0 + 600_000).allowed).toBe(true);
    expect(limiter.take("k_b", "llm", { ratePerMinute: 60, burst: 1 }, t0 + 600_000).allowed).toBe(false);
    // Buckets of keys dropped from the file are forgotten: the key starts full if it comes back.
    limiter.retainOnly(["k_b"]);
    expect([0, 1, 2].map(() => limiter.take("k_a", "llm", limit, t0 + 2000).allowed)).toEqual([true, true, true]);
  });
});

describe("configuration", () => {
  it("reports every missing or bad variable at once, and fills defaults", () => {
    expect(() => readGatekeeperConfig({ GATEKEEPER_PORT: "http", DATABASE_URL: "mysql://x" })).toThrow(
      GatekeeperConfigError,
    );
    try {
      readGatekeeperConfig({ GATEKEEPER_PORT: "http", DATABASE_URL: "mysql://x" });
    } catch (e) {
      const text = (e as GatekeeperConfigError).problems.join("\n");
      for (const name of [
        "GATEKEEPER_PORT",
        "DATABASE_URL",
        "GATEKEEPER_BACKEND_KEY",
        "GATEKEEPER_KEYS_FILE",
        "GATEKEEPER_SPOOL_DIR",
      ])
        expect(text).toContain(name);
    }
    const config = readGatekeeperConfig({
      GATEKEEPER_KEYS_FILE: "/k/keys.json",
      GATEKEEPER_SPOOL_DIR: "/s",
      GATEKEEPER_BACKEND_KEY: "b",
    });
    expect(config).toMatchObject({
      port: 8080,
      defaultRatePerMinute: 120,
      defaultBurst: 30,
      databaseUrl: undefined,
      auditBatchRows: 500,
      auditBatchDelayMs: 200,
    });
  });
});

describe("spool", () => {
  it("reads past a thousand empty segments with one directory listing per batch, not one per segment", async () => {
    const dir = scratch("empty-segments");
    const line = `${JSON.stringify({ decision_id: "00000000-0000-4000-8000-000000000001", decided_at: "2026-11-26T10:00:00Z", request_id: "after-the-empties", key_id: null, scope: "llm", method: null, path: null, client_addr: null, allowed: false, reason: "missing_key", status: 401 })}\n`;
    for (let segment = 1; segment <= 1000; segment++)
      writeFileSync(path.join(dir, segmentFileName(segment)), segment === 1000 ? line : "");
    const spool = await Spool.open({
      dir,
      segmentBytes: 1 << 20,
      keepSegments: 100_000,
      retainUnshipped: true,
      log: silentLogger,
    });
    try {
      const listings = vi.spyOn(spool, "listSegments");
      const batch = await spool.readBatch({ segment: 1, offset: 0 }, 100);
      expect(batch.lines.map((l) => parseDecisionLine(l)?.request_id)).toEqual(["after-the-empties"]);
      expect(listings).toHaveBeenCalledTimes(1);
    } finally {
      await spool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([1, 4])(
    "with %i group commit(s) in flight, answers every append once it is on disk and keeps the file whole across rotations",
    async (commitsInFlight) => {
      const dir = scratch("commits");
      const record = (n: number): DecisionRecord => ({
        decision_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
        decided_at: new Date().toISOString(),
        request_id: `c${n}`,
        key_id: null,
        scope: "llm",
        method: null,
        path: null,
        client_addr: null,
        allowed: false,
        reason: "missing_key",
        status: 401,
      });
      const spool = await Spool.open({
        dir,
        segmentBytes: 16 * 1024,
        keepSegments: 1000,
        retainUnshipped: true,
        commitsInFlight,
        log: silentLogger,
      });
      try {
        const order: number[] = [];
        // Bursts of concurrent appends, as requests arrive: each resolves only once committed.
        for (let burst = 0; burst < 20; burst++) {
          await Promise.all(
            Array.from({ length: 50 }, (_, i) => burst * 50 + i).map((n) =>
              spool.append(record(n)).then(() => order.push(n)),
            ),
          );
        }
        expect(order.sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, n) => n));
        expect(spool.committedRecords).toBe(1000);
        expect(spool.currentSegment).toBeGreaterThanOrEqual(8);
        const batch = await spool.readBatch(await spool.shippingStart(), 5000);
        expect(batch.skippedLines).toBe(0);
        expect(batch.lines.map((l) => parseDecisionLine(l)?.request_id).sort()).toEqual(
          Array.from({ length: 1000 }, (_, n) => `c${n}`).sort(),
        );
        expect(batch.next).toEqual(spool.committed);
        await spool.close();
        // No holes, no torn lines: every segment is whole NDJSON.
        for (const file of readdirSync(dir)) {
          const text = readFileSync(path.join(dir, file), "utf8");
          expect(text.includes("\u0000"), file).toBe(false);
          expect(text === "" || text.endsWith("\n"), file).toBe(true);
        }
      } finally {
        await spool.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it("skips a torn last line left by a crash and resumes in a fresh segment", async () => {
    const dir = scratch("torn");
    const record = (n: number): DecisionRecord => ({
      decision_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
      decided_at: new Date().toISOString(),
      request_id: `r${n}`,
      key_id: null,
      scope: "llm",
      method: null,
      path: null,
      client_addr: null,
      allowed: false,
      reason: "missing_key",
      status: 401,
    });
    writeFileSync(
      path.join(dir, segmentFileName(7)),
      `${JSON.stringify(record(1))}\n${JSON.stringify(record(2))}\n${JSON.stringify(record(3)).slice(0, 40)}`,
    );
    const spool = await Spool.open({
      dir,
      segmentBytes: 1 << 20,
      keepSegments: 10,
      retainUnshipped: true,
      log: silentLogger,
    });
    expect(spool.currentSegment).toBe(8);
    await spool.append(record(4));
    const start = await spool.shippingStart();
    expect(start).toEqual({ segment: 7, offset: 0 });
    const batch = await spool.readBatch(start, 100);
    expect(batch.lines.map((l) => parseDecisionLine(l)?.request_id)).toEqual(["r1", "r2", "r4"]);
    expect(batch.skippedLines).toBe(1);
    expect(batch.next).toEqual(spool.committed);
    await spool.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

// ---- the HTTP server, spool only ------------------------------------------------------------------

describe("gatekeeper HTTP API (spool only)", () => {
  let gk: Awaited<ReturnType<typeof startInProcess>>;
  beforeAll(async () => {
    gk = await startInProcess("http");
  });
  afterAll(async () => {
    await gk.gatekeeper.close();
    rmSync(gk.dir, { recursive: true, force: true });
  });

  it("allows a valid key: backend key in Authorization and X-Api-Key, key id and request id", async () => {
    const reply = await auth(gk.port, {
      ...bearer(alice.key),
      "X-Request-Id": "req-valid-1",
      "X-Forwarded-For": "203.0.113.5, 10.0.0.1",
      "X-Forwarded-Method": "POST",
      "X-Forwarded-Uri": "/v1/chat/completions?api_key=leak",
    });
    expect(reply.status).toBe(200);
    expect(reply.headers.authorization).toBe(`Bearer ${BACKEND_KEY}`);
    expect(reply.headers["x-api-key"]).toBe(BACKEND_KEY);
    expect(reply.headers["x-hub-key-id"]).toBe(alice.entry.id);
    expect(reply.headers["x-request-id"]).toBe("req-valid-1");
    expect(reply.body).toBe("");
    expect(JSON.stringify(reply.headers)).not.toContain(alice.key);

    const record = spoolRecords(gk.config.spoolDir).find((r) => r.request_id === "req-valid-1");
    // The rightmost X-Forwarded-For entry: the one Traefik's forwardAuth appends from the connection (address-limit.ts).
    expect(record).toMatchObject({
      key_id: alice.entry.id,
      scope: "llm",
      method: "POST",
      path: "/v1/chat/completions",
      client_addr: "10.0.0.1",
      allowed: true,
      reason: "allowed",
      status: 200,
    });
    expect(record?.decision_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("generates a request id when the client sent none (or an unusable one)", async () => {
    const none = await auth(gk.port, bearer(alice.key));
    expect(none.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    const odd = await auth(gk.port, { ...bearer(alice.key), "X-Request-Id": "has spaces and ; quotes'" });
    expect(odd.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("refuses unknown, revoked, malformed, oversized and missing credentials with 401", async () => {
    const unknown = newApiKey().key;
    expectOpenAiError(await auth(gk.port, bearer(unknown)), 401, "invalid_api_key");
    expectOpenAiError(await auth(gk.port, bearer(bob.key)), 401, "invalid_api_key");
    expectOpenAiError(await auth(gk.port, bearer("sk-not-a-hub-key-0123456789abcdefghij")), 401, "invalid_api_key");
    expectOpenAiError(await auth(gk.port, bearer(`ihk_${"x".repeat(600)}`)), 401, "invalid_api_key");
    const missing = await auth(gk.port, {});
    expectOpenAiError(missing, 401, "missing_api_key");
    expect(missing.headers["www-authenticate"]).toContain("Bearer");

    const byReason = new Map(spoolRecords(gk.config.spoolDir).map((r) => [r.reason, r]));
    expect(byReason.get("unknown_key")?.key_id).toBeNull();
    expect(byReason.get("revoked_key")?.key_id).toBe(bob.entry.id);
    expect(byReason.get("malformed_key")?.status).toBe(401);
    expect(byReason.get("oversized_credential")?.status).toBe(401);
    expect(byReason.get("missing_key")?.allowed).toBe(false);
  });

  it("handles header edge cases on the wire", async () => {
    const ok = async (lines: string[]) => expect((await rawAuth(gk.port, lines)).status).toBe(200);
    const refused = async (lines: string[]) => expectOpenAiError(await rawAuth(gk.port, lines), 401, "invalid_api_key");
    await ok([`authorization: bearer ${alice.key}`]);
    await ok([`Authorization:    Bearer   ${alice.key}   `]);
    await ok([`X-API-KEY: ${alice.key}`]);
    await ok([`Authorization: Bearer ${alice.key}`, `x-api-key: ${alice.key}`]);
    await refused([`Authorization: Bearer ${alice.key}`, `x-api-key: ${olga.key}`]);
    await refused([`Authorization: Bearer ${alice.key}`, `Authorization: Bearer ${olga.key}`]);
    await refused([`x-api-key: ${alice.key.slice(0, -2)}\xe9\xe9`]);
    await refused([`Authorization: Token ${alice.key}`]);
    await refused([`Authorization: Bearer ${"A".repeat(MAX_CREDENTIAL_HEADER_CHARS + 1)}`]);
  });

  it("refuses a key without the route's scope with 403, and fails closed on an unknown scope", async () => {
    expectOpenAiError(await auth(gk.port, bearer(olga.key), "llm"), 403, "insufficient_scope");
    expect((await auth(gk.port, bearer(olga.key), "ocr")).status).toBe(200);
    expect((await auth(gk.port, bearer(alice.key), "stt")).status).toBe(200);
    expectOpenAiError(await auth(gk.port, bearer(alice.key), "tts"), 403, "insufficient_scope");
    expectOpenAiError(await auth(gk.port, bearer(alice.key), "admin"), 403, "insufficient_scope");
    // 503, never 500: at the door a 500 is Traefik's own (it could not ask the gatekeeper).
    expectOpenAiError(await auth(gk.port, bearer(alice.key), "video"), 503, "gatekeeper_misconfigured");
    expectOpenAiError(await get(gk.port, "/auth", bearer(alice.key)), 503, "gatekeeper_misconfigured");
    const records = spoolRecords(gk.config.spoolDir);
    expect(records.filter((r) => r.reason === "scope_denied").every((r) => r.status === 403 && r.key_id !== null)).toBe(
      true,
    );
    expect(records.find((r) => r.scope === "video")?.reason).toBe("bad_scope");
  });

  it("answers 429 with Retry-After once a key's bucket is empty, without touching other keys", async () => {
    const statuses: number[] = [];
    let limited: Reply | undefined;
    for (let i = 0; i < 5; i++) {
      const reply = await auth(gk.port, bearer(carol.key));
      statuses.push(reply.status);
      if (reply.status === 429) limited = reply;
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expectOpenAiError(limited as Reply, 429, "rate_limit_exceeded");
    expect(Number(limited?.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect((await auth(gk.port, bearer(alice.key))).status).toBe(200);
    expect(
      spoolRecords(gk.config.spoolDir).filter((r) => r.reason === "rate_limited" && r.key_id === carol.entry.id),
    ).toHaveLength(2);
  });

  it("gives a key its own budget on each service: exhausting one leaves the others whole", async () => {
    const llm: number[] = [];
    for (let i = 0; i < 4; i++) llm.push((await auth(gk.port, bearer(dora.key), "llm")).status);
    expect(llm).toEqual([200, 200, 200, 429]);
    const stt: number[] = [];
    for (let i = 0; i < 4; i++) stt.push((await auth(gk.port, bearer(dora.key), "stt")).status);
    expect(stt).toEqual([200, 200, 200, 429]);
    const limited = await auth(gk.port, bearer(dora.key), "stt");
    expectOpenAiError(limited, 429, "rate_limit_exceeded");
    expect(JSON.parse(limited.body).error.message).toContain("stt service");
    expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1);
  });

  it("nothing keyless, unknown, refused or malformed spends a real key's budget, whichever header carries the key", async () => {
    const stranger = newApiKey().key;
    const noise: Record<string, string>[] = [
      {},
      { Authorization: "Bearer" },
      bearer(stranger),
      { "X-Api-Key": stranger },
      bearer(bob.key),
      // erin's own key, but refused before any bucket: two different keys, or a scope she lacks.
      { ...bearer(erin.key), "X-Api-Key": olga.key },
      { Authorization: `Basic ${Buffer.from(`erin:${erin.key}`).toString("base64")}` },
    ];
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    try {
      for (let round = 0; round < 20; round++) {
        await Promise.all([
          ...noise.map((headers) => auth(gk.port, headers, "llm", agent)),
          auth(gk.port, { "X-Api-Key": erin.key }, "tts", agent),
          auth(gk.port, bearer(erin.key), "video", agent),
        ]);
      }
    } finally {
      agent.destroy();
    }
    // erin's full burst is still there, sent as X-Api-Key (docling's convention) or as Bearer.
    const statuses = [
      (await auth(gk.port, { "X-Api-Key": erin.key })).status,
      (await auth(gk.port, bearer(erin.key))).status,
      (await auth(gk.port, { "X-Api-Key": erin.key })).status,
      (await auth(gk.port, bearer(erin.key))).status,
    ];
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it("never writes a key, the backend key or a query string to the spool", async () => {
    const text = spoolText(gk.config.spoolDir);
    for (const k of ALL_KEYS) expect(text).not.toContain(k.key);
    expect(text).not.toContain(BACKEND_KEY);
    expect(text).not.toContain("api_key=leak");
  });

  it("reports health: keys loaded, spool writable, no database", async () => {
    const reply = await get(gk.port, "/healthz");
    expect(reply.status).toBe(200);
    const body = JSON.parse(reply.body) as {
      status: string;
      keys: { loaded: boolean; count: number };
      spool: { writable: boolean };
      database: { configured: boolean };
    };
    expect(body).toMatchObject({
      status: "ok",
      keys: { loaded: true, count: ALL_KEYS.length },
      spool: { writable: true },
      database: { configured: false },
    });
    expect((await get(gk.port, "/nope")).status).toBe(404);
  });
});

describe("key reload", () => {
  it("picks up a changed keys file under load without dropping a request; a bad file keeps the old keys", async () => {
    const { log, lines } = capturingLogger();
    const gk = await startInProcess("reload", {}, log);
    const dave = makeKey("dave, added later", ["llm"]);
    let stop = false;
    const aliceStatuses: number[] = [];
    let aliceErrors = 0;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const load = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (!stop) {
          try {
            aliceStatuses.push((await auth(gk.port, bearer(alice.key), "llm", agent)).status);
          } catch {
            aliceErrors += 1;
          }
        }
      }),
    );
    try {
      expect((await auth(gk.port, bearer(dave.key))).status).toBe(401);
      writeKeys(gk.config, [...ALL_KEYS, dave]);
      await waitFor(
        "dave's key to be accepted",
        async () => (await auth(gk.port, bearer(dave.key))).status === 200,
        5000,
      );

      // A non-atomic write of broken JSON: the previous keys stay in force and the problem is logged.
      writeFileSync(gk.config.keysFile, '{"version": 1, "keys": [ { "id": "k_broken"');
      await waitFor("the bad file to be noticed", () => gk.gatekeeper.keys.status().error !== null, 5000);
      expect((await auth(gk.port, bearer(dave.key))).status).toBe(200);
      expect(lines.some((l) => l.level === "error" && l.message.includes("previous keys stay in force"))).toBe(true);
      const health = JSON.parse((await get(gk.port, "/healthz")).body) as {
        status: string;
        keys: { error: string | null };
      };
      expect(health.status).toBe("ok");
      expect(health.keys.error).toContain("not valid JSON");

      writeKeys(gk.config, [...ALL_KEYS, { ...dave, entry: { ...dave.entry, revoked: true } }]);
      await waitFor(
        "dave's key to be revoked",
        async () => (await auth(gk.port, bearer(dave.key))).status === 401,
        5000,
      );
      await sleep(200);
    } finally {
      stop = true;
      await load;
      agent.destroy();
      await gk.gatekeeper.close();
      rmSync(gk.dir, { recursive: true, force: true });
    }
    expect(aliceErrors).toBe(0);
    expect(aliceStatuses.length).toBeGreaterThan(200);
    expect(aliceStatuses.every((s) => s === 200)).toBe(true);
  });
});

describe("keys file bad at startup", () => {
  it("fails closed (503, audited), reports unhealthy, and recovers once the file is fixed", async () => {
    const dir = scratch("nokeys");
    const config = testConfig(dir);
    mkdirSync(path.dirname(config.keysFile), { recursive: true });
    writeFileSync(config.keysFile, JSON.stringify({ version: 1, keys: [{ ...alice.entry, scopes: ["everything"] }] }));
    const gatekeeper = await startGatekeeper({ config, log: silentLogger, keysPollMs: 100 });
    const port = await gatekeeper.listen();
    try {
      expectOpenAiError(await auth(port, bearer(alice.key)), 503, "keys_unavailable");
      expect((await get(port, "/healthz")).status).toBe(503);
      expect(spoolRecords(config.spoolDir).map((r) => r.reason)).toEqual(["keys_unavailable"]);
      writeKeys(config, ALL_KEYS);
      await waitFor("the fixed keys file", async () => (await auth(port, bearer(alice.key))).status === 200, 5000);
      expect((await get(port, "/healthz")).status).toBe(200);
    } finally {
      await gatekeeper.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("spool retention", () => {
  it("without a database keeps the newest N segments; with one it never deletes unshipped segments", async () => {
    const unreachable = `postgresql://postgres@127.0.0.1:${await freeLoopbackPort()}/none`;
    for (const databaseUrl of [undefined, unreachable]) {
      const gk = await startInProcess("retention", { spoolSegmentBytes: 4096, spoolKeepSegments: 3, databaseUrl });
      try {
        for (let i = 0; i < 200; i++) expect((await auth(gk.port, bearer(alice.key))).status).toBe(200);
        const segments = readdirSync(gk.config.spoolDir).filter((f) => f.startsWith("decisions-"));
        if (databaseUrl === undefined) expect(segments.length).toBe(3);
        else {
          expect(segments.length).toBeGreaterThan(10);
          expect(spoolRecords(gk.config.spoolDir).length).toBe(200);
          // The database is down: reported, not fatal.
          const health = JSON.parse((await get(gk.port, "/healthz")).body) as {
            status: string;
            database: { configured: boolean; connected: boolean | null };
          };
          expect(health.status).toBe("ok");
          expect(health.database).toMatchObject({ configured: true, connected: false });
        }
      } finally {
        await gk.gatekeeper.close();
        rmSync(gk.dir, { recursive: true, force: true });
      }
    }
  });
});

// ---- the bundle -------------------------------------------------------------------------------

describe("bundle", () => {
  it("is one CommonJS file that needs only Node's built-in modules", () => {
    const text = readFileSync(bundledGatekeeper(), "utf8");
    const required = new Set([...text.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]));
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    // pg-native is required only inside a try block, for the `pg.native` getter this program never uses.
    expect([...required].filter((m) => !builtins.has(m))).toEqual(["pg-native"]);
    expect(text).not.toMatch(/readFileSync\([^)]*__dirname/);
  });

  it("is the same text whatever directory it is built from (no spurious diff for the deployment)", () => {
    const fromRepo = readFileSync(bundledGatekeeper(), "utf8");
    const cwd = process.cwd();
    process.chdir(tmpdir());
    try {
      expect(bundleGatekeeper() === fromRepo).toBe(true);
    } finally {
      process.chdir(cwd);
    }
    expect(fromRepo).not.toContain(path.resolve(__dirname, ".."));
  });

  it("starts with `node gatekeeper.js`, serves, and stops cleanly on SIGTERM", async () => {
    const { config, dir } = childFixture("bundle-run");
    const port = await freeLoopbackPort();
    const gk = spawnGatekeeper(childEnv(config, port));
    try {
      await waitHealthy(port, gk);
      expect((await auth(port, bearer(alice.key))).status).toBe(200);
      gk.child.kill("SIGTERM");
      expect(await gk.exited).toBe(0);
      expect(gk.output()).toContain("gatekeeper listening");
      expect(spoolRecords(config.spoolDir)).toHaveLength(1);
    } finally {
      gk.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to start without its settings, naming them", async () => {
    const gk = spawnGatekeeper({});
    expect(await gk.exited).toBe(2);
    expect(gk.output()).toContain("GATEKEEPER_BACKEND_KEY");
    expect(gk.output()).toContain("GATEKEEPER_SPOOL_DIR");
  });
});

// ---- PostgreSQL -------------------------------------------------------------------------------

const postgres = findPostgres();
if (!postgres) console.warn(`gatekeeper database tests skipped: ${POSTGRES_MISSING_REASON}`);

// In CI a missing server is a failure: the suite would otherwise silently lose its core checks.
it.runIf(!postgres && Boolean(process.env.CI))("PostgreSQL server binaries are installed (required in CI)", () => {
  expect.fail(POSTGRES_MISSING_REASON);
});

describe.skipIf(!postgres)(
  postgres ? "audit database (real PostgreSQL)" : `audit database (skipped: ${POSTGRES_MISSING_REASON})`,
  () => {
    let cluster: PostgresCluster;
    const clients: Client[] = [];
    const connect = async (url: string): Promise<Client> => {
      const client = new Client({ connectionString: url });
      client.on("error", () => undefined);
      await client.connect();
      clients.push(client);
      return client;
    };

    beforeAll(async () => {
      cluster = await PostgresCluster.create();
    });
    afterAll(async () => {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await cluster?.destroy();
    });

    it("migrations apply to an empty database, are idempotent, and serialise concurrent runs", async () => {
      const url = await cluster.createDatabase("migrations");
      const [a, b] = [await connect(url), await connect(url)];
      const [first, second] = await Promise.all([applyMigrations(a), applyMigrations(b)]);
      expect([...first.applied, ...second.applied].sort()).toEqual(MIGRATIONS.map((m) => m.version));
      const again = await applyMigrations(a);
      expect(again).toEqual({ applied: [], changedSinceApplied: [] });
      const versions = await a.query<{ version: number }>(
        "SELECT version FROM gatekeeper.schema_migrations ORDER BY version",
      );
      expect(versions.rows.map((r) => r.version)).toEqual([1, 2, 3, 4]);
      const views = await a.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.views WHERE table_schema = 'gatekeeper' ORDER BY 1",
      );
      expect(views.rows.map((r) => r.table_name)).toEqual([
        "denied_by_client",
        "denied_by_key",
        "top_keys",
        "usage_daily",
      ]);
      // A migration edited after it was applied is reported, not re-run.
      const edited = MIGRATIONS.map((m) => (m.version === 2 ? { ...m, sql: `${m.sql}\n-- edited` } : m));
      expect(await applyMigrations(a, edited)).toEqual({ applied: [], changedSinceApplied: [2] });
    });

    it("views count requests per key per service per day, denials per key and per client, and top keys", async () => {
      const client = await connect(await cluster.createDatabase("views"));
      await applyMigrations(client);
      let n = 0;
      const row = (
        keyId: string | null,
        scope: string,
        day: string,
        allowed: boolean,
        reason: string,
        client: string | null,
      ) => [
        `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`,
        `${day}T10:00:00Z`,
        `r${n}`,
        keyId,
        scope,
        "POST",
        "/v1/x",
        client,
        allowed,
        reason,
        allowed ? 200 : 401,
      ];
      const rows = [
        ...Array.from({ length: 3 }, () => row("k_alice", "llm", "2026-11-01", true, "allowed", "203.0.113.1")),
        row("k_alice", "stt", "2026-11-01", true, "allowed", "203.0.113.1"),
        ...Array.from({ length: 2 }, () => row("k_alice", "llm", "2026-11-02", true, "allowed", "203.0.113.2")),
        row("k_alice", "llm", "2026-11-02", false, "rate_limited", "203.0.113.2"),
        row("k_bob", "ocr", "2026-11-01", true, "allowed", "198.51.100.1"),
        ...Array.from({ length: 2 }, () => row("k_bob", "llm", "2026-11-01", false, "scope_denied", "198.51.100.1")),
        ...Array.from({ length: 4 }, () => row(null, "llm", "2026-11-02", false, "unknown_key", "192.0.2.66")),
        row(null, "tts", "2026-11-02", false, "missing_key", "192.0.2.67"),
      ];
      for (const values of rows) {
        await client.query(
          "INSERT INTO gatekeeper.decisions (decision_id, decided_at, request_id, key_id, scope, method, path, client_addr, allowed, reason, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
          values,
        );
      }
      const usage = await client.query(
        "SELECT key_id, service, day::text, requests::int, denied::int FROM gatekeeper.usage_daily ORDER BY key_id, day, service",
      );
      expect(usage.rows).toEqual([
        { key_id: "k_alice", service: "llm", day: "2026-11-01", requests: 3, denied: 0 },
        { key_id: "k_alice", service: "stt", day: "2026-11-01", requests: 1, denied: 0 },
        { key_id: "k_alice", service: "llm", day: "2026-11-02", requests: 2, denied: 1 },
        { key_id: "k_bob", service: "llm", day: "2026-11-01", requests: 0, denied: 2 },
        { key_id: "k_bob", service: "ocr", day: "2026-11-01", requests: 1, denied: 0 },
      ]);
      const byKey = await client.query(
        "SELECT key_id, denied::int, client_addresses::int FROM gatekeeper.denied_by_key ORDER BY key_id NULLS LAST",
      );
      expect(byKey.rows).toEqual([
        { key_id: "k_alice", denied: 1, client_addresses: 1 },
        { key_id: "k_bob", denied: 2, client_addresses: 1 },
        { key_id: null, denied: 5, client_addresses: 2 },
      ]);
      const byClient = await client.query(
        "SELECT client_addr, denied::int, without_known_key::int, keys_tried::int FROM gatekeeper.denied_by_client ORDER BY denied DESC, client_addr",
      );
      expect(byClient.rows).toEqual([
        { client_addr: "192.0.2.66", denied: 4, without_known_key: 4, keys_tried: 0 },
        { client_addr: "198.51.100.1", denied: 2, without_known_key: 0, keys_tried: 1 },
        { client_addr: "192.0.2.67", denied: 1, without_known_key: 1, keys_tried: 0 },
        { client_addr: "203.0.113.2", denied: 1, without_known_key: 0, keys_tried: 1 },
      ]);
      const top = await client.query("SELECT rank::int, key_id, requests::int FROM gatekeeper.top_keys ORDER BY rank");
      expect(top.rows).toEqual([
        { rank: 1, key_id: "k_alice", requests: 6 },
        { rank: 2, key_id: "k_bob", requests: 1 },
      ]);
    });

    it("sets aside a row the database refuses and ships the rows around it", async () => {
      const url = await cluster.createDatabase("poison");
      const dir = scratch("poison");
      const config = testConfig(dir, { databaseUrl: url });
      mkdirSync(path.dirname(config.keysFile), { recursive: true });
      mkdirSync(config.spoolDir, { recursive: true });
      writeKeys(config, ALL_KEYS);
      const line = (n: number, decidedAt: string) =>
        JSON.stringify({
          decision_id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
          decided_at: decidedAt,
          request_id: `poison-${n}`,
          key_id: null,
          scope: "llm",
          method: null,
          path: null,
          client_addr: null,
          allowed: false,
          reason: "missing_key",
          status: 401,
        });
      // A line only a corrupted or foreign writer could produce: valid JSON, impossible timestamp.
      writeFileSync(
        path.join(config.spoolDir, segmentFileName(1)),
        `${line(1, "2026-11-26T10:00:00Z")}\n${line(2, "2026-13-45T99:00:00Z")}\n${line(3, "2026-11-26T10:00:01Z")}\n`,
      );
      const gatekeeper = await startGatekeeper({ config, log: silentLogger });
      try {
        const client = await connect(url);
        await waitFor("the good rows", async () => {
          const { rows } = await client
            .query<{ request_id: string }>("SELECT request_id FROM gatekeeper.decisions ORDER BY request_id")
            .catch(() => ({ rows: [] as { request_id: string }[] }));
          return rows.length === 2 && rows.map((r) => r.request_id).join() === "poison-1,poison-3";
        });
        const rejected = readFileSync(path.join(config.spoolDir, "rejected.ndjson"), "utf8").trim().split("\n");
        expect(rejected).toHaveLength(1);
        expect(rejected[0]).toContain("poison-2");
        expect(gatekeeper.shipper?.status().quarantinedRows).toBe(1);
      } finally {
        await gatekeeper.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("FAULT: PostgreSQL stops mid-stream and comes back; every decision lands exactly once and no request is refused", async () => {
      const url = await cluster.createDatabase("db_outage");
      const gk = await startInProcess("db-outage", { databaseUrl: url });
      try {
        await waitFor("migrations", () => gk.gatekeeper.shipper?.status().migrated === true);
        let done = false;
        const stream = requestStream({
          port: () => gk.port,
          key: alice.key,
          prefix: "outage",
          concurrency: 8,
          until: () => done,
        });
        await sleep(400);
        await cluster.stop("immediate");
        const committedAtOutage = gk.gatekeeper.spool.committedRecords;
        await sleep(1200);
        const health = JSON.parse((await get(gk.port, "/healthz")).body) as {
          status: string;
          database: { connected: boolean | null };
          spool: { unshippedBytes: number };
        };
        expect(health.status).toBe("ok");
        expect(health.database.connected).toBe(false);
        expect(health.spool.unshippedBytes).toBeGreaterThan(0);
        // Decisions kept being made and answered while the database was down.
        expect(gk.gatekeeper.spool.committedRecords - committedAtOutage).toBeGreaterThan(20);
        await cluster.start();
        await sleep(400);
        done = true;
        const result = await stream;
        expect(result.connectionFailures).toEqual([]);
        expect([...result.answered.values()].every((s) => s === 200)).toBe(true);
        expect(result.answered.size).toBeGreaterThan(200);
        const fresh = await connect(url);
        await expectExactlyOnce(fresh, "outage", result.answered, result.sent);
        expect(gk.gatekeeper.shipper?.status().connected).toBe(true);
      } finally {
        await gk.gatekeeper.close();
        rmSync(gk.dir, { recursive: true, force: true });
      }
    });

    it("FAULT: the gatekeeper is SIGKILLed mid-stream and restarted; every answered decision lands exactly once, and a replay from an old checkpoint adds nothing", async () => {
      const url = await cluster.createDatabase("killed");
      const { config, dir } = childFixture("killed");
      const port = await freeLoopbackPort();
      const env = childEnv(config, port, url);
      let gk = spawnGatekeeper(env);
      try {
        await waitHealthy(port, gk);
        let done = false;
        const stream = requestStream({
          port: () => port,
          key: alice.key,
          prefix: "killed",
          concurrency: 8,
          until: () => done,
        });
        await sleep(600);
        gk.child.kill("SIGKILL");
        await gk.exited;
        gk = spawnGatekeeper(env);
        await waitHealthy(port, gk);
        await sleep(600);
        done = true;
        const result = await stream;
        // Requests cut off by the kill got no answer; every answer given was a yes.
        expect([...result.answered.values()].every((s) => s === 200)).toBe(true);
        expect(result.answered.size).toBeGreaterThan(200);
        const client = await connect(url);
        await expectExactlyOnce(client, "killed", result.answered, result.sent);
        const count = async () =>
          Number((await client.query<{ n: string }>("SELECT count(*) AS n FROM gatekeeper.decisions")).rows[0].n);
        const rowsBefore = await count();

        // Replay everything: as if every batch had been inserted but no checkpoint saved.
        gk.child.kill("SIGTERM");
        expect(await gk.exited).toBe(0);
        rmSync(path.join(config.spoolDir, "shipped.json"));
        gk = spawnGatekeeper(env);
        await waitHealthy(port, gk);
        await waitFor("the replay to finish", async () => {
          const health = JSON.parse((await get(port, "/healthz")).body) as { spool: { unshippedBytes: number } };
          return health.spool.unshippedBytes === 0;
        });
        expect(await count()).toBe(rowsBefore);
        expect(spoolRecords(config.spoolDir).length).toBe(rowsBefore);
      } finally {
        gk.child.kill("SIGKILL");
        await gk.exited;
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
