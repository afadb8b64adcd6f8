import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { AnyPlan, asPlan, diffPlans, hasVolumeRisk, renderComment, StackDiff, unreadable } from "./plan/diff";

const USAGE = `usage: npm run plan-diff -- --base FILE --head FILE [--stack NAME] [--fail-on-volume-risk]
       npm run plan-diff -- --base-dir DIR --head-dir DIR [--stack NAME] [--fail-on-volume-risk]
  --base, --head        two plan documents (npm run plan -- --stack NAME --json), base branch and PR
  --base-dir, --head-dir
                        directories of <stack>.json plan documents; a stack missing on one side is
                        new (base) or removed (head)
  --stack NAME          only this stack (with files: its name in the comment)
  --fail-on-volume-risk exit 1 when a volume would be removed, replaced, shrunk or unprotected
Prints the Markdown PR comment. Exits 0 otherwise (the comment is informational), 2 on bad usage.`;

function fail(message: string): never {
  process.stderr.write(`plan-diff: ${message}\n${USAGE}\n`);
  process.exit(2);
}

/** A plan file, or a failed plan saying why it could not be read (a crashed plan prints nothing). */
function readPlan(file: string, stack = ""): AnyPlan {
  const text = readFileSync(file, "utf8");
  if (text.trim() === "") return unreadable(file, "is empty: the plan printed no document (did it crash?)", stack);
  try {
    return asPlan(JSON.parse(text), file);
  } catch (err) {
    return unreadable(file, `is not JSON (${(err as Error).message})`, stack);
  }
}

const planIn = (dir: string, stack: string): AnyPlan | undefined => {
  const file = path.join(dir, `${stack}.json`);
  return existsSync(file) ? readPlan(file, stack) : undefined;
};

const stacksIn = (dir: string): string[] =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith(".json"))
        .map((f) => f.slice(0, -".json".length))
    : [];

function main(): void {
  let values: {
    base?: string;
    head?: string;
    "base-dir"?: string;
    "head-dir"?: string;
    stack?: string;
    "fail-on-volume-risk"?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      options: {
        base: { type: "string" },
        head: { type: "string" },
        "base-dir": { type: "string" },
        "head-dir": { type: "string" },
        stack: { type: "string" },
        "fail-on-volume-risk": { type: "boolean", default: false },
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
  const files = values.base !== undefined || values.head !== undefined;
  const dirs = values["base-dir"] !== undefined || values["head-dir"] !== undefined;
  if (files === dirs) fail("give --base and --head, or --base-dir and --head-dir");

  let diffs: StackDiff[];
  if (files) {
    if (!values.base || !values.head) fail("give both --base and --head");
    for (const f of [values.base, values.head]) if (!existsSync(f)) fail(`${f} does not exist`);
    const base = readPlan(values.base, values.stack);
    const head = readPlan(values.head, values.stack);
    const stack = values.stack ?? (head.stack || base.stack || path.basename(values.head, ".json"));
    diffs = [diffPlans(stack, base, head)];
  } else {
    const baseDir = values["base-dir"];
    const headDir = values["head-dir"];
    if (!baseDir || !headDir) fail("give both --base-dir and --head-dir");
    // The base directory may be missing or empty: a base branch from before the plan existed.
    if (!existsSync(headDir)) fail(`${headDir} does not exist`);
    const stacks = values.stack ? [values.stack] : [...new Set([...stacksIn(baseDir), ...stacksIn(headDir)])].sort();
    diffs = stacks.map((s) => diffPlans(s, planIn(baseDir, s), planIn(headDir, s)));
  }

  process.stdout.write(renderComment(diffs));
  if (values["fail-on-volume-risk"] && hasVolumeRisk(diffs)) {
    process.stderr.write(
      `plan-diff: volume at risk in ${diffs
        .filter((d) => d.volumeRisks.length > 0)
        .map((d) => d.stack)
        .join(", ")}\n`,
    );
    process.exit(1);
  }
}

main();
