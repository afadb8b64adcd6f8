import { readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSandboxConfig, SandboxConfigError } from "../programs/sandbox/config";
import { readFrontConfig, FrontConfigError } from "../programs/sandbox/front/config";
import { executionReport } from "../programs/sandbox/front/server";
import { languageTable, upstreamVersion } from "../programs/sandbox/languages";
import { DEFAULT_LIMITS, MAX_LIMITS, MIN_LIMITS, nodeCeiling, resolveLimits } from "../programs/sandbox/limits";
import { executionReportSchema, executionRequestSchema, LIMIT_NAMES } from "../programs/sandbox/protocol";
import { tokenMatches } from "../programs/sandbox/server";
import { SANDBOX_TOOL } from "../programs/sandbox/tool";
import { renderSandboxDoc } from "../cli/docs/generate";
import {
  auth,
  bearer,
  makeKey,
  spoolText,
  startInProcess,
  waitFor,
  writeKeys,
  ALL_KEYS,
  type Reply,
} from "./helpers/gatekeeper";
import { parseKeysFile } from "../programs/gatekeeper/keys";
import { parseSandboxLimits, planKeysChange } from "../cli/hub/keys";
import { ROOT } from "./helpers/load";
import * as http from "node:http";
import { createHash } from "node:crypto";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe("limits", () => {
  it("a request's limits: defaults for what it leaves out, every out-of-range one named at once", () => {
    const ceiling = nodeCeiling(4 * GiB, 2);
    const ok = resolveLimits({ wall_ms: 2000 }, ceiling);
    expect(ok).toEqual({ ok: true, limits: { ...DEFAULT_LIMITS, wall_ms: 2000 } });
    const bad = resolveLimits({ wall_ms: 50, memory_bytes: 8 * GiB, processes: 1.5 }, ceiling);
    expect(bad.ok).toBe(false);
    const problems = bad.ok ? [] : bad.problems;
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^limits\.wall_ms 50 .* from 100 ms to 120000 ms$/);
    expect(problems[1]).toMatch(new RegExp(`limits\\.memory_bytes ${8 * GiB} .* to ${ceiling.memory_bytes} bytes`));
    expect(problems[2]).toMatch(/limits\.processes 1\.5/);
  });

  it("the node's ceiling: memory and scratch shared by its slots, never above the maximum; defaults lowered to it", () => {
    const small = nodeCeiling(4 * GiB, 2);
    // (4096 - 768) MiB over two slots: three quarters memory, a quarter scratch, whole MiB.
    expect(small.memory_bytes).toBe(1248 * MiB);
    expect(small.scratch_bytes).toBe(416 * MiB);
    expect(nodeCeiling(256 * GiB, 2)).toEqual(MAX_LIMITS);
    const tiny = nodeCeiling(GiB, 4);
    expect(tiny.memory_bytes).toBeGreaterThanOrEqual(MIN_LIMITS.memory_bytes * 0.75);
    const lowered = resolveLimits(undefined, { ...MAX_LIMITS, memory_bytes: 128 * MiB });
    expect(lowered.ok && lowered.limits.memory_bytes).toBe(128 * MiB);
  });
});

describe("the API's contract", () => {
  it("file names stay inside /work", () => {
    const file = (name: string) =>
      executionRequestSchema.safeParse({ language: "python", files: [{ name, content: "" }] }).success;
    for (const good of ["main.py", "src/a_b-c.py", "tests/.hidden", "a/b/c/d.js"]) expect(file(good), good).toBe(true);
    for (const bad of ["../x", "a/../../x", "/etc/passwd", "a//b", "./x", "a/./b", "x\u0000y", "", "a b"])
      expect(file(bad), bad).toBe(false);
  });

  it("Debian versions read as the upstream version; languages come from the tree's packages", () => {
    expect(upstreamVersion("20.19.2+dfsg-1+deb13u3")).toBe("20.19.2");
    expect(upstreamVersion("3.13.5-1")).toBe("3.13.5");
    expect(upstreamVersion("1:2.3-4")).toBe("2.3");
    const table = languageTable({ python3: "3.13.5-1", bash: "5.2.37-2+b10" });
    expect(table.list.map((l) => l.language)).toEqual(["python", "bash"]);
    expect(table.find("PY")?.language.language).toBe("python");
    expect(table.find("node")).toBeUndefined();
  });

  it("the token is compared by its digest, in constant time, and only as a Bearer token", () => {
    const digest = createHash("sha256").update("s3cret-token").digest();
    expect(tokenMatches("Bearer s3cret-token", digest)).toBe(true);
    expect(tokenMatches("bearer   s3cret-token ", digest)).toBe(true);
    for (const wrong of [
      undefined,
      "",
      "s3cret-token",
      "Bearer s3cret-tokeN",
      "Basic s3cret-token",
      "Bearer s3cret-token extra",
    ])
      expect(tokenMatches(wrong, digest)).toBe(false);
  });

  it("the agents' tool definition asks for nothing the API would refuse", () => {
    const params = SANDBOX_TOOL.function.parameters;
    expect(params.properties.language.enum).toEqual(
      languageTable({ python3: "1", nodejs: "1", bash: "1" }).list.map((l) => l.language),
    );
    for (const name of Object.keys(params.properties.limits.properties)) expect(LIMIT_NAMES).toContain(name);
    // The largest arguments the tool's schema allows are accepted by the API's own schema.
    const args = {
      language: params.properties.language.enum[0],
      files: [{ name: "main.py", content: "print(1)" }],
      stdin: "",
      args: ["a"],
      limits: Object.fromEntries(Object.entries(params.properties.limits.properties).map(([k, v]) => [k, v.maximum])),
    };
    expect(executionRequestSchema.safeParse(args).success).toBe(true);
    expect(resolveLimits(args.limits, MAX_LIMITS).ok).toBe(true);
  });

  it("docs/sandbox.md's limits and tool definition are generated from the code (npm run docs)", () => {
    const doc = readFileSync(path.join(ROOT, "docs/sandbox.md"), "utf8");
    expect(doc).toBe(renderSandboxDoc(doc));
  });
});

describe("settings from the environment", () => {
  it("the API reports every problem at once, naming the variable", () => {
    expect(() =>
      readSandboxConfig({
        SANDBOX_TOKEN_SHA256: "abc",
        SANDBOX_PLATFORM: "kvm",
        SANDBOX_SLOTS: "0",
        SANDBOX_CEILING: '{"wall_ms": 5, "nope": 1}',
      }),
    ).toThrow(SandboxConfigError);
    try {
      readSandboxConfig({
        SANDBOX_TOKEN_SHA256: "abc",
        SANDBOX_PLATFORM: "kvm",
        SANDBOX_SLOTS: "0",
        SANDBOX_CEILING: '{"wall_ms": 5, "nope": 1}',
      });
    } catch (error) {
      const problems = (error as SandboxConfigError).problems;
      expect(problems.map((p) => p.split(/[ =.]/)[0])).toEqual([
        "SANDBOX_TOKEN_SHA256",
        "SANDBOX_PLATFORM",
        "SANDBOX_SLOTS",
        "SANDBOX_CEILING",
        "SANDBOX_CEILING",
      ]);
    }
    const config = readSandboxConfig(
      { SANDBOX_TOKEN_SHA256: "a".repeat(64), SANDBOX_CEILING: '{"wall_ms": 30000}' },
      { cpus: 4, memoryBytes: 8 * GiB },
    );
    expect(config).toMatchObject({ slots: 4, slotsPerKey: 2, warm: 4, host: "127.0.0.1", platform: "systrap" });
    expect(config.ceiling.wall_ms).toBe(30_000);
  });

  it("the front needs the node's address and a real token", () => {
    expect(() => readFrontConfig({ SANDBOX_NODE_TOKEN: "short" })).toThrow(FrontConfigError);
    const config = readFrontConfig({
      SANDBOX_NODE_URL: "http://10.110.0.5:8090/",
      SANDBOX_NODE_TOKEN: "t".repeat(40),
      SANDBOX_AUDIT_URL: "http://gatekeeper:8080/executions",
    });
    expect(config).toMatchObject({
      nodeUrl: "http://10.110.0.5:8090",
      auditUrl: "http://gatekeeper:8080/executions",
      port: 8080,
    });
  });
});

describe("the execution report", () => {
  const base = { requestId: "req-1", keyId: "k_abc", durationMs: 321.7 };
  it("carries the language, limits hit and durations of a run, and nothing of its code or output", () => {
    const report = executionReport({
      ...base,
      status: 200,
      request: { language: "py", files: [{ content: "SECRET_CODE" }], stdin: "SECRET_IN", session_id: "ses_1" },
      response: {
        language: "python",
        version: "3.13.5",
        stdout: "SECRET_OUT",
        stderr: "é",
        exit_code: null,
        signal: "SIGKILL",
        limits_hit: ["cpu", "made-up"],
        wall_ms: 1200,
        cpu_ms: 1001,
        memory_bytes: 20_000_000,
      },
    });
    expect(report).toEqual({
      request_id: "req-1",
      key_id: "k_abc",
      language: "python",
      version: "3.13.5",
      session: true,
      outcome: "completed",
      status: 200,
      exit_code: null,
      signal: "SIGKILL",
      limits_hit: ["cpu"],
      wall_ms: 1200,
      cpu_ms: 1001,
      memory_bytes: 20_000_000,
      output_bytes: 12,
      duration_ms: 322,
    });
    expect(executionReportSchema.safeParse(report).success).toBe(true);
    expect(JSON.stringify(report)).not.toMatch(/SECRET/);
  });

  it("a refused or failed request is reported too, with the language as asked (cleaned, bounded)", () => {
    const refused = executionReport({
      ...base,
      status: 400,
      request: { language: "Py<script>".repeat(10) },
      response: undefined,
    });
    expect(refused).toMatchObject({
      outcome: "refused",
      status: 400,
      language: "pyscriptpyscriptpyscriptpyscript",
      limits_hit: [],
      wall_ms: null,
      output_bytes: null,
    });
    expect(executionReport({ ...base, status: 502, request: "not json", response: undefined })).toMatchObject({
      outcome: "failed",
      language: "unknown",
    });
    expect(executionReportSchema.safeParse(refused).success).toBe(true);
  });
});

describe("the gatekeeper's POST /executions", () => {
  let gk: Awaited<ReturnType<typeof startInProcess>>;
  beforeAll(async () => {
    gk = await startInProcess("executions");
  });
  afterAll(async () => {
    await gk?.gatekeeper.close();
    if (gk) rmSync(gk.dir, { recursive: true, force: true });
  });
  const post = (body: string, headers: Record<string, string> = {}): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: gk.port,
          method: "POST",
          path: "/executions",
          headers: { "content-type": "application/json", ...headers },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (d: string) => (text += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const report = executionReport({
    requestId: "req-exec-1",
    keyId: "k_abc",
    durationMs: 10,
    status: 200,
    request: { language: "bash" },
    response: {
      language: "bash",
      version: "5.2.37",
      stdout: "",
      stderr: "",
      exit_code: 0,
      signal: null,
      limits_hit: [],
      wall_ms: 5,
      cpu_ms: 3,
      memory_bytes: 1,
    },
  });

  it("records a report in the spool before answering", async () => {
    const answer = await post(JSON.stringify(report));
    expect(answer.status, answer.body).toBe(200);
    const id = JSON.parse(answer.body).execution_id as string;
    const line = spoolText(gk.config.spoolDir)
      .split("\n")
      .find((l) => l.includes(id))!;
    expect(JSON.parse(line)).toMatchObject({
      execution_id: id,
      request_id: "req-exec-1",
      language: "bash",
      limits_hit: [],
    });
    expect(line.startsWith('{"execution_id":"')).toBe(true);
  });

  it("refuses a caller through a proxy, a body that is not a report, and an oversized one", async () => {
    expect((await post(JSON.stringify(report), { "x-forwarded-for": "203.0.113.9" })).status).toBe(403);
    const bad = await post(JSON.stringify({ ...report, stdout: "code" }));
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe("invalid_report");
    expect((await post("{")).status).toBe(400);
    expect((await post(JSON.stringify({ ...report, language: "x".repeat(9000) }))).status).toBe(413);
  });
});

describe("a key's own sandbox ceiling", () => {
  it("the keys file takes sandboxLimits of known limits only; keys create --sandbox-limits writes them", () => {
    const entry = {
      id: "k_abcd1234",
      name: "ci",
      sha256: "a".repeat(64),
      scopes: ["sandbox"],
      created: "2026-12-07T10:00:00Z",
    };
    expect(
      parseKeysFile(JSON.stringify({ version: 1, keys: [{ ...entry, sandboxLimits: { wall_ms: 30000 } }] })).keys[0]
        .sandboxLimits,
    ).toEqual({ wall_ms: 30000 });
    expect(() =>
      parseKeysFile(JSON.stringify({ version: 1, keys: [{ ...entry, sandboxLimits: { wall_seconds: 30 } }] })),
    ).toThrow(/sandboxLimits/);
    expect(parseSandboxLimits("wall_ms=30000, memory_bytes=536870912")).toEqual({
      limits: { wall_ms: 30000, memory_bytes: 536870912 },
      problems: [],
    });
    expect(parseSandboxLimits("wall=3,cpu_ms=0").problems).toEqual([
      expect.stringContaining("wall is not a limit"),
      expect.stringContaining("cpu_ms=0 is not a positive whole number"),
    ]);
    const created = planKeysChange(
      { version: 1, keys: [] },
      "create",
      [],
      { name: "ci", scopes: "sandbox", sandboxLimits: "wall_ms=30000" },
      new Date("2026-12-07T10:00:00Z"),
    );
    expect(created.file.keys[0].sandboxLimits).toEqual({ wall_ms: 30000 });
    expect(() =>
      planKeysChange(
        { version: 1, keys: [] },
        "create",
        [],
        { name: "ci", scopes: "llm", sandboxLimits: "wall_ms=30000" },
        new Date(),
      ),
    ).toThrow(/sandbox scope/);
  });

  it("the gatekeeper sends it on the sandbox's allowed requests only", async () => {
    const gk = await startInProcess("key-limits");
    try {
      const tight = makeKey("tight", ["sandbox", "llm"], { sandboxLimits: { wall_ms: 1500 } });
      const plain = makeKey("plain", ["sandbox"]);
      writeKeys(gk.config, [...ALL_KEYS, tight, plain]);
      await waitFor(
        "the keys to reload",
        async () => (await auth(gk.port, bearer(tight.key), "sandbox")).status === 200,
      );
      expect((await auth(gk.port, bearer(tight.key), "sandbox")).headers["x-hub-sandbox-limits"]).toBe(
        '{"wall_ms":1500}',
      );
      expect((await auth(gk.port, bearer(plain.key), "sandbox")).headers["x-hub-sandbox-limits"]).toBe("{}");
      expect((await auth(gk.port, bearer(tight.key), "llm")).headers["x-hub-sandbox-limits"]).toBeUndefined();
    } finally {
      await gk.gatekeeper.close();
      rmSync(gk.dir, { recursive: true, force: true });
    }
  });
});
