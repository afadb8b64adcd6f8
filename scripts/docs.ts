import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { renderPulumiYaml, renderReadme } from "./lib/docs";
import { PROJECT_ROOT } from "./lib/plan-runner";

// Rewrites the generated parts of README.md and Pulumi.yaml from the code.
const readme = path.join(PROJECT_ROOT, "README.md");
writeFileSync(readme, renderReadme(readFileSync(readme, "utf8")));
writeFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), renderPulumiYaml());
process.stdout.write("README.md and Pulumi.yaml regenerated\n");
