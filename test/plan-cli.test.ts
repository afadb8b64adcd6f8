import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { runScriptToEnd, runToEnd } from "./helpers/cli";
import { ROOT } from "./helpers/load";

const plan = (...args: string[]) => runScriptToEnd("plan", args);
// The failure driver is a test fixture, run from its TypeScript source.
const TSX = path.join(ROOT, "node_modules/.bin/tsx");

describe("npm run plan", () => {
  it("without --stack: the stack PULUMI_STACK names (the hub's one --stack rule), in the human view; none chosen is refused", async () => {
    const none = await runScriptToEnd("plan", [], {
      env: { ...process.env, PULUMI_STACK: "", PULUMI_HOME: path.join(ROOT, "test/fixtures/no-such-pulumi-home") },
    });
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(
      /no stack chosen: pass --stack NAME, set PULUMI_STACK, or select one with `pulumi stack select NAME`/,
    );
    const r = await runScriptToEnd("plan", [], { env: { ...process.env, PULUMI_STACK: "cpu" } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("stack cpu, tier cpu");
    for (const heading of ["== Configuration ==", "== Placement ==", "== Fit ==", "== Cost =="])
      expect(r.stdout).toContain(heading);
  });

  for (const stack of ["gpu", "hybrid", "multigpu"]) {
    it(`--stack ${stack} --json prints one plan document`, async () => {
      const r = await plan("--stack", stack, "--json");
      expect(r.status, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ schemaVersion: 1, ok: true, stack, tier: stack });
      expect(doc.cost.monthlyUsd).toBeGreaterThan(0);
      expect(doc.fit.gpu.length).toBeGreaterThan(0);
      expect(doc.vllmArgs.length).toBeGreaterThan(0);
      expect(Array.isArray(doc.resources)).toBe(true);
      expect(Array.isArray(doc.artifacts)).toBe(true);
    });
  }

  it("--config-file reads any stack file and names the stack after it", async () => {
    const r = await plan("--config-file", path.join(ROOT, "Pulumi.hybrid.yaml"), "--json");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).stack).toBe("hybrid");
  });

  it("refuses a bad stack file with every problem, exit 1 and no stack trace", async () => {
    const r = await plan("--config-file", path.join(ROOT, "test/fixtures/bad-stacks/seed-region-nyc3.yaml"));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("gpuSize, region");
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at .*\(/);
  });

  it("refuses a bad stack file in --json with ok: false", async () => {
    const r = await plan("--config-file", path.join(ROOT, "test/fixtures/bad-stacks/over-budget.yaml"), "--json");
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.problems[0].keys).toContain("budgetUsd");
  });

  it("refuses an unknown stack and an unknown option with exit 1", async () => {
    const unknownStack = await plan("--stack", "nope");
    expect(unknownStack.status).toBe(1);
    expect(unknownStack.stdout).toContain("Stacks here: cpu, gpu, hybrid, k8s, local, multigpu");
    const unknownOption = await plan("--stak", "gpu");
    expect(unknownOption.status).toBe(1);
    expect(unknownOption.stderr).toContain("--stak");
    expect(unknownOption.stderr).not.toMatch(/\n\s+at /);
  });

  it("--out writes the plan document", async () => {
    const out = mkdtempSync(path.join(tmpdir(), "plan-"));
    const r = await plan("--stack", "gpu", "--out", out);
    expect(r.status).toBe(0);
    expect(existsSync(path.join(out, "plan.json"))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(out, "plan.json"), "utf8")).stack).toBe("gpu");
  });
});

describe("npm run plan: encrypted secrets and failures", () => {
  const stackFile = (name: string, text: string) => {
    const dir = mkdtempSync(path.join(tmpdir(), "plan-secrets-"));
    const file = path.join(dir, `Pulumi.${name}.yaml`);
    writeFileSync(file, text);
    return file;
  };

  it("plans a stack whose every secret setting is stored encrypted (what `hub keys create` writes), showing each as a secret", async () => {
    const secure = (ct: string) => `\n    secure: ${ct}`;
    const file = stackFile(
      "enc",
      `config:\n  inference-hub:tier: cpu\n  inference-hub:apiKeys:${secure("v1:CIPHER-apiKeys")}\n  inference-hub:hubApiKey:${secure("v1:CIPHER-hub")}\n  inference-hub:auditDatabaseUrl:${secure("v1:CIPHER-db")}\n  inference-hub:sshPrivateKey:${secure("v1:CIPHER-ssh")}\n  digitalocean:token:${secure("v1:CIPHER-do")}\n`,
    );
    const r = await plan("--config-file", file, "--json");
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(r.stdout).not.toContain("CIPHER-");
    // The gatekeeper container gets the keys document, shown as a secret; the key warning is gone.
    const gatekeeper = doc.resources.find(
      (x: { type: string; name: string }) =>
        x.type === "docker:index/container:Container" && x.name.endsWith("gatekeeper"),
    );
    expect(JSON.stringify(gatekeeper.inputs)).toContain("[secret]");
    expect(doc.warnings.map((w: { keys: string[] }) => w.keys[0])).not.toContain("apiKeys");
    expect(doc.outputs.hubApiKey).toBe("[secret]");
  });

  it("refuses a hostile stack file with exit 1, every problem named, no secret and no 1 MB echo", async () => {
    const file = stackFile(
      "hostile",
      `config:\n  inference-hub:tier: local\n  inference-hub:ocrEngine: deepseek-ocr\n  inference-hub:hubApiKye: MARK-a\n  inference-hub:config:auditDatabaseUrl: MARK-b\n  inference-hub:llmModel: ${"y".repeat(1_000_000)}\n`,
    );
    for (const json of [false, true]) {
      const r = await plan("--config-file", file, ...(json ? ["--json"] : []));
      expect(r.status).toBe(1);
      expect(r.stdout).not.toContain("MARK-");
      expect(r.stdout).not.toContain("0 problems");
      expect(r.stdout.length).toBeLessThan(10_000);
      if (json)
        expect(JSON.parse(r.stdout).problems.flatMap((p: { keys: string[] }) => p.keys)).toEqual(
          expect.arrayContaining(["ocrEngine", "hubApiKye", "auditDatabaseUrl", "llmModel"]),
        );
    }
  });
});

describe("a program that fails under the mock engine never hangs the plan", () => {
  const DRIVER = path.join(ROOT, "test/fixtures/plan-failures/run.ts");
  const drive = async (mode: string) => {
    // The exit status is Pulumi's: its leak detector turns 0 into 1 after a failed run. The outcome is on stdout.
    const r = await runToEnd(TSX, [DRIVER, mode], { timeoutMs: 60_000 });
    expect(r.stdout, r.stderr).toMatch(/^\{/);
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
  };

  it("a refusal thrown inside apply comes back as a refusal", async () => {
    const out = await drive("refusal-in-apply");
    expect(out.outcome).toBe("refused");
    expect(out.document.problems[0].keys).toEqual(["hubApiKey"]);
  });

  it("a bug inside apply, or before any resource, comes back as an internal error", async () => {
    expect(await drive("error-in-apply")).toMatchObject({
      outcome: "internal",
      message: expect.stringContaining("a bug inside apply"),
    });
    expect(await drive("throws")).toMatchObject({
      outcome: "internal",
      message: expect.stringContaining("a bug before any resource"),
    });
  });

  it("a program that never settles is stopped by the timeout", async () => {
    expect(await drive("never-settles")).toMatchObject({
      outcome: "internal",
      message: expect.stringContaining("did not finish within 3 s"),
    });
  });

  it("a readable but broken apiKeys document (as pulumi up hands it over) is refused without quoting it", async () => {
    const out = await drive("bad-keys-document");
    expect(out.outcome).toBe("refused");
    expect(out.document.problems[0]).toMatchObject({ keys: ["apiKeys"], value: "(not shown)" });
    expect(JSON.stringify(out)).not.toContain("FIXTURE-SECRET");
  });
});

describe("a refusal without a problem cannot be printed", () => {
  it("renderFailure throws (an internal error, exit 2) on a document read back with no problems", async () => {
    const { renderFailure } = await import("../cli/plan/view");
    const doc = JSON.parse(
      JSON.stringify({
        schemaVersion: 1,
        ok: false,
        stack: "x",
        configFile: "Pulumi.x.yaml",
        problems: [],
        warnings: [],
      }),
    );
    expect(() => renderFailure(doc)).toThrow(/without a problem/);
  });
});
