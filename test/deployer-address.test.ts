import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import {
  ADDRESS_ECHO_SERVICES,
  DeployerAddressError,
  EchoServiceAddressSource,
  parseEchoAnswer,
} from "../infra/deployer-address";

/**
 * STAND-IN echo services (not ipify or AWS): loopback HTTP servers that answer like the real ones
 * (plain text, the caller's address) and record every request they receive.
 */
interface StandIn {
  readonly url: string;
  readonly requests: { method?: string; url?: string; family?: string }[];
  close(): Promise<void>;
}
const standIns: StandIn[] = [];
afterAll(async () => Promise.all(standIns.map((s) => s.close())));

async function standIn(answer: (res: http.ServerResponse) => void): Promise<StandIn> {
  const requests: StandIn["requests"] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, family: req.socket.remoteFamily });
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const s: StandIn = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    requests,
    close: () =>
      new Promise((resolve) => {
        // The hanging stand-in never answers: drop its sockets, then stop listening.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  standIns.push(s);
  return s;
}
const says =
  (body: string, status = 200) =>
  (res: http.ServerResponse) =>
    res.writeHead(status, { "content-type": "text/plain" }).end(body);

describe("parseEchoAnswer", () => {
  it("takes one public IPv4 address, with or without the trailing newline", () => {
    expect(parseEchoAnswer("198.51.100.7\n")).toEqual({ ok: true, address: "198.51.100.7" });
    expect(parseEchoAnswer("  203.0.113.9 ")).toEqual({ ok: true, address: "203.0.113.9" });
  });

  it("refuses what cannot be the deployer's public IPv4 address", () => {
    for (const [body, reason] of [
      ["2001:db8::1", /not an IPv4 address/],
      ["<html>rate limited</html>", /not an IPv4 address/],
      ["010.1.1.1", /not an IPv4 address/],
      ["10.0.0.5", /private address/],
      ["127.0.0.1", /loopback address/],
      ["100.64.1.2", /carrierGradeNat address/],
      ["", /not an IPv4 address/],
    ] as const) {
      const r = parseEchoAnswer(body);
      expect(r.ok, body).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(reason);
    }
  });

  it("names IPv4-only services, each with its source", () => {
    expect(ADDRESS_ECHO_SERVICES.map((s) => new URL(s.url).host)).toEqual(["api.ipify.org", "checkip.amazonaws.com"]);
    for (const s of ADDRESS_ECHO_SERVICES) expect(s.source.length).toBeGreaterThan(10);
  });
});

describe("EchoServiceAddressSource against stand-in echo services", () => {
  it("asks every service once, over IPv4, and keeps one address when they agree", async () => {
    const a = await standIn(says("198.51.100.7\n"));
    const b = await standIn(says("198.51.100.7"));
    expect(await new EchoServiceAddressSource([{ url: a.url }, { url: b.url }], 2000).find()).toEqual(["198.51.100.7"]);
    for (const s of [a, b]) expect(s.requests).toEqual([{ method: "GET", url: "/", family: "IPv4" }]);
  });

  it("keeps both when a NAT with two exits shows two addresses", async () => {
    const a = await standIn(says("203.0.113.20"));
    const b = await standIn(says("198.51.100.7"));
    expect(await new EchoServiceAddressSource([{ url: a.url }, { url: b.url }], 2000).find()).toEqual([
      "198.51.100.7",
      "203.0.113.20",
    ]);
  });

  it("goes on with the other service when one fails, answers garbage or hangs", async () => {
    const good = await standIn(says("198.51.100.7"));
    for (const bad of [
      await standIn(says("", 503)),
      await standIn(says("<html>no</html>")),
      await standIn(() => undefined),
    ]) {
      expect(await new EchoServiceAddressSource([{ url: bad.url }, { url: good.url }], 300).find()).toEqual([
        "198.51.100.7",
      ]);
    }
  });

  it("fails with every service's reason when none answers", async () => {
    const down = await standIn(says("maintenance", 503));
    const silent = await standIn(() => undefined);
    const err = await new EchoServiceAddressSource([{ url: down.url }, { url: silent.url }], 300)
      .find()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeployerAddressError);
    expect((err as Error).message).toBe(
      `${new URL(down.url).host}: HTTP 503; ${new URL(silent.url).host}: no answer within 0.3 s`,
    );
  });
});
