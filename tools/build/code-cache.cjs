// @ts-check
"use strict";
/**
 * Runs a compiled script (.build/<name>.js) as `require` would, with a V8 code cache beside it, so a
 * run does not parse and compile the script's 2 MB again (about 50 ms of every `npm run plan` on the
 * project's 2-core machine). Node 22's module.enableCompileCache() does this for every module; on
 * Node 20 the runner does it for its own scripts only. Plain Node built-ins: this runs on every run.
 *
 * - The cache is written at exit when there was none or V8 refused it, after the run, so it holds
 *   the functions the run compiled too. Written to a temporary file and renamed: parallel runs
 *   never read half a file.
 * - V8 checks a cache against the source's length, not its text, so the file is named by the build
 *   (its manifest's time and the script's size): a run never uses the cache of another build, even
 *   one a process of the old build writes after a new build.
 * - Anything that goes wrong with the cache only costs the saving: the script runs without it.
 */
const crypto = require("node:crypto");
const fs = require("node:fs");
const Module = require("node:module");
const path = require("node:path");
const vm = require("node:vm");

const SUFFIX = ".v8cache";

/**
 * @param {string} compiled the script's path
 * @param {string} build what names this build (the manifest's builtAt and the script's size)
 */
function cacheFileOf(compiled, build) {
  const key = crypto.createHash("sha256").update(build).digest("hex").slice(0, 16);
  return `${compiled}.${key}${SUFFIX}`;
}

/**
 * Loads and runs `compiled` as the module `require(compiled)` would, with the code cache.
 * @param {string} compiled
 * @param {string} build
 */
function runWithCodeCache(compiled, build) {
  const cacheFile = cacheFileOf(compiled, build);
  /** @type {Buffer | undefined} */
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const source = fs.readFileSync(compiled, "utf8");
  const script = new vm.Script(Module.wrap(source), { filename: compiled, cachedData });
  if (!cachedData || script.cachedDataRejected) process.on("exit", () => writeCache(script, compiled, cacheFile));
  const module = new Module(compiled, require.main);
  module.filename = compiled;
  // In require.cache, as require() would put it.
  require.cache[compiled] = module;
  const wrapper = script.runInThisContext();
  wrapper.call(
    module.exports,
    module.exports,
    Module.createRequire(compiled),
    module,
    compiled,
    path.dirname(compiled),
  );
  module.loaded = true;
}

/** @param {vm.Script} script @param {string} compiled @param {string} cacheFile */
function writeCache(script, compiled, cacheFile) {
  const tmp = `${cacheFile}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, script.createCachedData());
    fs.renameSync(tmp, cacheFile);
    // Other builds' caches of this script.
    const dir = path.dirname(compiled);
    const prefix = `${path.basename(compiled)}.`;
    for (const f of fs.readdirSync(dir))
      if (f.startsWith(prefix) && f.endsWith(SUFFIX) && path.join(dir, f) !== cacheFile)
        fs.rmSync(path.join(dir, f), { force: true });
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}

module.exports = { runWithCodeCache, cacheFileOf };
