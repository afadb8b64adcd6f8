import { readdirSync } from "node:fs";
import * as path from "node:path";

/** The project's stack files, without loading the program (plan-runner.ts re-exports these). */
export const PROJECT_ROOT = path.resolve(__dirname, "../..");

export function stackFilePath(stack: string): string {
  return path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`);
}

export function availableStacks(): string[] {
  return readdirSync(PROJECT_ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}
