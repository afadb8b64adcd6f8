import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { pictureOf, renderMermaid } from "./lib/diagram";
import { findChromium, renderSvg } from "./lib/diagram-svg";
import { DOC_SECTIONS, README_PICTURE, renderArchitecture, renderDoc, renderPulumiYaml, tierDiagrams, tierPlans } from "./lib/docs";
import { PROJECT_ROOT } from "./lib/plan-runner";

// Rewrites the generated parts of README.md, docs/*.md and Pulumi.yaml from the code.
async function main(): Promise<void> {
  const plans = await tierPlans();
  for (const file of Object.keys(DOC_SECTIONS)) {
    const full = path.join(PROJECT_ROOT, file);
    const current = readFileSync(full, "utf8");
    const documents = Object.fromEntries(Object.entries(plans).map(([tier, plan]) => [tier, plan.document]));
    writeFileSync(full, file === "docs/architecture.md" ? renderArchitecture(current, await tierDiagrams(plans), documents) : renderDoc(file, current));
  }
  writeFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), renderPulumiYaml());
  // The README's one picture: drawn by Mermaid in a headless Chromium, so only where one is installed.
  const svgFile = path.join(PROJECT_ROOT, README_PICTURE.file);
  let svgNote = `${README_PICTURE.file} regenerated`;
  if (findChromium()) {
    const { document, artifacts } = plans[README_PICTURE.tier];
    mkdirSync(path.dirname(svgFile), { recursive: true });
    writeFileSync(svgFile, await renderSvg(renderMermaid(pictureOf(document, artifacts), { compact: true })));
  } else svgNote = `${README_PICTURE.file} ${existsSync(svgFile) ? "left as it was" : "NOT written"}: no Chromium (apt-get install chromium, or set HUB_CHROMIUM)`;
  // The mock engine keeps handles open (as in plan.ts): exit once the output is flushed.
  process.stdout.write(`${Object.keys(DOC_SECTIONS).join(", ")} and Pulumi.yaml regenerated; ${svgNote}\n`, () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`docs: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
