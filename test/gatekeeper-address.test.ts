import { mkdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import * as fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { startGatekeeper } from "../programs/gatekeeper/server";
import {
  AddressLimiter,
  addressKey,
  clientAddress,
  forwardedClientAddress,
} from "../programs/gatekeeper/address-limit";
import { readGatekeeperConfig } from "../programs/gatekeeper/config";
import { metricsCallerAllowed } from "../programs/gatekeeper/metrics";
import { gatekeeperSpec } from "../services/auth";
import { IP_RATE_LIMIT_MIDDLEWARE, traefikDynamicConfig } from "../services/gateway";
import { routeTable } from "../services/routes";
import { SETTINGS } from "../stacks/settings";
import { mustLoad } from "./helpers/load";
import {
  ALL_KEYS,
  alice,
  auth,
  bearer,
  capturingLogger,
  carol,
  defaultLog,
  expectOpenAiError,
  get,
  scratch,
  spoolRecords,
  startInProcess,
  testConfig,
  waitFor,
  writeKeys,
} from "./helpers/gatekeeper";
import { parsePrometheus, type PrometheusFamily } from "./helpers/prometheus-text";

/** The per-address limit and /metrics of the gatekeeper (programs/gatekeeper/address-limit.ts, metrics.ts). */

describe("the address table", () => {
  const limit = { ratePerMinute: 60, burst: 3, maxAddresses: 3 };

  it("gives each address its burst, then one token a second, with the wait to the next token as Retry-After", () => {
    const table = new AddressLimiter(limit);
    const takes = [0, 0, 0, 0].map(() => table.take("203.0.113.1", 1000));
    expect(takes.map((t) => t.allowed)).toEqual([true, true, true, false]);
    expect(takes[3]).toMatchObject({ allowed: false, retryAfterSeconds: 1, startedLimiting: true });
    // Still refused: logged once per spell, not per request.
    expect(table.take("203.0.113.1", 1500)).toMatchObject({ allowed: false, startedLimiting: false });
    expect(table.take("203.0.113.1", 2000).allowed).toBe(true);
    // Another address has its own bucket.
    expect(table.take("203.0.113.2", 2000).allowed).toBe(true);
  });

  it("under sustained overload, an address changes state twice (over its limit, back under it), not once per allowed request", () => {
    const table = new AddressLimiter(limit);
    // 20 requests a second for a minute against one a second: about 60 pass, between refusals.
    const outcomes = Array.from({ length: 1200 }, (_, i) => table.take("203.0.113.9", 10_000 + i * 50));
    expect(outcomes.filter((o) => o.allowed).length).toBeGreaterThan(55);
    expect(outcomes.filter((o) => !o.allowed && o.startedLimiting)).toHaveLength(1);
    expect(outcomes.filter((o) => o.allowed && o.endedLimiting)).toHaveLength(0);
    // A quiet minute, and the next request ends the spell, saying how many were refused in it.
    const back = table.take("203.0.113.9", 10_000 + 1200 * 50 + 61_000);
    expect(back).toMatchObject({
      allowed: true,
      endedLimiting: { refused: outcomes.filter((o) => !o.allowed).length },
    });
  });

  it("holds at most maxAddresses and evicts the least recently seen one, which returns with a full burst", () => {
    const table = new AddressLimiter(limit);
    for (let i = 0; i < 3; i++) table.take("a", 0);
    expect(table.take("a", 0).allowed).toBe(false);
    table.take("b", 0);
    table.take("c", 0);
    // Seen in the order a, b, c; touching "a" again makes "b" the least recently seen.
    table.take("a", 0);
    table.take("d", 0);
    expect(table.size).toBe(3);
    expect(table.has("b")).toBe(false);
    expect(table.has("a")).toBe(true);
    expect(table.evictions).toBe(1);
    for (let i = 0; i < 10_000; i++) table.take(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(table.size).toBe(3);
    // "a" is long evicted: a fresh burst.
    expect(table.take("a", 0).allowed).toBe(true);
  });

  it("counts IPv6 clients per /64 and IPv4-mapped IPv6 as the IPv4 address", () => {
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe(addressKey("2001:db8:1:2:ffff:ffff:ffff:ffff"));
    expect(addressKey("2001:db8:1:2::1")).not.toBe(addressKey("2001:db8:1:3::1"));
    expect(clientAddress(undefined, "::ffff:198.51.100.7")).toBe("198.51.100.7");
    expect(addressKey("198.51.100.7")).toBe("198.51.100.7");
  });

  it("takes the rightmost X-Forwarded-For entry (the one Traefik set from the connection), else the socket", () => {
    expect(forwardedClientAddress("198.51.100.1, 203.0.113.5")).toBe("203.0.113.5");
    expect(forwardedClientAddress(["10.9.9.9", "198.51.100.1,203.0.113.5"])).toBe("203.0.113.5");
    expect(forwardedClientAddress("not-an-address")).toBeUndefined();
    expect(clientAddress("garbage", "127.0.0.1")).toBe("127.0.0.1");
    expect(clientAddress(undefined, undefined)).toBeNull();
  });
});

describe("the gatekeeper's environment for the address limit", () => {
  const base = { GATEKEEPER_KEYS_FILE: "/k", GATEKEEPER_SPOOL_DIR: "/s", GATEKEEPER_BACKEND_KEY: "b" };

  it("is the gateway's per-address limit (Traefik applies the same on the routers that never ask the gatekeeper), read from the X-Forwarded-For forwardAuth sets", () => {
    const hub = mustLoad({ tier: "cpu", rateLimitPerMinute: 90, rateLimitBurst: 7 });
    const config = readGatekeeperConfig({ ...base, ...gatekeeperSpec(hub).env });
    // What the rendered Traefik file limits each address to on unknown paths and gRPC (its average is per minute: period 1m).
    const traefik = (
      traefikDynamicConfig(hub, routeTable(hub), {}) as {
        http: { middlewares: Record<string, { rateLimit: { average: number; burst: number; period: string } }> };
      }
    ).http.middlewares[IP_RATE_LIMIT_MIDDLEWARE].rateLimit;
    expect(traefik.period).toBe("1m");
    expect([config.addressRatePerMinute, config.addressBurst]).toEqual([traefik.average, traefik.burst]);
    expect([config.addressRatePerMinute, config.addressBurst]).toEqual([900, 70]);
    // forwardAuth calls the gatekeeper directly: the rightmost entry is the client's own.
    expect(config.forwardedHops).toBe(0);
    expect(config.addressTableSize).toBe(65_536);
  });

  it("is accepted by the gatekeeper for every rateLimitPerMinute and rateLimitBurst the settings schema takes", () => {
    // The range is the schema's own: 100000 once rendered GATEKEEPER_ADDRESS_RATE_PER_MINUTE=2000000, refused at start.
    const range = (name: "rateLimitPerMinute" | "rateLimitBurst") => ({
      min: SETTINGS[name].schema.minValue!,
      max: SETTINGS[name].schema.maxValue!,
    });
    const rate = range("rateLimitPerMinute");
    const burst = range("rateLimitBurst");
    expect(rate.max).toBeGreaterThan(rate.min);
    const accepted = (rateLimitPerMinute: number, rateLimitBurst: number) => {
      const env = gatekeeperSpec(mustLoad({ tier: "cpu", rateLimitPerMinute, rateLimitBurst })).env;
      expect(() => readGatekeeperConfig({ ...base, ...env }), JSON.stringify(env)).not.toThrow();
    };
    for (const r of [rate.min, rate.max]) for (const b of [burst.min, burst.max]) accepted(r, b);
    fc.assert(
      fc.property(fc.integer(rate), fc.integer(burst), (r, b) => accepted(r, b)),
      { numRuns: 60 },
    );
  });

  it("refuses bad values, naming the variable and what would work", () => {
    expect(() =>
      readGatekeeperConfig({
        ...base,
        GATEKEEPER_ADDRESS_BURST: "0",
        GATEKEEPER_ADDRESS_TABLE_SIZE: "lots",
        GATEKEEPER_ADDRESS_RATE_PER_MINUTE: "-5",
      }),
    ).toThrow(
      /GATEKEEPER_ADDRESS_RATE_PER_MINUTE=-5 is not valid; use a positive number[\s\S]*GATEKEEPER_ADDRESS_BURST=0 is not valid; use a whole number from 1[\s\S]*GATEKEEPER_ADDRESS_TABLE_SIZE=lots is not valid/,
    );
  });
});

describe("the running gatekeeper: address limit and /metrics", () => {
  const dirs: string[] = [];
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(stops.splice(0).map((s) => s()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const start = async (overrides: Parameters<typeof startInProcess>[1] = {}) => {
    const started = await startInProcess("address", overrides);
    dirs.push(started.dir);
    stops.push(() => started.gatekeeper.close());
    return started;
  };
  const scrape = async (port: number): Promise<PrometheusFamily[]> => {
    const reply = await get(port, "/metrics");
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    return parsePrometheus(reply.body);
  };
  const requests = (families: PrometheusFamily[], labels: Record<string, string>): number =>
    families
      .find((f) => f.name === "hub_gatekeeper_requests_total")
      ?.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
      .reduce((n, m) => n + Number(m.value), 0) ?? 0;

  it("refuses an address over its burst with an OpenAI 429 and Retry-After, before any key: the key's budget and the spool are untouched", async () => {
    const { port, config } = await start({ addressRatePerMinute: 60, addressBurst: 5 });
    const from = { "X-Forwarded-For": "203.0.113.20" };
    // carol's own budget is 3: the first three pass, the next two are carol's 429s (spooled), then the address is spent.
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await auth(port, { ...from, ...bearer(carol.key) })).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429, 429]);
    const refused = await auth(port, { ...from, ...bearer(alice.key) });
    expectOpenAiError(refused, 429, "rate_limit_exceeded");
    expect(JSON.parse(refused.body).error.message).toContain("client address");
    expect(Number(refused.headers["retry-after"])).toBe(1);
    // The same key from another address passes: the address refusals took nothing from alice.
    expect((await auth(port, { "X-Forwarded-For": "203.0.113.21", ...bearer(alice.key) })).status).toBe(200);
    await waitFor("the spool to hold the decisions", () => spoolRecords(config.spoolDir).length >= 6);
    const records = spoolRecords(config.spoolDir);
    // Five decisions about a key from .20 (3 allowed, 2 carol's 429) and one from .21; none for the address refusals.
    expect(records.filter((r) => r.client_addr === "203.0.113.20").map((r) => r.reason)).toEqual([
      "allowed",
      "allowed",
      "allowed",
      "rate_limited",
      "rate_limited",
    ]);
    expect(records.some((r) => r.reason === "address_rate_limited")).toBe(false);
    const families = await scrape(port);
    expect(requests(families, { outcome: "address_rate_limited", key_id: "none", scope: "llm" })).toBe(3);
    expect(requests(families, { outcome: "rate_limited", key_id: carol.entry.id })).toBe(2);
  });

  it("logs an address going over its limit once per spell, however long the overload lasts", async () => {
    let clock = Date.parse("2026-12-10T10:00:00Z");
    const { log, lines } = capturingLogger();
    const dir = scratch("address-log");
    dirs.push(dir);
    const config = testConfig(dir, { addressRatePerMinute: 60, addressBurst: 5 });
    mkdirSync(path.dirname(config.keysFile), { recursive: true });
    writeKeys(config, ALL_KEYS);
    const gatekeeper = await startGatekeeper({ config, log, keysPollMs: 100, now: () => clock });
    stops.push(() => gatekeeper.close());
    const port = await gatekeeper.listen();
    const from = { "X-Forwarded-For": "203.0.113.30" };
    // 20 requests a second for a minute, keyless (the address limit comes before any key).
    for (let i = 0; i < 1200; i++) {
      await auth(port, from);
      clock += 50;
    }
    const over = lines.filter((l) => /over its limit/.test(l.message));
    expect(over).toHaveLength(1);
    clock += 61_000;
    await auth(port, from);
    const back = lines.filter((l) => /back under its limit/.test(l.message));
    expect(back).toHaveLength(1);
    expect(back[0].fields).toMatchObject({ client_addr: "203.0.113.30", refused: expect.any(Number) });
  }, 60_000);

  it("serves the contract's metric names and labels, with bounded label values, to loopback only and never to a proxied request", async () => {
    const { port } = await start();
    await auth(port, bearer(alice.key));
    await auth(port, bearer(alice.key), "tts");
    await auth(port, { Authorization: `Bearer ihk_${"z".repeat(43)}` });
    await auth(port, bearer(alice.key), "made-up-scope");
    await auth(port, {});
    const families = await scrape(port);
    expect(
      Object.fromEntries(families.filter((f) => f.name.startsWith("hub_gatekeeper_")).map((f) => [f.name, f.type])),
    ).toEqual({
      hub_gatekeeper_requests_total: "COUNTER",
      hub_gatekeeper_decision_duration_seconds: "HISTOGRAM",
      hub_gatekeeper_spool_pending_records: "GAUGE",
      hub_gatekeeper_spool_oldest_pending_age_seconds: "GAUGE",
      hub_gatekeeper_ship_failures_total: "COUNTER",
      hub_gatekeeper_disk_full: "GAUGE",
    });
    expect(requests(families, { scope: "llm", key_id: alice.entry.id, outcome: "allowed" })).toBe(1);
    // alice has no tts scope.
    expect(requests(families, { scope: "tts", key_id: alice.entry.id, outcome: "forbidden" })).toBe(1);
    // An unknown key and no key: key_id "none"; an unknown scope: scope "none", outcome unavailable (the gatekeeper's 503).
    expect(requests(families, { scope: "llm", key_id: "none", outcome: "unauthorized" })).toBe(2);
    expect(requests(families, { scope: "none", key_id: "none", outcome: "unavailable" })).toBe(1);
    const series = families.find((f) => f.name === "hub_gatekeeper_requests_total")!.metrics;
    expect(series.every((m) => Object.keys(m.labels!).sort().join() === "key_id,outcome,scope")).toBe(true);
    expect(JSON.stringify(series)).not.toContain("made-up-scope");
    expect(Number(families.find((f) => f.name === "hub_gatekeeper_disk_full")!.metrics[0].value)).toBe(0);
    // Without a database nothing is pending.
    expect(Number(families.find((f) => f.name === "hub_gatekeeper_spool_pending_records")!.metrics[0].value)).toBe(0);
    for (const headers of [
      { "X-Forwarded-For": "127.0.0.1" },
      { "X-Forwarded-Host": "hub.example.com" },
      { Forwarded: "for=127.0.0.1" },
    ] as Record<string, string>[]) {
      expect((await get(port, "/metrics", headers)).status, JSON.stringify(headers)).toBe(403);
    }
  });

  it("lets only loopback and private networks read /metrics", () => {
    for (const ok of ["127.0.0.1", "::1", "10.116.0.3", "172.18.0.4", "192.168.1.9", "::ffff:172.18.0.4", "fd00::5"])
      expect(metricsCallerAllowed(ok, {}), ok).toBe(true);
    for (const no of ["203.0.113.5", "8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8", undefined, "garbage"])
      expect(metricsCallerAllowed(no, {}), String(no)).toBe(false);
  });

  it("with the database away: pending decisions, their age and the failed attempts, and after a restart the backlog it left", async () => {
    // Nothing listens on port 1: every connection is refused at once.
    const { port, config, gatekeeper } = await start({ databaseUrl: "postgres://hub@127.0.0.1:1/audit" });
    for (let i = 0; i < 4; i++) expect((await auth(port, bearer(alice.key))).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1200));
    const gauge = (families: PrometheusFamily[], name: string) =>
      Number(families.find((f) => f.name === name)!.metrics[0].value);
    const during = await scrape(port);
    expect(gauge(during, "hub_gatekeeper_spool_pending_records")).toBe(4);
    expect(gauge(during, "hub_gatekeeper_spool_oldest_pending_age_seconds")).toBeGreaterThan(1);
    expect(gauge(during, "hub_gatekeeper_ship_failures_total")).toBeGreaterThan(0);
    await gatekeeper.close();
    // The same spool, a new process: the four are counted as its backlog before anything new arrives.
    const again = await startGatekeeper({ config, log: defaultLog, keysPollMs: 100 });
    stops.push(() => again.close());
    const againPort = await again.listen();
    await waitFor(
      "the backlog to be counted",
      async () => gauge(await scrape(againPort), "hub_gatekeeper_spool_pending_records") === 4,
    );
    expect((await auth(againPort, bearer(alice.key))).status).toBe(200);
    expect(gauge(await scrape(againPort), "hub_gatekeeper_spool_pending_records")).toBe(5);
  });
});
