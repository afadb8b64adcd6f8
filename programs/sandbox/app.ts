import { spawnSync } from "node:child_process";
import { promises as fsp, readFileSync } from "node:fs";
import type * as http from "node:http";
import * as path from "node:path";
import type { Logger } from "../gatekeeper/log";
import { removeCgroupParent, sandboxCgroupsUnder, SandboxCgroup } from "./cgroup";
import type { SandboxConfig } from "./config";
import { Executor } from "./executor";
import { languageTable } from "./languages";
import { ROOTFS_MANIFEST, ROOTFS_TREE, type RootfsManifest } from "./rootfs";
import { Runsc } from "./runsc";
import { unmount } from "./sandbox";
import { createSandboxServer, listen } from "./server";

/**
 * The sandbox API, started: leftovers of an earlier process removed, the warm pool filling, the
 * server listening. main.ts runs it as the node's service; the tests run it in-process.
 */
export interface SandboxApi {
  readonly executor: Executor;
  readonly server: http.Server;
  readonly port: number;
  close(): Promise<void>;
}

export function readManifest(rootfsDir: string): RootfsManifest {
  const file = path.join(rootfsDir, ROOTFS_MANIFEST);
  try {
    return JSON.parse(readFileSync(file, "utf8")) as RootfsManifest;
  } catch (error) {
    throw new Error(
      `the languages' root file system is not built: ${file} is missing or unreadable (${(error as Error).message}); the node's setup builds it (programs/sandbox/rootfs.ts)`,
    );
  }
}

export function runscVersion(binary: string): string {
  const out = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 20_000 });
  const version = /^runsc version (\S+)/m.exec(out.stdout ?? "")?.[1];
  if (!version)
    throw new Error(
      `${binary} --version did not answer with a runsc version (${(out.stderr || out.error?.message || "").trim().slice(0, 200)})`,
    );
  return version;
}

/**
 * Whatever an earlier process left (a crash, a kill -9): its sandboxes, their scratch mounts,
 * their bundles and cgroups. Nothing of a previous execution survives a restart.
 */
export async function sweepLeftovers(
  runsc: Runsc,
  stateDir: string,
  cgroupParent: string,
  log: Logger,
): Promise<number> {
  let removed = 0;
  for (const id of await runsc.list()) {
    await runsc.destroy(id);
    removed += 1;
  }
  const bundles = path.join(stateDir, "bundles");
  const mounts = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1])
    .filter((m): m is string => m?.startsWith(`${bundles}/`));
  for (const mount of mounts.sort((a, b) => b.length - a.length)) await unmount(mount).catch(() => undefined);
  await fsp.rm(bundles, { recursive: true, force: true });
  for (const cgroup of sandboxCgroupsUnder(cgroupParent)) new SandboxCgroup(cgroup).remove();
  if (removed > 0 || mounts.length > 0)
    log.warn("removed sandboxes an earlier run left", { sandboxes: removed, mounts: mounts.length });
  return removed;
}

export async function startSandboxApi(config: SandboxConfig, log: Logger): Promise<SandboxApi> {
  const version = runscVersion(config.runsc);
  const manifest = readManifest(config.rootfsDir);
  const languages = languageTable(manifest.packages);
  if (languages.list.length === 0)
    throw new Error(
      `the root file system at ${config.rootfsDir} holds none of the sandbox's languages (manifest packages: ${Object.keys(manifest.packages).join(", ") || "none"})`,
    );
  const runsc = new Runsc({
    binary: config.runsc,
    stateDir: path.join(config.stateDir, "runsc"),
    platform: config.platform,
  });
  await fsp.mkdir(path.join(config.stateDir, "runsc"), { recursive: true, mode: 0o700 });
  await sweepLeftovers(runsc, config.stateDir, config.cgroupParent, log);
  const bundlesDir = path.join(config.stateDir, "bundles");
  await fsp.mkdir(bundlesDir, { recursive: true, mode: 0o711 });
  const executor = new Executor({
    host: { runsc, rootfs: path.join(config.rootfsDir, ROOTFS_TREE), bundlesDir, cgroupParent: config.cgroupParent },
    languages,
    ceiling: config.ceiling,
    slots: config.slots,
    slotsPerKey: config.slotsPerKey,
    queueLimit: config.queueLimit,
    warm: config.warm,
    maxSessions: config.maxSessions,
    maxSessionsPerKey: config.maxSessionsPerKey,
    log,
  });
  void executor.start();
  const server = createSandboxServer({
    executor,
    languages,
    tokenDigest: config.tokenDigest,
    log,
    runscVersion: version,
  });
  const port = await listen(server, config.port, config.host);
  return {
    executor,
    server,
    port,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await executor.close();
      removeCgroupParent(config.cgroupParent);
    },
  };
}
