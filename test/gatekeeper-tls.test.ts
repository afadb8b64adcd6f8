import * as http2 from "node:http2";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readGatekeeperConfig } from "../programs/gatekeeper/config";
import type { Gatekeeper } from "../programs/gatekeeper/server";
import {
  alice,
  BACKEND_KEY,
  capturingLogger,
  carol,
  scratch,
  spoolRecords,
  startInProcess,
} from "./helpers/gatekeeper";
import { OPENSSL_BINARY, OPENSSL_MISSING_REASON, selfSignedPair } from "./helpers/tls";

/**
 * The gatekeeper's forwardAuth port (programs/gatekeeper/tls-listener.ts): HTTP/2 over TLS, so
 * Traefik keeps one connection instead of opening one per request. Driven here by Node's own
 * HTTP/2 client pinning the certificate, as Traefik's forwardAuth does (tls.ca); the real Traefik
 * speaks to it in test/gateway-real.test.ts.
 */

if (!OPENSSL_BINARY) console.warn(`gatekeeper TLS tests skipped: ${OPENSSL_MISSING_REASON}`);
it.runIf(!OPENSSL_BINARY && process.env.CI === "true")("openssl is installed (required in CI)", () => {
  expect.fail(OPENSSL_MISSING_REASON);
});

interface H2Reply {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: string;
}

function h2get(
  session: http2.ClientHttp2Session,
  target: string,
  headers: Record<string, string | string[]> = {},
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": target, ...headers });
    let body = "";
    let status = 0;
    let got: http2.IncomingHttpHeaders = {};
    stream.setEncoding("utf8");
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      got = h;
    });
    stream.on("data", (chunk: string) => (body += chunk));
    stream.on("end", () => resolve({ status, headers: got, body }));
    stream.on("error", reject);
    stream.end();
  });
}

describe.skipIf(!OPENSSL_BINARY)("the gatekeeper's forwardAuth port: HTTP/2 over TLS", () => {
  let gk: { gatekeeper: Gatekeeper; port: number; config: ReturnType<typeof readGatekeeperConfig>; dir: string };
  let pair: { cert: string; key: string };
  let session: http2.ClientHttp2Session;
  const logs = capturingLogger();
  // What forwardAuth sends (trustForwardHeader false): the client's address and request, never X-Request-Id.
  const forwarded = {
    "x-forwarded-for": "198.51.100.20",
    "x-forwarded-method": "POST",
    "x-forwarded-uri": "/v1/chat/completions",
  };

  beforeAll(async () => {
    pair = selfSignedPair(path.join(scratch("tls-pair"), "tls"), "gatekeeper");
    gk = await startInProcess(
      "tls",
      { tls: { port: 0, cert: pair.cert, key: pair.key }, addressRatePerMinute: 1, addressBurst: 40 },
      logs.log,
    );
    // Pinned, and the name checked: what Go does with forwardAuth's tls.ca.
    session = http2.connect(`https://127.0.0.1:${gk.gatekeeper.tlsPort}`, { ca: pair.cert, servername: "gatekeeper" });
  });
  afterAll(async () => {
    session?.close();
    await gk?.gatekeeper.close();
  });

  it("allows a valid key: the backends' key, the key id and a request id, with no body", async () => {
    const r = await h2get(session, "/auth?scope=llm", { authorization: `Bearer ${alice.key}`, ...forwarded });
    expect(r.status).toBe(200);
    expect(r.headers.authorization).toBe(`Bearer ${BACKEND_KEY}`);
    expect(r.headers["x-api-key"]).toBe(BACKEND_KEY);
    expect(r.headers["x-hub-key-id"]).toBe(alice.entry.id);
    expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.body).toBe("");
  });

  it("refuses as the plain port does: OpenAI JSON, WWW-Authenticate, Retry-After; an unknown scope is 503, never 500", async () => {
    const none = await h2get(session, "/auth?scope=llm", forwarded);
    expect([none.status, JSON.parse(none.body).error.code, none.headers["www-authenticate"]]).toEqual([
      401,
      "missing_api_key",
      'Bearer realm="inference-hub"',
    ]);
    // Two different keys in one header: refused, not guessed (HTTP/2 carries the repeat as two fields).
    const two = await h2get(session, "/auth?scope=llm", { "x-api-key": [alice.key, carol.key], ...forwarded });
    expect([two.status, JSON.parse(two.body).error.code]).toEqual([401, "invalid_api_key"]);
    const scope = await h2get(session, "/auth?scope=video", { authorization: `Bearer ${alice.key}`, ...forwarded });
    expect([scope.status, JSON.parse(scope.body).error.code]).toEqual([503, "gatekeeper_misconfigured"]);
    const other = await h2get(session, "/metrics");
    expect(other.status).toBe(404);
  });

  it("answers two hundred requests at once on one connection, each decision spooled once before its answer", async () => {
    const before = spoolRecords(gk.config.spoolDir).length;
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        h2get(session, "/auth?scope=llm", {
          authorization: `Bearer ${alice.key}`,
          ...forwarded,
          "x-forwarded-for": `198.51.100.${100 + (i % 50)}`,
        }),
      ),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(200).fill(200));
    const ids = new Set(replies.map((r) => String(r.headers["x-request-id"])));
    expect(ids.size).toBe(200);
    const records = spoolRecords(gk.config.spoolDir).slice(before);
    expect(records.map((r) => r.request_id).sort()).toEqual([...ids].sort());
  });

  it("limits each client address before the key, from the X-Forwarded-For forwardAuth set, without spooling the refusals", async () => {
    const before = spoolRecords(gk.config.spoolDir).length;
    const replies = await Promise.all(
      Array.from({ length: 60 }, () =>
        h2get(session, "/auth?scope=llm", {
          authorization: `Bearer ${alice.key}`,
          ...forwarded,
          "x-forwarded-for": "203.0.113.77",
        }),
      ),
    );
    const limited = replies.filter((r) => r.status === 429);
    expect(limited.length).toBe(20);
    expect(JSON.parse(limited[0].body).error.message).toContain("client address");
    expect(Number(limited[0].headers["retry-after"])).toBeGreaterThan(0);
    expect(spoolRecords(gk.config.spoolDir).length - before).toBe(40);
  });

  it("refuses a client that pins another certificate, and logs no key", async () => {
    const stranger = selfSignedPair(path.join(scratch("tls-stranger"), "tls"), "gatekeeper");
    const other = http2.connect(`https://127.0.0.1:${gk.gatekeeper.tlsPort}`, {
      ca: stranger.cert,
      servername: "gatekeeper",
    });
    const failure = await new Promise<Error>((resolve) => other.once("error", resolve));
    other.destroy();
    expect(failure.message).toMatch(/self[- ]signed|certificate/i);
    for (const line of logs.lines) expect(JSON.stringify(line)).not.toContain(alice.key);
  });

  it("reads its certificate from GATEKEEPER_TLS_CERT and GATEKEEPER_TLS_KEY, and names every problem with them", () => {
    const base = { GATEKEEPER_KEYS_FILE: "/k", GATEKEEPER_SPOOL_DIR: "/s", GATEKEEPER_BACKEND_KEY: "b" };
    expect(readGatekeeperConfig(base).tls).toBeUndefined();
    expect(readGatekeeperConfig({ ...base, GATEKEEPER_TLS_CERT: pair.cert, GATEKEEPER_TLS_KEY: pair.key }).tls).toEqual(
      { port: 8443, cert: pair.cert.trim(), key: pair.key.trim() },
    );
    const problems = (env: Record<string, string>) => {
      try {
        readGatekeeperConfig({ ...base, ...env });
        return [];
      } catch (error) {
        return (error as { problems: string[] }).problems;
      }
    };
    expect(problems({ GATEKEEPER_TLS_CERT: pair.cert })).toEqual([
      expect.stringContaining("GATEKEEPER_TLS_KEY is not set"),
    ]);
    expect(problems({ GATEKEEPER_TLS_CERT: "not a certificate", GATEKEEPER_TLS_KEY: pair.key })).toEqual([
      expect.stringContaining("GATEKEEPER_TLS_CERT is not a PEM certificate"),
    ]);
    const stranger = selfSignedPair(path.join(scratch("tls-mismatch"), "tls"), "gatekeeper");
    const mismatch = problems({ GATEKEEPER_TLS_CERT: pair.cert, GATEKEEPER_TLS_KEY: stranger.key });
    expect(mismatch).toEqual([expect.stringContaining("is not the private key of GATEKEEPER_TLS_CERT")]);
    // The key itself is never quoted.
    expect(
      JSON.stringify(
        problems({
          GATEKEEPER_TLS_CERT: pair.cert,
          GATEKEEPER_TLS_KEY: "-----BEGIN PRIVATE KEY-----\nsecretish\n-----END PRIVATE KEY-----",
        }),
      ),
    ).not.toContain("secretish");
  });
});
