import { execFile, spawnSync } from "node:child_process";
import {
  AMTOOL,
  builtToolVersion,
  missingReason,
  PROMTOOL,
  toolBinaryPath,
  type PrometheusTool,
} from "../../tools/prometheus-tools";

/**
 * promtool / amtool for tests: the binary when it is built at the pinned image's version, else
 * undefined (the tests skip with a notice; under CI=true a separate test fails, see
 * test/monitoring-tools.test.ts).
 */
export function toolOrUndefined(tool: PrometheusTool): string | undefined {
  return builtToolVersion(tool) === tool.version ? toolBinaryPath(tool) : undefined;
}

export const PROMTOOL_BINARY = toolOrUndefined(PROMTOOL);
export const AMTOOL_BINARY = toolOrUndefined(AMTOOL);

export function toolsMissing(): string | undefined {
  const missing = [
    PROMTOOL_BINARY ? undefined : missingReason(PROMTOOL),
    AMTOOL_BINARY ? undefined : missingReason(AMTOOL),
  ].filter(Boolean);
  return missing.length ? missing.join("; ") : undefined;
}

export interface ToolRun {
  readonly status: number | null;
  readonly output: string;
}

/**
 * Runs a tool without blocking the vitest worker (a long spawnSync starves its RPC); resolves
 * with the exit status and the combined output, whatever the status.
 */
export function runToolAsync(binary: string, args: readonly string[], cwd?: string): Promise<ToolRun> {
  return new Promise((resolve) => {
    execFile(
      binary,
      [...args],
      { cwd, encoding: "utf8", timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const status = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ status, output: `${stdout ?? ""}${stderr ?? ""}` });
      },
    );
  });
}

/** Runs a tool synchronously: for checks that take well under a second (test/dashboards.test.ts uses it). */
export function runTool(binary: string, args: readonly string[], cwd?: string): ToolRun {
  const result = spawnSync(binary, args, { cwd, encoding: "utf8", timeout: 60_000 });
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}` };
}
