// @ts-check
"use strict";
/**
 * Whether .build/ (the compiled command-line scripts) still matches the sources, and the lock two
 * builders take so only one builds at a time. Plain Node built-ins only: this runs on every
 * `npm run plan`, before anything else is loaded, so it must cost a few milliseconds.
 *
 * The build records every input's size, mtime and SHA-256. A build is fresh when the same files
 * exist (none added, none removed) and each has the recorded size and mtime, or, when its mtime
 * moved (touch, git checkout), the recorded hash. Comparing for equality rather than "newer than
 * the output" also catches a file restored with an old mtime (cp -p, git stash pop, tar).
 */
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "../..");
const OUT_DIR = path.join(ROOT, ".build");
const MANIFEST_FILE = "manifest.json";
/** Bumped when the manifest's shape or the build's output layout changes: older builds are stale. */
const FORMAT = 1;

/** Directories whose files can end up in a compiled script (every import points inside them). */
const SOURCE_DIRS = ["bench", "cli", "infra", "programs", "services", "simulator", "stacks", "tools"];
/** What esbuild can load from them; anything else (READMEs) cannot change the output. */
const SOURCE_FILE = /\.(?:[cm]?[jt]sx?|json)$/;
/**
 * Project files that change the output without being imported: npm's lock files pin the packages
 * inlined into the gatekeeper bundle and esbuild's own version; tsconfig.json steers the transform.
 * node_modules/.package-lock.json is rewritten by every install, so a re-install rebuilds.
 */
const PROJECT_INPUTS = ["package.json", "package-lock.json", "tsconfig.json", "node_modules/.package-lock.json"];

/** @typedef {{ size: number, mtimeMs: number, sha256: string }} InputRecord */
/** @typedef {{ format: number, builtAt: string, entries: string[], inputs: Record<string, InputRecord>, outputs: Record<string, number> }} Manifest */
/** @typedef {{ fresh: true, manifest: Manifest } | { fresh: false, reason: string }} Freshness */

/** Every source file under SOURCE_DIRS plus the project inputs that exist, as root-relative paths. */
function currentInputs(root = ROOT) {
  /** @type {string[]} */
  const files = [];
  const walk = (/** @type {string} */ rel) => {
    let entries;
    try {
      entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const child = `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules" && !entry.name.startsWith(".")) walk(child);
      } else if (SOURCE_FILE.test(entry.name)) {
        files.push(child);
      }
    }
  };
  for (const dir of SOURCE_DIRS) walk(dir);
  for (const file of PROJECT_INPUTS) if (fs.existsSync(path.join(root, file))) files.push(file);
  return files.sort();
}

/** @param {string} file */
const sha256 = (file) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/**
 * Size, mtime and hash of each file, taken before the build reads them: a file edited while the
 * build runs then differs from its record, and the next run builds again.
 * @param {readonly string[]} files root-relative
 * @returns {Record<string, InputRecord>}
 */
function recordInputs(files, root = ROOT) {
  /** @type {Record<string, InputRecord>} */
  const records = {};
  for (const rel of files) {
    const file = path.join(root, rel);
    const stat = fs.statSync(file);
    records[rel] = { size: stat.size, mtimeMs: stat.mtimeMs, sha256: sha256(file) };
  }
  return records;
}

/** @returns {Manifest | undefined} */
function readManifest(outDir = OUT_DIR) {
  try {
    return JSON.parse(fs.readFileSync(path.join(outDir, MANIFEST_FILE), "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Whether the compiled scripts in outDir were built from the sources as they are now.
 * @returns {Freshness}
 */
function checkFreshness(root = ROOT, outDir = path.join(root, ".build")) {
  const manifest = readManifest(outDir);
  if (!manifest) return { fresh: false, reason: "no complete build yet" };
  if (manifest.format !== FORMAT) return { fresh: false, reason: "the build layout changed" };
  for (const [output, size] of Object.entries(manifest.outputs)) {
    const stat = fs.statSync(path.join(outDir, output), { throwIfNoEntry: false });
    if (!stat || stat.size !== size)
      return { fresh: false, reason: `${path.relative(root, path.join(outDir, output))} is missing or damaged` };
  }
  const recorded = manifest.inputs;
  const now = new Set(currentInputs(root));
  for (const rel of now) if (!(rel in recorded)) return { fresh: false, reason: `${rel} is new` };
  for (const [rel, record] of Object.entries(recorded)) {
    const file = path.join(root, rel);
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    if (!stat) return { fresh: false, reason: `${rel} was removed` };
    if (stat.size === record.size && stat.mtimeMs === record.mtimeMs) continue;
    if (stat.size !== record.size || sha256(file) !== record.sha256) return { fresh: false, reason: `${rel} changed` };
  }
  return { fresh: true, manifest };
}

const LOCK_DIR = ".lock";
/** A build takes about a second; one holding the lock for this long has hung or died unseen. */
const LOCK_ABANDONED_MS = 5 * 60_000;
const LOCK_POLL_MS = 50;

/** @param {number} pid */
function processAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return /** @type {NodeJS.ErrnoException} */ (err).code === "EPERM";
  }
}

/** @param {string} lock */
function lockAbandoned(lock) {
  const stat = fs.statSync(lock, { throwIfNoEntry: false });
  if (!stat) return false;
  let owner;
  try {
    owner = JSON.parse(fs.readFileSync(path.join(lock, "owner.json"), "utf8"));
  } catch {
    // The owner writes this right after mkdir; without it for seconds, the owner died in between.
    return Date.now() - stat.mtimeMs > 10_000;
  }
  if (owner.host === os.hostname() && !processAlive(owner.pid)) return true;
  return Date.now() - stat.mtimeMs > LOCK_ABANDONED_MS;
}

/**
 * Runs fn while holding outDir/.lock (mkdir is atomic), waiting for another builder if needed.
 * A lock left by a crashed builder (dead pid on this host, or older than five minutes) is broken.
 * @template T
 * @param {() => Promise<T>} fn
 * @param {{ outDir?: string, onWait?: (owner: string) => void }} [options]
 * @returns {Promise<T>}
 */
async function withBuildLock(fn, options = {}) {
  const outDir = options.outDir ?? OUT_DIR;
  const lock = path.join(outDir, LOCK_DIR);
  fs.mkdirSync(outDir, { recursive: true });
  let told = false;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== "EEXIST") throw err;
    }
    if (lockAbandoned(lock)) {
      fs.rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (!told && options.onWait) {
      told = true;
      options.onWait(lock);
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
  try {
    fs.writeFileSync(
      path.join(lock, "owner.json"),
      JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString() }),
    );
    return await fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

module.exports = {
  ROOT,
  OUT_DIR,
  MANIFEST_FILE,
  FORMAT,
  SOURCE_DIRS,
  PROJECT_INPUTS,
  currentInputs,
  recordInputs,
  readManifest,
  checkFreshness,
  withBuildLock,
};
