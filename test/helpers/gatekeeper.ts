import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { Client } from "pg";
import { expect } from "vitest";
import { bundleGatekeeper } from "../../programs/gatekeeper/bundle";
import type { GatekeeperConfig } from "../../programs/gatekeeper/config";
import type { DecisionRecord } from "../../programs/gatekeeper/decision";
import { newApiKey, type KeyEntry } from "../../programs/gatekeeper/keys";
import type { Logger } from "../../programs/gatekeeper/log";
import { jsonLogger, silentLogger } from "../../programs/gatekeeper/log";
import { type Gatekeeper, startGatekeeper } from "../../programs/gatekeeper/server";

/** Fixtures and helpers shared by the gatekeeper's test files: keys, configs, HTTP, the bundle. */

// ---- fixtures -----------------------------------------------------------------------------------

export const BACKEND_KEY = "backend-internal-key-0123456789";

export interface TestKey {
  readonly key: string;
  readonly entry: KeyEntry;
}

export function makeKey(name: string, scopes: KeyEntry["scopes"], extra: Partial<KeyEntry> = {}): TestKey {
  const fresh = newApiKey();
  return {
    key: fresh.key,
    entry: { id: fresh.id, name, sha256: fresh.sha256, scopes, created: "2026-11-26T12:00:00Z", ...extra },
  };
}

export const keysFileText = (keys: readonly TestKey[]): string =>
  JSON.stringify({ version: 1, keys: keys.map((k) => k.entry) }, null, 2);

export const alice = makeKey("alice laptop", ["llm", "stt"]);
export const bob = makeKey("bob (revoked)", ["llm"], { revoked: true });
export const carol = makeKey("carol, rate limited", ["llm"], { ratePerMinute: 60, burst: 3 });
export const olga = makeKey("olga ocr only", ["ocr"]);
export const dora = makeKey("dora, rate limited on two services", ["llm", "stt"], { ratePerMinute: 60, burst: 3 });
export const erin = makeKey("erin, rate limited, never targeted by others' traffic", ["llm"], {
  ratePerMinute: 60,
  burst: 3,
});
export const ALL_KEYS = [alice, bob, carol, olga, dora, erin];

export const scratch = (label: string): string => mkdtempSync(path.join(tmpdir(), `gk-${label}-`));

export function testConfig(dir: string, overrides: Partial<GatekeeperConfig> = {}): GatekeeperConfig {
  const keysFile = path.join(dir, "keys", "keys.json");
  return {
    port: 0,
    host: "127.0.0.1",
    keysFile,
    spoolDir: path.join(dir, "spool"),
    backendKey: BACKEND_KEY,
    defaultRatePerMinute: 1_000_000,
    defaultBurst: 1_000_000,
    // Out of the way unless a test sets them: every test client is 127.0.0.1.
    addressRatePerMinute: 1_000_000,
    addressBurst: 1_000_000,
    addressTableSize: 65_536,
    forwardedHops: 0,
    spoolSegmentBytes: 64 * 1024 * 1024,
    spoolKeepSegments: 16,
    spoolCommitsInFlight: 4,
    auditBatchRows: 500,
    auditBatchDelayMs: 50,
    ...overrides,
  };
}

export function writeKeys(config: GatekeeperConfig, keys: readonly TestKey[]): void {
  // Atomic replace, as an operator's tooling should do it.
  const temporary = `${config.keysFile}.tmp`;
  writeFileSync(temporary, keysFileText(keys));
  renameSync(temporary, config.keysFile);
}

// GK_TEST_LOG=1 shows the in-process gatekeepers' logs.
export const defaultLog: Logger = process.env.GK_TEST_LOG ? jsonLogger : silentLogger;

export async function startInProcess(
  label: string,
  overrides: Partial<GatekeeperConfig> = {},
  log: Logger = defaultLog,
): Promise<{ gatekeeper: Gatekeeper; port: number; config: GatekeeperConfig; dir: string }> {
  const dir = scratch(label);
  const config = testConfig(dir, overrides);
  mkdirSync(path.dirname(config.keysFile), { recursive: true });
  writeKeys(config, ALL_KEYS);
  const gatekeeper = await startGatekeeper({ config, log, keysPollMs: 100 });
  const port = await gatekeeper.listen();
  return { gatekeeper, port, config, dir };
}

export function capturingLogger(): {
  readonly log: Logger;
  readonly lines: { level: string; message: string; fields?: unknown }[];
} {
  const lines: { level: string; message: string; fields?: unknown }[] = [];
  const at = (level: string) => (message: string, fields?: unknown) => void lines.push({ level, message, fields });
  return { log: { info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

// ---- HTTP helpers -------------------------------------------------------------------------------

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export function get(
  port: number,
  target: string,
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: target, headers, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${target} timed out`)));
  });
}

export const auth = (port: number, headers: Record<string, string>, scope = "llm", agent?: http.Agent) =>
  get(port, `/auth?scope=${scope}`, headers, agent);
export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });

/** Exact bytes on the wire: duplicate headers, latin1 bytes, odd whitespace. */
export function rawAuth(port: number, headerLines: readonly string[], target = "/auth?scope=llm"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const [head, ...rest] = text.split("\r\n\r\n");
      const [statusLine, ...lines] = head.split("\r\n");
      const headers: http.IncomingHttpHeaders = {};
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") });
    });
    socket.write(
      Buffer.from(
        `GET ${target} HTTP/1.1\r\nHost: gatekeeper\r\nConnection: close\r\n${headerLines.map((l) => `${l}\r\n`).join("")}\r\n`,
        "latin1",
      ),
    );
  });
}

export function expectOpenAiError(reply: Reply, status: number, code: string): void {
  expect(reply.status, reply.body).toBe(status);
  expect(reply.headers["content-type"]).toBe("application/json");
  const body = JSON.parse(reply.body) as { error: { message: string; type: string; code: string } };
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "type"]);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(10);
  expect(reply.headers.authorization).toBeUndefined();
  expect(reply.headers["x-api-key"]).toBeUndefined();
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function spoolRecords(spoolDir: string): DecisionRecord[] {
  return readdirSync(spoolDir)
    .filter((f) => f.endsWith(".ndjson") && f.startsWith("decisions-"))
    .sort()
    .flatMap((f) =>
      readFileSync(path.join(spoolDir, f), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as DecisionRecord),
    );
}

export function spoolText(spoolDir: string): string {
  return readdirSync(spoolDir)
    .map((f) => readFileSync(path.join(spoolDir, f), "utf8"))
    .join("\n");
}

/**
 * Requests with unique X-Request-Ids from `concurrency` workers until `until()`; remembers
 * which were answered (with what) and which failed at the connection level.
 */
export async function requestStream(options: {
  readonly port: () => number;
  readonly key: string;
  readonly prefix: string;
  readonly concurrency: number;
  readonly until: () => boolean;
}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const answered = new Map<string, number>();
  const connectionFailures: string[] = [];
  const sent: string[] = [];
  let next = 0;
  const worker = async () => {
    while (!options.until()) {
      const id = `${options.prefix}-${next++}`;
      sent.push(id);
      try {
        const reply = await auth(
          options.port(),
          {
            ...bearer(options.key),
            "X-Request-Id": id,
            "X-Forwarded-For": "198.51.100.7",
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Uri": "/v1/chat/completions",
          },
          "llm",
          agent,
        );
        answered.set(id, reply.status);
      } catch {
        connectionFailures.push(id);
        await sleep(5);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  agent.destroy();
  return { answered, connectionFailures, sent };
}

let bundleFile: string | undefined;
/** Deletes the bundle built by bundledGatekeeper(); call from the test file's afterAll. */
export function removeBundle(): void {
  if (bundleFile) rmSync(path.dirname(bundleFile), { recursive: true, force: true });
  bundleFile = undefined;
}

export function bundledGatekeeper(): string {
  if (!bundleFile) {
    const dir = scratch("bundle");
    bundleFile = path.join(dir, "gatekeeper.js");
    writeFileSync(bundleFile, bundleGatekeeper());
  }
  return bundleFile;
}

export interface ChildGatekeeper {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

export function spawnGatekeeper(env: Record<string, string>): ChildGatekeeper {
  const child = spawn(process.execPath, [bundledGatekeeper()], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

export function childEnv(config: GatekeeperConfig, port: number, databaseUrl?: string): Record<string, string> {
  return {
    GATEKEEPER_PORT: String(port),
    GATEKEEPER_HOST: "127.0.0.1",
    GATEKEEPER_KEYS_FILE: config.keysFile,
    GATEKEEPER_SPOOL_DIR: config.spoolDir,
    GATEKEEPER_BACKEND_KEY: BACKEND_KEY,
    GATEKEEPER_DEFAULT_RATE_PER_MINUTE: "1000000",
    GATEKEEPER_DEFAULT_BURST: "1000000",
    // Every test client is 127.0.0.1: the per-address limit stays out of the way.
    GATEKEEPER_ADDRESS_RATE_PER_MINUTE: "1000000",
    GATEKEEPER_ADDRESS_BURST: "1000000",
    GATEKEEPER_AUDIT_BATCH_DELAY_MS: "50",
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  };
}

export async function waitHealthy(port: number, child: ChildGatekeeper): Promise<void> {
  await waitFor(
    `the gatekeeper on port ${port} to answer /healthz`,
    async () => {
      if (child.child.exitCode !== null)
        throw new Error(`gatekeeper exited with ${child.child.exitCode}: ${child.output()}`);
      return (await get(port, "/healthz").catch(() => undefined))?.status === 200;
    },
    10_000,
  );
}

export function childFixture(label: string): { config: GatekeeperConfig; dir: string } {
  const dir = scratch(label);
  const config = testConfig(dir);
  mkdirSync(path.dirname(config.keysFile), { recursive: true });
  writeKeys(config, ALL_KEYS);
  return { config, dir };
}

/** Every answered request's id is in the table exactly once; nothing else but sent ids is. */
export async function expectExactlyOnce(
  client: Client,
  prefix: string,
  answered: ReadonlyMap<string, number>,
  sent: readonly string[],
): Promise<void> {
  const rows = async () =>
    (
      await client.query<{ request_id: string }>(
        "SELECT request_id FROM gatekeeper.decisions WHERE request_id LIKE $1",
        [`${prefix}-%`],
      )
    ).rows.map((r) => r.request_id);
  await waitFor(`all ${answered.size} answered decisions in the table`, async () => {
    const present = new Set(await rows());
    return [...answered.keys()].every((id) => present.has(id));
  });
  await sleep(300); // let any straggling batch land before looking for duplicates
  const ids = await rows();
  expect(ids.length).toBe(new Set(ids).size);
  const sentIds = new Set(sent);
  expect(ids.filter((id) => !sentIds.has(id))).toEqual([]);
  expect(ids.length).toBeGreaterThanOrEqual(answered.size);
}
