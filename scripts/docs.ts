import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { findChromium, renderSvgs } from "./lib/diagram-svg";
import { renderPulumiYaml, renderReadmeWithDiagrams, renderSandboxDoc, svgDiagrams, tierDiagrams } from "./lib/docs";
import { PROJECT_ROOT } from "./lib/plan-runner";

// Rewrites the generated parts of README.md and Pulumi.yaml from the code.
async function main(): Promise<void> {
  const readme = path.join(PROJECT_ROOT, "README.md");
  const diagrams = await tierDiagrams();
  writeFileSync(readme, await renderReadmeWithDiagrams(readFileSync(readme, "utf8"), diagrams));
  // The pictures as SVG files (docs/diagrams/<tier>.svg), which any viewer draws; they need Chromium.
  if (findChromium()) {
    const svgs = await renderSvgs(Object.values(diagrams));
    mkdirSync(path.join(PROJECT_ROOT, "docs", "diagrams"), { recursive: true });
    Object.keys(diagrams).forEach((tier, i) => writeFileSync(path.join(PROJECT_ROOT, svgDiagrams(tier)), `${svgs[i]}\n`));
  } else process.stderr.write("docs: no Chromium (apt-get install chromium): docs/diagrams/*.svg left as they are\n");
  writeFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), renderPulumiYaml());
  const sandboxDoc = path.join(PROJECT_ROOT, "docs", "sandbox.md");
  writeFileSync(sandboxDoc, renderSandboxDoc(readFileSync(sandboxDoc, "utf8")));
  // The mock engine keeps handles open (as in plan.ts): exit once the output is flushed.
  process.stdout.write("README.md, docs/sandbox.md, docs/diagrams/ and Pulumi.yaml regenerated\n", () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`docs: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
