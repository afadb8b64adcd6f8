import * as path from "node:path";
import { buildSync } from "esbuild";

/**
 * The controller as one CommonJS file for `node /app/autoscaler.js` in the same node:alpine image
 * the gatekeeper runs: every dependency (prom-client, parse-prometheus-text-format, zod) is pure
 * JavaScript and inlined.
 */
export const CONTROLLER_ENTRY = path.join(__dirname, "main.ts");
const REPO_ROOT = path.resolve(__dirname, "../../..");

export function bundleController(): string {
  const result = buildSync({
    entryPoints: [CONTROLLER_ENTRY],
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    write: false,
    // Half the size; the program is shipped over SSH on every change.
    minify: true,
    logLevel: "silent",
    // Module comments relative to a fixed directory: the text does not depend on where it was built.
    absWorkingDir: REPO_ROOT,
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error(`esbuild produced no output for ${CONTROLLER_ENTRY}`);
  return output.text;
}
