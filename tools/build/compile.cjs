// @ts-check
"use strict";
/**
 * Compiles each command-line script (cli/<name>.ts, bench/<name>.ts) with esbuild into one CommonJS file,
 * .build/<name>.js, which `node cli/run.cjs <name>` runs (see README "Performance").
 *
 * - Every npm package stays external, loaded from node_modules at run time: Pulumi's mock engine
 *   is process-global, and a second, bundled copy of @pulumi/pulumi would silently miss the mocks.
 *   A script requires only the packages whose code it uses. The exceptions are BUNDLED_PACKAGES:
 *   plain libraries of many small files, compiled in (see there).
 * - `__dirname`/`__filename` keep meaning the source file's directory and path (the code finds the
 *   project root and the gatekeeper's entry point through them), wherever .build/ sits.
 * - Every program the plan ships into a container (the gatekeeper, the controller, the embeddings
 *   front, the sandbox API and front) is bundled once here, by its own bundling function
 *   (programs/<name>/bundle.ts), into .build/program.<function>.js, which that function then reads:
 *   the plan never starts esbuild itself, and a script does not parse 3 MB of programs it may not ship.
 * - Outputs are written to a temporary directory and renamed into .build/ after the manifest has
 *   been removed; the manifest is written last. A crash at any point leaves no manifest, so the next
 *   run builds again instead of running a half-written output.
 *
 * CLI: node tools/build/compile.cjs [--if-stale] [--prepare]
 *   --if-stale  build only when .build/ does not match the sources
 *   --prepare   as run by `npm ci`/`npm install`: --if-stale, and a failed build only warns (the
 *               scripts build again, and report the error, when they run)
 */
const fs = require("node:fs");
const path = require("node:path");
const {
  ROOT,
  MANIFEST_FILE,
  FORMAT,
  currentInputs,
  recordInputs,
  readManifest,
  checkFreshness,
  withBuildLock,
} = require("./freshness.cjs");

/** The module that bundles the gatekeeper at plan time; compiled scripts get its output prebuilt. */
const GATEKEEPER_BUNDLER = "programs/gatekeeper/bundle.ts";
/**
 * Every program bundled into its container at plan time: the module, and its bundling functions.
 * A module missing here costs each plan that deploys its program an esbuild run (0.15-0.35 s).
 */
const PROGRAM_BUNDLERS = [
  { name: "gatekeeper", file: GATEKEEPER_BUNDLER, fns: ["bundleGatekeeper"] },
  { name: "controller", file: "programs/autoscaler/controller/bundle.ts", fns: ["bundleController"] },
  { name: "embeddings", file: "programs/embeddings/bundle.ts", fns: ["bundleEmbeddingsFront"] },
  { name: "sandbox", file: "programs/sandbox/bundle.ts", fns: ["bundleSandboxApi", "bundleSandboxFront"] },
];

class BuildError extends Error {}

/** Directories whose top-level .ts files are entries: `node cli/run.cjs <name>` runs <dir>/<name>.ts. */
const ENTRY_DIRS = ["cli", "bench"];

/** @param {string} root @returns {string[]} */
function discoverEntries(root) {
  return Object.keys(entryFiles(root)).sort();
}

/** Entry name → its source file; a name in two entry directories is a build error. @param {string} root */
function entryFiles(root) {
  /** @type {Record<string, string>} */
  const files = {};
  for (const dir of ENTRY_DIRS) {
    if (!fs.existsSync(path.join(root, dir))) continue;
    for (const f of fs.readdirSync(path.join(root, dir))) {
      if (!f.endsWith(".ts") || f.endsWith(".d.ts")) continue;
      const name = f.slice(0, -".ts".length);
      if (files[name]) throw new BuildError(`two entries named "${name}": ${files[name]} and ${dir}/${f}`);
      files[name] = `${dir}/${f}`;
    }
  }
  return files;
}

// `define` swaps the free variables __dirname/__filename for names each module declares itself;
// esbuild renames those per module when it hoists them into one scope. The banner runs before any
// module and holds the bundle's own directory.
const BANNER = '"use strict";\nvar __hubBundleDir = __dirname;';
const DEFINE = { __dirname: "__hubModuleDir", __filename: "__hubModuleFile" };

/**
 * Declares the module's own directory and path relative to the bundle, on line 1 (no new line, so
 * source maps stay aligned).
 * @param {string} text @param {string} file @param {string} outDir
 */
function withSourcePaths(text, file, outDir) {
  if (!/__(?:dirname|filename)/.test(text)) return text;
  const dir = JSON.stringify(path.relative(outDir, path.dirname(file)).split(path.sep).join("/"));
  const self = JSON.stringify(path.relative(outDir, file).split(path.sep).join("/"));
  return `const __hubModuleDir = require("node:path").join(__hubBundleDir, ${dir}), __hubModuleFile = require("node:path").join(__hubBundleDir, ${self}); ${text}`;
}

/** @param {string} outDir the directory the bundle will run from @returns {import("esbuild").Plugin} */
function sourcePathsPlugin(outDir) {
  return {
    name: "source-paths",
    setup(build) {
      build.onLoad({ filter: /\.[cm]?tsx?$/ }, (args) => ({
        contents: withSourcePaths(fs.readFileSync(args.path, "utf8"), args.path, outDir),
        loader: "ts",
      }));
    },
  };
}

/** Where the build keeps a bundling function's text, in the output directory. @param {string} fn */
const programFile = (fn) => `program.${fn}.js`;

/**
 * Replaces a module's bundling functions (bundleGatekeeper(), bundleController(), ...) with ones
 * that read the text bundled at build time (programFile, beside the script); every other
 * export of the module is the real one (and the real module, with its esbuild import, is dropped
 * from a script that uses none of them).
 * @param {string} root @param {string} outDir @param {{ name: string, file: string, fns: string[] }} bundler
 * @returns {import("esbuild").Plugin}
 */
function prebuiltBundlePlugin(root, outDir, bundler) {
  const file = path.join(root, bundler.file);
  const resolveDir = path.dirname(file);
  const original = `prebuilt-${bundler.name}:original`;
  const namespace = `${bundler.name}-original`;
  return {
    name: `prebuilt-${bundler.name}`,
    setup(build) {
      build.onResolve({ filter: new RegExp(`^${original}$`) }, () => ({ path: file, namespace, sideEffects: false }));
      build.onLoad({ filter: /.*/, namespace }, () => ({
        contents: withSourcePaths(fs.readFileSync(file, "utf8"), file, outDir),
        loader: "ts",
        resolveDir,
      }));
      build.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path !== file) return undefined;
        // __hubBundleDir: the script's own directory (BANNER).
        const fns = bundler.fns.map(
          (fn) =>
            `export function ${fn}(): string {\n  return readFileSync(join(__hubBundleDir, ${JSON.stringify(programFile(fn))}), "utf8");\n}\n`,
        );
        const contents = `// Bundled once by tools/build/compile.cjs with this module's own ${bundler.fns.join(", ")}.\nimport { readFileSync } from "node:fs";\nimport { join } from "node:path";\nexport * from "${original}";\n${fns.join("")}`;
        return { contents, loader: "ts", resolveDir };
      });
    },
  };
}

/**
 * Packages compiled into the scripts instead of loaded from node_modules, with what they import.
 * Node 20 resolves, reads and compiles every file of a package on its own, and these are pure
 * JavaScript of many small files that share no state with another package: zod (95 files), yaml
 * (72), sshpk with its dependencies (33). Loading them cost the plan about 70 ms, compiled in about
 * 30 (`npm run bench`). Never a Pulumi package (one copy of the SDK, see above); the lock files
 * (PROJECT_INPUTS) pin their versions, so an install that changes them rebuilds.
 */
const BUNDLED_PACKAGES = ["zod", "yaml", "sshpk"];

/** The package a node_modules path belongs to ("@scope/name" or "name"). @param {string} file */
const packageOf = (file) => /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file.split(path.sep).join("/"))?.[1];

/**
 * BUNDLED_PACKAGES and every package they depend on, as installed under root.
 * @param {string} root @returns {Set<string>}
 */
function bundledClosure(root) {
  const found = new Set();
  const visit = (/** @type {string} */ name) => {
    if (found.has(name)) return;
    found.add(name);
    const manifest = path.join(root, "node_modules", name, "package.json");
    if (!fs.existsSync(manifest)) return;
    for (const dep of Object.keys(JSON.parse(fs.readFileSync(manifest, "utf8")).dependencies ?? {})) visit(dep);
  };
  for (const name of BUNDLED_PACKAGES) visit(name);
  return found;
}

/**
 * Every package but BUNDLED_PACKAGES stays external, and a script loads only the packages it uses: an import whose
 * bindings are all unused (plan-diff reaches a module that imports @pulumi/pulumi for code it never
 * calls) is dropped instead of costing its require(). No source imports a package for its side
 * effects alone (`import "x"`); such an import would be dropped too.
 * @returns {import("esbuild").Plugin}
 */
function externalPackagesPlugin(/** @type {Set<string>} */ bundledPackages) {
  return {
    name: "external-packages",
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        // esbuild's own resolution: a bundled package, and what it imports (Node's built-ins stay external).
        if (BUNDLED_PACKAGES.some((p) => args.path === p || args.path.startsWith(`${p}/`))) return undefined;
        const importer = packageOf(args.importer);
        if (importer && bundledPackages.has(importer)) return undefined;
        return { path: args.path, external: true, sideEffects: false };
      });
    },
  };
}

/** @param {unknown} err */
function esbuildMessages(err) {
  const errors = /** @type {{ errors?: import("esbuild").Message[] }} */ (err).errors;
  if (!Array.isArray(errors) || errors.length === 0) return /** @type {Error} */ (err).message;
  return errors
    .map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text))
    .join("\n");
}

/**
 * Builds every script into outDir. Call it under withBuildLock.
 * @param {{ root?: string, outDir?: string }} [options]
 * @returns {Promise<{ entries: string[], ms: number }>}
 */
async function compile(options = {}) {
  const root = options.root ?? ROOT;
  const outDir = options.outDir ?? path.join(root, ".build");
  const started = process.hrtime.bigint();
  /** @type {typeof import("esbuild")} */
  const esbuild = require("esbuild");
  const walked = currentInputs(root);
  // Files imported from outside the source directories (a test helper in a benchmark) are known
  // from the last build's manifest, recorded before this build reads them, and from this build.
  const previousExtras = Object.keys(readManifest(outDir)?.inputs ?? {}).filter(
    (rel) => !walked.includes(rel) && fs.existsSync(path.join(root, rel)),
  );
  const inputs = recordInputs([...walked, ...previousExtras], root);
  const entries = discoverEntries(root);
  // A sibling of outDir, so every relative path (source maps, __dirname) is the same in both.
  for (const stale of fs.readdirSync(root).filter((f) => f.startsWith(".build.tmp-")))
    fs.rmSync(path.join(root, stale), { recursive: true, force: true });
  const tmp = fs.mkdtempSync(path.join(root, ".build.tmp-"));
  /** @type {import("esbuild").BuildOptions} */
  const common = {
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    absWorkingDir: root,
    banner: { js: BANNER },
    define: DEFINE,
    // import() becomes require(), as tsconfig's module: commonjs (and Pulumi's ts-node) compile it:
    // Node's ESM resolver refuses directory imports such as @pulumi/pulumi/automation.
    supported: { "dynamic-import": false },
    logLevel: "silent",
    metafile: true,
  };
  try {
    /** @type {import("esbuild").Plugin[]} */
    const prebuilt = [];
    for (const bundler of PROGRAM_BUNDLERS) {
      if (!fs.existsSync(path.join(root, bundler.file))) continue;
      const out = `${bundler.name}-bundler`;
      try {
        await esbuild.build({
          ...common,
          entryPoints: { [out]: path.join(root, bundler.file) },
          outdir: tmp,
          // Run here once, from this node_modules: nothing compiled in.
          packages: "external",
          plugins: [sourcePathsPlugin(tmp)],
        });
        const module = require(path.join(tmp, `${out}.js`));
        for (const fn of bundler.fns) fs.writeFileSync(path.join(tmp, programFile(fn)), module[fn]());
      } catch (err) {
        throw new BuildError(`bundling the ${bundler.name} (${bundler.file}) failed:\n${esbuildMessages(err)}`);
      }
      fs.rmSync(path.join(tmp, `${out}.js`));
      prebuilt.push(prebuiltBundlePlugin(root, outDir, bundler));
    }
    const allowed = bundledClosure(root);
    let result;
    try {
      result = await esbuild.build({
        ...common,
        entryPoints: Object.fromEntries(
          Object.entries(entryFiles(root)).map(([name, file]) => [name, path.join(root, file)]),
        ),
        outdir: tmp,
        sourcemap: "linked",
        plugins: [...prebuilt, externalPackagesPlugin(allowed), sourcePathsPlugin(outDir)],
      });
    } catch (err) {
      throw new BuildError(`compiling the entries (cli/*.ts, bench/*.ts) failed:\n${esbuildMessages(err)}`);
    }
    const bundled = Object.keys(result.metafile?.inputs ?? {});
    /** @type {Map<string, string>} a package compiled in that must not be, and its first file */
    const refused = new Map();
    for (const input of bundled) {
      const name = packageOf(input);
      if (name !== undefined && !allowed.has(name) && !refused.has(name)) refused.set(name, input);
    }
    if (refused.size > 0)
      throw new BuildError(
        `packages must stay external (one copy of @pulumi/pulumi, loaded from node_modules; only ${BUNDLED_PACKAGES.join(", ")} are compiled in), but these were bundled: ${[
          ...refused,
        ]
          .slice(0, 5)
          .map(([name, input]) => `${name} (${input})`)
          .join(", ")}`,
      );
    // Virtual modules ("namespace:path") are not files; packages are pinned by the lock files.
    const newExtras = bundled.filter((rel) => !/^[\w-]+:/.test(rel) && !packageOf(rel) && !(rel in inputs));
    Object.assign(inputs, recordInputs(newExtras, root));

    const outputs = fs.readdirSync(tmp).sort();
    fs.mkdirSync(outDir, { recursive: true });
    fs.rmSync(path.join(outDir, MANIFEST_FILE), { force: true });
    for (const file of outputs) fs.renameSync(path.join(tmp, file), path.join(outDir, file));
    // Outputs of scripts that no longer exist, a crashed build's unfinished manifest, and the V8
    // code caches of the last build (tools/build/code-cache.cjs: never used again).
    for (const file of fs.readdirSync(outDir))
      if (
        (/\.js(?:\.map)?$/.test(file) && !outputs.includes(file)) ||
        file.startsWith(`${MANIFEST_FILE}.tmp-`) ||
        /\.v8cache(?:\.tmp-\d+)?$/.test(file)
      )
        fs.rmSync(path.join(outDir, file), { force: true });
    /** @type {import("./freshness.cjs").Manifest} */
    const manifest = {
      format: FORMAT,
      builtAt: new Date().toISOString(),
      entries,
      inputs,
      outputs: Object.fromEntries(outputs.map((f) => [f, fs.statSync(path.join(outDir, f)).size])),
    };
    const manifestTmp = path.join(outDir, `${MANIFEST_FILE}.tmp-${process.pid}`);
    fs.writeFileSync(manifestTmp, `${JSON.stringify(manifest, null, 1)}\n`);
    fs.renameSync(manifestTmp, path.join(outDir, MANIFEST_FILE));
    return { entries, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Builds unless .build/ already matches the sources; safe to call from several processes at once.
 * @param {{ root?: string, force?: boolean, onBuild?: (reason: string) => void }} [options]
 * @returns {Promise<import("./freshness.cjs").Manifest>}
 */
async function ensureBuilt(options = {}) {
  const root = options.root ?? ROOT;
  const outDir = path.join(root, ".build");
  const before = checkFreshness(root, outDir);
  if (before.fresh && !options.force) return before.manifest;
  return withBuildLock(
    async () => {
      // Another process may have built while this one waited for the lock.
      const now = checkFreshness(root, outDir);
      if (now.fresh && !options.force) return now.manifest;
      options.onBuild?.(options.force ? "asked to" : now.fresh ? "" : now.reason);
      await compile({ root, outDir });
      const after = checkFreshness(root, outDir);
      if (after.fresh) return after.manifest;
      // A source changed while esbuild read it: once more, from the sources as they are now.
      options.onBuild?.(after.reason);
      await compile({ root, outDir });
      const last = checkFreshness(root, outDir);
      if (!last.fresh)
        throw new BuildError(
          `the sources keep changing while they compile (${last.reason}); run the command again once they settle`,
        );
      return last.manifest;
    },
    { outDir },
  );
}

async function cli() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== "--if-stale" && a !== "--prepare");
  if (unknown.length > 0) {
    process.stderr.write(
      `build: unknown option ${unknown[0]}\nusage: node tools/build/compile.cjs [--if-stale] [--prepare]\n`,
    );
    return 1;
  }
  const prepare = args.includes("--prepare");
  const started = process.hrtime.bigint();
  let built = false;
  try {
    const manifest = await ensureBuilt({
      force: !prepare && !args.includes("--if-stale"),
      onBuild: () => (built = true),
    });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    process.stderr.write(
      built
        ? `build: compiled ${manifest.entries.length} scripts into .build/ in ${ms.toFixed(0)} ms\n`
        : "build: .build/ is up to date\n",
    );
    return 0;
  } catch (err) {
    process.stderr.write(
      `build: ${err instanceof BuildError ? err.message : `internal error: ${/** @type {Error} */ (err).message}`}\n`,
    );
    if (prepare) {
      process.stderr.write("build: install continues; the scripts build again (and say why) when they run\n");
      return 0;
    }
    return 1;
  }
}

if (require.main === module) cli().then((code) => (process.exitCode = code));

module.exports = { compile, ensureBuilt, discoverEntries, BuildError, GATEKEEPER_BUNDLER, BUNDLED_PACKAGES };
