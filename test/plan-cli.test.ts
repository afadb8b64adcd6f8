import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { runScript } from "./helpers/cli";
import { ROOT } from "./helpers/load";

const plan = (...args: string[]) => runScript("plan", args);

describe("npm run plan", () => {
  it("plans the default stack (cpu) in the human view", () => {
    const r = plan();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("stack cpu, tier cpu");
    for (const heading of ["== Configuration ==", "== Placement ==", "== Fit ==", "== Cost =="]) expect(r.stdout).toContain(heading);
  });

  for (const stack of ["gpu", "hybrid", "multigpu"]) {
    it(`--stack ${stack} --json prints one plan document`, () => {
      const r = plan("--stack", stack, "--json");
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

  it("--config-file reads any stack file and names the stack after it", () => {
    const r = plan("--config-file", path.join(ROOT, "Pulumi.hybrid.yaml"), "--json");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).stack).toBe("hybrid");
  });

  it("refuses a bad stack file with every problem, exit 1 and no stack trace", () => {
    const r = plan("--config-file", path.join(ROOT, "test/fixtures/bad-stacks/seed-region-nyc3.yaml"));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("gpuSize, region");
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at .*\(/);
  });

  it("refuses a bad stack file in --json with ok: false", () => {
    const r = plan("--config-file", path.join(ROOT, "test/fixtures/bad-stacks/over-budget.yaml"), "--json");
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.problems[0].keys).toContain("budgetUsd");
  });

  it("refuses an unknown stack and an unknown option with exit 1", () => {
    const unknownStack = plan("--stack", "nope");
    expect(unknownStack.status).toBe(1);
    expect(unknownStack.stdout).toContain("Stacks here: cpu, gpu, hybrid, local, multigpu");
    const unknownOption = plan("--stak", "gpu");
    expect(unknownOption.status).toBe(1);
    expect(unknownOption.stderr).toContain("--stak");
    expect(unknownOption.stderr).not.toMatch(/\n\s+at /);
  });

  it("--out writes the plan document", () => {
    const out = mkdtempSync(path.join(tmpdir(), "plan-"));
    const r = plan("--stack", "gpu", "--out", out);
    expect(r.status).toBe(0);
    expect(existsSync(path.join(out, "plan.json"))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(out, "plan.json"), "utf8")).stack).toBe("gpu");
  });
});
