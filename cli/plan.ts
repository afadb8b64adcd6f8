import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { diagramFileContent, diagramFileProblem, pictureOf, renderMermaid } from "./plan/diagram";
import { findChromium, renderSvg } from "./plan/diagram-svg";
import { availableStacks, planFromFile, PROJECT_ROOT, stackFilePath } from "./plan/runner";
import { chooseStack } from "./hub/stack-choice";
import { renderFailure, renderPlan } from "./plan/view";

const USAGE = `usage: npm run plan -- [--stack NAME | --config-file PATH] [--json] [--out DIR]
  --stack NAME        plan Pulumi.NAME.yaml (else $PULUMI_STACK, else the stack \`pulumi stack select\` chose)
  --config-file PATH  plan any stack file; the stack name is taken from Pulumi.<name>.yaml
  --json              print one machine-readable document instead of the human view
  --out DIR           write the rendered artifacts (cloud-init, Traefik, vLLM args) to DIR
  --diagram FILE      write a diagram of the planned nodes, volumes, containers, routes and firewalls:
                      FILE.mmd (Mermaid), FILE.md (a fenced mermaid block) or FILE.svg (needs Chromium)`;

/** Writes everything before exiting: process.exit would cut a large document on a pipe. */
function writeAndExit(text: string, code: number): Promise<never> {
  return new Promise(() => process.stdout.write(text, () => process.exit(code)));
}

function fail(message: string): never {
  process.stderr.write(`plan: ${message}\n${USAGE}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let values: {
    stack?: string;
    "config-file"?: string;
    json?: boolean;
    out?: string;
    diagram?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      options: {
        stack: { type: "string" },
        "config-file": { type: "string" },
        json: { type: "boolean", default: false },
        out: { type: "string" },
        diagram: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.stack && values["config-file"]) fail("give --stack or --config-file, not both");
  // Refused before planning, so a typo costs no plan run.
  const diagramProblem = values.diagram === undefined ? undefined : diagramFileProblem(values.diagram);
  if (diagramProblem) fail(diagramProblem);
  const svg = values.diagram?.toLowerCase().endsWith(".svg") ?? false;
  if (svg && !findChromium())
    fail(
      `--diagram ${values.diagram}: SVG is drawn by Mermaid in a headless Chromium, and none was found (/usr/bin/chromium, or set HUB_CHROMIUM). Install Debian's (apt-get install chromium), or write a .mmd or .md file instead.`,
    );
  let chosen = values.stack;
  if (!values["config-file"]) {
    try {
      chosen = chooseStack(values.stack, PROJECT_ROOT, availableStacks()).name;
    } catch (err) {
      fail((err as Error).message);
    }
  }
  const configFile = values["config-file"] ? path.resolve(values["config-file"]) : stackFilePath(chosen!);
  const stack =
    chosen ??
    /^Pulumi\.(.+)\.ya?ml$/.exec(path.basename(configFile))?.[1] ??
    path.basename(configFile).replace(/\.ya?ml$/, "");

  const result = await planFromFile(stack, configFile);
  if (!result.ok) {
    return writeAndExit(
      values.json ? `${JSON.stringify(result.document, null, 2)}\n` : `${renderFailure(result.document)}\n`,
      1,
    );
  }
  if (values.out) {
    for (const artifact of result.artifacts) {
      const file = path.join(values.out, artifact.path);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, artifact.content);
    }
    writeFileSync(path.join(mkdirOut(values.out), "plan.json"), `${JSON.stringify(result.document, null, 2)}\n`);
  }
  if (values.diagram) {
    const picture = pictureOf(result.document, result.artifacts);
    mkdirSync(path.dirname(path.resolve(values.diagram)), { recursive: true });
    const mermaid = renderMermaid(picture);
    writeFileSync(
      values.diagram,
      svg ? await renderSvg(mermaid) : diagramFileContent(values.diagram, picture, mermaid),
    );
    if (!values.json) process.stderr.write(`plan: diagram written to ${values.diagram}\n`);
  }
  // For `npm run bench`: peak memory is only knowable from inside the process.
  if (process.env.PLAN_BENCH_REPORT)
    process.stderr.write(
      `bench: maxrss_kb=${process.resourceUsage().maxRSS} resources=${result.document.resources.length}\n`,
    );
  // The mock engine keeps handles open, so exit explicitly once the output is flushed.
  await writeAndExit(
    values.json ? `${JSON.stringify(result.document, null, 2)}\n` : `${renderPlan(result.document)}\n`,
    0,
  );
}

function mkdirOut(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A bug, not bad input: say so plainly, without a stack trace unless asked for, and exit 2. */
function internalError(err: unknown): void {
  process.stderr.write(`plan: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
  if (process.env.PLAN_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(2);
}

// Whatever the program leaves behind after the run (a late rejection) ends the same way; during a
// run, the plan runner's own listener turns it into a refusal or an internal error.
process.on("unhandledRejection", (reason) => {
  if (process.listenerCount("unhandledRejection") === 1) internalError(reason);
});
main().catch(internalError);
