import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planFromFile, stackFilePath } from "../cli/plan/runner";
import { runScriptToEnd } from "./helpers/cli";

/**
 * `npm run plan` runs .build/plan.js, compiled by esbuild; the rest of the suite runs the TypeScript.
 * The two must plan alike: same document, same rendered files. Both use Pulumi's mock engine, so a
 * compiled copy that brought its own @pulumi/pulumi (whose mocks this process never set) would differ.
 */

const ROOT = path.resolve(__dirname, "..");
const scratch = mkdtempSync(path.join(tmpdir(), "compiled-plan-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("the compiled plan", () => {
  // gpu: droplets, a GPU node, vLLM; local: the other program branch (Docker on this machine).
  for (const stack of ["gpu", "local"]) {
    it(`plans ${stack} exactly as the TypeScript program does (document and rendered files)`, async () => {
      const out = path.join(scratch, stack);
      const compiled = await runScriptToEnd("plan", ["--stack", stack, "--json", "--out", out]);
      expect(compiled.status, compiled.stderr).toBe(0);

      const typescript = await planFromFile(stack, stackFilePath(stack));
      if (!typescript.ok) throw new Error(`the TypeScript plan of ${stack} was refused`);
      expect(JSON.parse(compiled.stdout)).toEqual(JSON.parse(JSON.stringify(typescript.document)));
      expect(typescript.artifacts.length).toBeGreaterThan(0);
      for (const artifact of typescript.artifacts)
        expect(readFileSync(path.join(out, artifact.path), "utf8"), artifact.path).toBe(artifact.content);
    });
  }

  it("loads @pulumi/pulumi from node_modules rather than carrying a copy", () => {
    const bundle = readFileSync(path.join(ROOT, ".build/plan.js"), "utf8");
    expect(bundle).toContain('require("@pulumi/pulumi")');
    // Code of the SDK's mock engine, which only a bundled copy would contain.
    expect(bundle).not.toMatch(/class MockMonitor\b/);
  });
});
