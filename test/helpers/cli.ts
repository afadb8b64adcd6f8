import {
  spawn,
  spawnSync,
  type SpawnOptionsWithoutStdio,
  type SpawnSyncOptionsWithStringEncoding,
} from "node:child_process";
import * as path from "node:path";

// Own path constant rather than ./load, which pulls in the whole stacks module.
const ROOT = path.resolve(__dirname, "../..");

/** What `npm run <script>` executes (package.json: `node cli/run.cjs <script>`), minus npm's own start-up. */
export const RUNNER = path.join(ROOT, "cli/run.cjs");

/** Runs a package.json script the way users do: compiled, rebuilt first if the sources changed. */
export function runScript(
  script: string,
  args: readonly string[],
  options: Partial<SpawnSyncOptionsWithStringEncoding> = {},
) {
  return spawnSync(process.execPath, [RUNNER, script, ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 120_000,
    ...options,
  });
}

/** As runScript, without blocking this process (for tests that answer the script's requests themselves). */
export function spawnScript(script: string, args: readonly string[], options: SpawnOptionsWithoutStdio = {}) {
  return spawn(process.execPath, [RUNNER, script, ...args], { cwd: ROOT, ...options });
}

export interface Finished {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A child process run to the end without blocking this one. Vitest's worker answers its main
 * process over the event loop; a long spawnSync starves it and fails the run with an RPC timeout.
 */
export function runToEnd(
  command: string,
  args: readonly string[],
  options: SpawnOptionsWithoutStdio & { readonly input?: string; readonly timeoutMs?: number } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { cwd: ROOT, ...options });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** runScript without blocking: what `npm run <script>` executes. */
export const runScriptToEnd = (
  script: string,
  args: readonly string[],
  options: SpawnOptionsWithoutStdio = {},
): Promise<Finished> => runToEnd(process.execPath, [RUNNER, script, ...args], options);
