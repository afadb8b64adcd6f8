import { spawn, spawnSync, type SpawnOptionsWithoutStdio, type SpawnSyncOptionsWithStringEncoding } from "node:child_process";
import * as path from "node:path";

// Own path constant rather than ./load, which pulls in the whole stacks module.
const ROOT = path.resolve(__dirname, "../..");

/** What `npm run <script>` executes (package.json: `node scripts/run.cjs <script>`), minus npm's own start-up. */
export const RUNNER = path.join(ROOT, "scripts/run.cjs");

/** Runs a package.json script the way users do: compiled, rebuilt first if the sources changed. */
export function runScript(script: string, args: readonly string[], options: Partial<SpawnSyncOptionsWithStringEncoding> = {}) {
  return spawnSync(process.execPath, [RUNNER, script, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000, ...options });
}

/** As runScript, without blocking this process (for tests that answer the script's requests themselves). */
export function spawnScript(script: string, args: readonly string[], options: SpawnOptionsWithoutStdio = {}) {
  return spawn(process.execPath, [RUNNER, script, ...args], { cwd: ROOT, ...options });
}
