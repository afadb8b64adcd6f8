import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { loadText, ROOT } from "./helpers/load";

const DIR = path.join(ROOT, "test/fixtures/bad-stacks");
const cases = readdirSync(DIR).filter((f) => f.endsWith(".yaml")).sort();

describe("bad stack files are refused with the offending key", () => {
  it("has a corpus of at least 15 kinds of mistake", () => {
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });

  for (const file of cases) {
    it(file, () => {
      const text = readFileSync(path.join(DIR, file), "utf8");
      const expected = /^# expect: (.+)$/m.exec(text)?.[1].split(",").map((k) => k.trim());
      expect(expected, `${file} needs a '# expect: <key>' line`).toBeDefined();
      const result = loadText(text);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      const keys = result.problems.flatMap((p) => p.keys);
      for (const key of expected ?? []) expect(keys, JSON.stringify(result.problems, null, 1)).toContain(key);
      for (const p of result.problems) {
        // Each problem says why and what would work, in words, not as a stack trace.
        expect(p.message.length).toBeGreaterThan(10);
        expect(p.fix.length).toBeGreaterThan(5);
        expect(`${p.message} ${p.fix}`).not.toMatch(/\n\s+at /);
      }
    });
  }
});

describe("every problem in a stack is reported at once", () => {
  it("reports a bad tier, a typo'd key and an over-budget GPU together", () => {
    const result = loadText(`config:
  inference-hub:tier: gpu
  inference-hub:gpuCount: many
  inference-hub:llmModle: x
  inference-hub:budgetUsd: 100
  inference-hub:region: nyc3
`);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const keys = result.problems.flatMap((p) => p.keys);
    expect(keys).toEqual(expect.arrayContaining(["gpuCount", "llmModle", "gpuSize", "region"]));
  });

  it("suggests the closest key for a typo", () => {
    const result = loadText("config:\n  inference-hub:llmModle: qwen2.5-coder-7b\n");
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems[0].fix).toContain("Did you mean llmModel?");
  });

  it("ignores other namespaces such as the provider's", () => {
    expect(loadText("config:\n  inference-hub:tier: cpu\n  digitalocean:token:\n    secure: AAABAxyz\n").ok).toBe(true);
  });
});
