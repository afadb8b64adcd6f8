import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { findChromium, renderSvgs } from "./plan/diagram-svg";
import {
  DOC_SECTIONS,
  renderArchitecture,
  renderDoc,
  renderPulumiYaml,
  svgDiagrams,
  tierDiagrams,
  tierPlans,
} from "./docs/generate";
import { PROJECT_ROOT } from "./plan/runner";

// Rewrites the generated parts of README.md, docs/*.md, docs/diagrams/*.svg and Pulumi.yaml from the code.
async function main(): Promise<void> {
  const plans = await tierPlans();
  const diagrams = await tierDiagrams(plans);
  const documents = Object.fromEntries(Object.entries(plans).map(([tier, plan]) => [tier, plan.document]));
  for (const file of Object.keys(DOC_SECTIONS)) {
    const full = path.join(PROJECT_ROOT, file);
    const current = readFileSync(full, "utf8");
    writeFileSync(
      full,
      file === "docs/architecture.md" ? renderArchitecture(current, diagrams, documents) : renderDoc(file, current),
    );
  }
  // The pictures as SVG files (docs/diagrams/<tier>.svg), which any viewer draws; they need Chromium.
  if (findChromium()) {
    const svgs = await renderSvgs(Object.values(diagrams));
    mkdirSync(path.join(PROJECT_ROOT, "docs", "diagrams"), { recursive: true });
    Object.keys(diagrams).forEach((tier, i) =>
      writeFileSync(path.join(PROJECT_ROOT, svgDiagrams(tier)), `${svgs[i]}\n`),
    );
  } else process.stderr.write("docs: no Chromium (apt-get install chromium): docs/diagrams/*.svg left as they are\n");
  writeFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), renderPulumiYaml());
  // The mock engine keeps handles open (as in plan.ts): exit once the output is flushed.
  process.stdout.write(`${Object.keys(DOC_SECTIONS).join(", ")}, docs/diagrams/ and Pulumi.yaml regenerated\n`, () =>
    process.exit(0),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`docs: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
