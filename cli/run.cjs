// @ts-check
"use strict";
/**
 * `node cli/run.cjs <script> [args...]` runs cli/<script>.ts (or bench/<script>.ts) compiled (.build/<script>.js),
 * in this process. It first checks that .build/ matches the sources (a few milliseconds) and, if
 * not, builds it (under a lock, so parallel invocations build once) before running anything: a
 * stale build never runs. `npm run plan` and the other package.json scripts go through here.
 *
 * HUB_SOURCE_MAPS=1 (or PLAN_DEBUG=1) maps stack traces back to the TypeScript sources. Otherwise the
 * script runs with a V8 code cache beside it (tools/build/code-cache.cjs).
 */
const path = require("node:path");
const { checkFreshness, OUT_DIR, ROOT } = require("../tools/build/freshness.cjs");
const { runWithCodeCache } = require("../tools/build/code-cache.cjs");

/**
 * Pulumi's SDK captures a stack trace for every promise it creates (runtime/debuggable.js, kept for
 * its leak report): about a tenth of the plan's CPU time, more per resource on big stacks. The plan
 * prints messages, never stacks, so it runs without them, unless PLAN_DEBUG (the plan then prints
 * the stack of an internal error) or PULUMI_DEBUG_PROMISE_LEAKS (Pulumi then prints those traces).
 */
const WITHOUT_STACK_TRACES = new Set(["plan"]);

/** @param {string} message */
function fail(message) {
  process.stderr.write(`run: ${message}\n`);
  process.exit(1);
}

async function main() {
  const [script, ...args] = process.argv.slice(2);
  if (!script || script.startsWith("-"))
    fail("usage: node cli/run.cjs <script> [args...] (a script is cli/<script>.ts or bench/<script>.ts)");

  const state = checkFreshness(ROOT, OUT_DIR);
  let manifest = state.fresh ? state.manifest : undefined;
  if (!manifest) {
    // Only now load the builder (and esbuild).
    const { ensureBuilt, BuildError } = require("../tools/build/compile.cjs");
    const started = Date.now();
    let built = false;
    try {
      manifest = await ensureBuilt({
        onBuild: (reason) => (
          (built = true), process.stderr.write(`run: compiling scripts into .build/ (${reason})\n`)
        ),
      });
    } catch (err) {
      const message =
        err instanceof BuildError
          ? err.message
          : `internal error while building: ${/** @type {Error} */ (err).message}`;
      fail(`${message}\nNothing was run: fix the error above, then run the command again.`);
      return;
    }
    if (built) process.stderr.write(`run: compiled in ${Date.now() - started} ms\n`);
  }
  if (!manifest.entries.includes(script))
    fail(`no script "${script}" (cli/${script}.ts, bench/${script}.ts); scripts: ${manifest.entries.join(", ")}`);

  const compiled = path.join(OUT_DIR, `${script}.js`);
  // The script sees the argv it would see as `node .build/<script>.js args...`.
  process.argv = [process.argv[0], compiled, ...args];
  if (process.env.HUB_SOURCE_MAPS || process.env.PLAN_DEBUG) process.setSourceMapsEnabled(true);
  else if (WITHOUT_STACK_TRACES.has(script) && !process.env.PLAN_DEBUG && !process.env.PULUMI_DEBUG_PROMISE_LEAKS)
    Error.stackTraceLimit = 0;
  if (process.env.PLAN_BENCH_REPORT) {
    // For `npm run bench`: CPU time is only knowable from inside the process.
    process.on("exit", () => {
      const cpu = process.cpuUsage();
      process.stderr.write(`bench: cpu_ms=${((cpu.user + cpu.system) / 1000).toFixed(1)}\n`);
    });
  }
  // Source maps are the loader's (require); otherwise with the build's V8 code cache.
  if (process.env.HUB_SOURCE_MAPS || process.env.PLAN_DEBUG) require(compiled);
  else runWithCodeCache(compiled, `${manifest.builtAt} ${manifest.outputs[`${script}.js`]}`);
}

main().catch((err) => fail(`internal error: ${err instanceof Error ? err.message : String(err)}`));
