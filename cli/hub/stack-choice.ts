import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROJECT } from "../../stacks/settings";
import { HubCommandError } from "./ops";

/**
 * One rule for which stack a command acts on, in every command: the explicit `--stack`, else
 * `PULUMI_STACK`, else the stack `pulumi stack select` chose for this project, else an error that
 * lists the stack files here. The selection is read from the Pulumi CLI's workspace file,
 * `<PULUMI_HOME or ~/.pulumi>/workspaces/<project>-<sha1 of Pulumi.yaml's path>-workspace.json`,
 * `{"stack": "<org>/<project>/<name>"}` (as the CLI v3.248.0 writes it), so no CLI is needed to read it.
 */

export type StackSource = "--stack" | "PULUMI_STACK" | "pulumi stack select";

export function selectedStack(projectRoot: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const home = env.PULUMI_HOME || path.join(os.homedir(), ".pulumi");
  const projectFile = path.join(projectRoot, "Pulumi.yaml");
  const hash = createHash("sha1").update(projectFile).digest("hex");
  try {
    const doc = JSON.parse(
      readFileSync(path.join(home, "workspaces", `${PROJECT}-${hash}-workspace.json`), "utf8"),
    ) as { stack?: unknown };
    return typeof doc.stack === "string" && doc.stack ? doc.stack.split("/").pop() : undefined;
  } catch {
    return undefined;
  }
}

export function chooseStack(
  flag: string | undefined,
  projectRoot: string,
  stacksHere: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { name: string; source: StackSource } {
  if (flag) return { name: flag, source: "--stack" };
  if (env.PULUMI_STACK) return { name: env.PULUMI_STACK, source: "PULUMI_STACK" };
  const selected = selectedStack(projectRoot, env);
  if (selected) return { name: selected, source: "pulumi stack select" };
  throw new HubCommandError(
    `no stack chosen: pass --stack NAME, set PULUMI_STACK, or select one with \`pulumi stack select NAME\` (stack files here: ${stacksHere.join(", ") || "none"})`,
  );
}

/** A stack name must name a stack file here (Pulumi.<name>.yaml) for commands that read it. */
export function stackFileProblem(name: string, stacksHere: readonly string[]): string | undefined {
  return stacksHere.includes(name)
    ? undefined
    : `--stack ${name}: there is no Pulumi.${name}.yaml here (stack files: ${stacksHere.join(", ")})`;
}
