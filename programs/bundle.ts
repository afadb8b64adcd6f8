import * as path from "node:path";
import { buildSync } from "esbuild";

const REPO_ROOT = path.resolve(__dirname, "..");

/**
 * One of the hub's programs as one CommonJS file for `node /app/<name>.js` in the node:22-alpine
 * image: every dependency is pure JavaScript and inlined, and nothing is read from disk at run time.
 */
export function bundleProgram(entry: string, external: readonly string[] = [], target = "node22"): string {
  const result = buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    target,
    format: "cjs",
    write: false,
    external: [...external],
    // Half the size (zod dominates); the program is shipped over SSH on every change.
    minify: true,
    logLevel: "silent",
    // esbuild names each module in a comment relative to this directory: fixed, so the text (and
    // anything deployed from it) does not change with the directory the bundle is built from.
    absWorkingDir: REPO_ROOT,
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error(`esbuild produced no output for ${entry}`);
  return output.text;
}
