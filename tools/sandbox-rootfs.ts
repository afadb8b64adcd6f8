import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import {
  ROOTFS_MANIFEST,
  ROOTFS_RECIPE,
  ROOTFS_TREE,
  rootfsBuildScript,
  type RootfsManifest,
} from "../programs/sandbox/rootfs";
import { BuildError, buildLock, toolCli, toolsCacheRoot } from "./go-build";

/**
 * Builds the sandbox languages' root file system for the tests, with the script the sandbox node
 * runs at setup (programs/sandbox/rootfs.ts), cached by recipe:
 *
 *   npx tsx tools/sandbox-rootfs.ts build    # builds if missing (root, debootstrap); prints the directory
 *   npx tsx tools/sandbox-rootfs.ts path     # prints where it is (or would be)
 *
 * ~/.cache/inference-hub/tools/sandbox-rootfs-<recipe hash>/{rootfs,manifest.json}; a cold build
 * downloads about 60 MB of Debian packages and takes a few minutes. One difference from the node:
 * the mirror is deb.debian.org (SANDBOX_ROOTFS_MIRROR overrides), not the pinned snapshot, so a
 * package Debian has updated since the pin is a warning recorded in the manifest, not a failure.
 */

export const TEST_MIRROR = process.env.SANDBOX_ROOTFS_MIRROR || "http://deb.debian.org/debian/";

const recipeHash = (): string => createHash("sha256").update(JSON.stringify(ROOTFS_RECIPE)).digest("hex").slice(0, 12);

/** INFERENCE_HUB_SANDBOX_ROOTFS overrides (a directory holding rootfs/ and manifest.json). */
export function sandboxRootfsDir(): string {
  return process.env.INFERENCE_HUB_SANDBOX_ROOTFS || path.join(toolsCacheRoot(), `sandbox-rootfs-${recipeHash()}`);
}

export function readRootfsManifest(dir: string = sandboxRootfsDir()): RootfsManifest | undefined {
  const file = path.join(dir, ROOTFS_MANIFEST);
  if (!existsSync(file) || !existsSync(path.join(dir, ROOTFS_TREE, "usr"))) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as RootfsManifest;
  } catch {
    return undefined;
  }
}

export const rootfsMissingReason = (): string =>
  `no sandbox rootfs at ${sandboxRootfsDir()} (build it once, as root: npx tsx tools/sandbox-rootfs.ts build; .ci/run does)`;

export function buildSandboxRootfs(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): string {
  const dir = sandboxRootfsDir();
  if (readRootfsManifest(dir)) return dir;
  if (process.getuid?.() !== 0) throw new BuildError("building the sandbox rootfs needs root (debootstrap and chroot)");
  if (spawnSync("sh", ["-c", "command -v debootstrap || test -x /usr/sbin/debootstrap"]).status !== 0)
    throw new BuildError("debootstrap is not installed (apt-get install debootstrap; .ci/install-system does)");
  const unlock = buildLock(dir, path.join(dir, ROOTFS_MANIFEST));
  try {
    if (readRootfsManifest(dir)) return dir;
    log(`building the sandbox rootfs (Debian ${ROOTFS_RECIPE.suite} from ${TEST_MIRROR}) in ${dir}; a few minutes`);
    const started = Date.now();
    const result = spawnSync("bash", ["-c", rootfsBuildScript({ dir, mirror: TEST_MIRROR, versions: "warn" })], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (result.status !== 0)
      throw new BuildError(
        `the sandbox rootfs build failed (exit ${result.status}):\n${(result.stderr || result.stdout).slice(-4000)}`,
      );
    if (result.stderr.trim()) log(result.stderr.trim());
    log(`built ${dir} in ${Math.round((Date.now() - started) / 1000)} s`);
    return dir;
  } finally {
    unlock();
  }
}

if (require.main === module)
  toolCli("sandbox-rootfs.ts", { build: () => [buildSandboxRootfs()], path: () => [sandboxRootfsDir()] });
