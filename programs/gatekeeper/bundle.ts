import * as path from "node:path";
import { buildSync } from "esbuild";

/**
 * The gatekeeper as one CommonJS file for `node /app/gatekeeper.js` in node:22-alpine: every
 * dependency is pure JavaScript and inlined, and nothing is read from disk at run time.
 */

export const GATEKEEPER_ENTRY = path.join(__dirname, "main.ts");
const REPO_ROOT = path.resolve(__dirname, "../..");

export function bundleGatekeeper(): string {
  const result = buildSync({
    entryPoints: [GATEKEEPER_ENTRY],
    bundle: true,
    platform: "node",
    target: "node22",
    format: "cjs",
    write: false,
    // pg requires pg-native only when asked for `pg.native`, inside a try block; it is never installed.
    external: ["pg-native"],
    // Half the size (zod dominates); the program is shipped over SSH on every change.
    minify: true,
    logLevel: "silent",
    // esbuild names each module in a comment relative to this directory: fixed, so the text (and
    // anything deployed from it) does not change with the directory the bundle is built from.
    absWorkingDir: REPO_ROOT,
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error(`esbuild produced no output for ${GATEKEEPER_ENTRY}`);
  return output.text;
}
