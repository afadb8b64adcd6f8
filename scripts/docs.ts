import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { renderPulumiYaml, renderReadmeWithDiagrams, renderSandboxDoc } from "./lib/docs";
import { PROJECT_ROOT } from "./lib/plan-runner";

// Rewrites the generated parts of README.md and Pulumi.yaml from the code.
async function main(): Promise<void> {
  const readme = path.join(PROJECT_ROOT, "README.md");
  writeFileSync(readme, await renderReadmeWithDiagrams(readFileSync(readme, "utf8")));
  writeFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), renderPulumiYaml());
  const sandboxDoc = path.join(PROJECT_ROOT, "docs", "sandbox.md");
  writeFileSync(sandboxDoc, renderSandboxDoc(readFileSync(sandboxDoc, "utf8")));
  // The mock engine keeps handles open (as in plan.ts): exit once the output is flushed.
  process.stdout.write("README.md, docs/sandbox.md and Pulumi.yaml regenerated\n", () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`docs: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
