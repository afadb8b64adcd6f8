import { randomBytes, createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { startSandboxApi, type SandboxApi } from "../../programs/sandbox/app";
import { readSandboxConfig } from "../../programs/sandbox/config";
import { silentLogger, jsonLogger } from "../../programs/gatekeeper/log";
import { runscMissingReason, runscPath } from "../../tools/runsc";
import { readRootfsManifest, rootfsMissingReason, sandboxRootfsDir } from "../../tools/sandbox-rootfs";

/**
 * The sandbox API for the tests: the real program with the real runsc (built at the pinned
 * version by tools/runsc.ts) and the languages' tree built by the node's own recipe
 * (tools/sandbox-rootfs.ts). Each file gets its own state directory and cgroup parent,
 * so `leftovers` can prove that nothing of its executions remains.
 */

/** Why the sandbox cannot run here, or undefined. */
export function sandboxMissing(): string | undefined {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("not root (runsc needs namespaces, mounts and cgroups)");
  if (!runscPath()) missing.push(runscMissingReason());
  if (!readRootfsManifest()) missing.push(rootfsMissingReason());
  return missing.length ? missing.join("; ") : undefined;
}

export interface TestSandbox {
  readonly api: SandboxApi;
  readonly url: string;
  readonly token: string;
  readonly stateDir: string;
  readonly cgroupParent: string;
  call(
    method: string,
    target: string,
    body?: unknown,
    keyId?: string,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: any; headers: Headers }>;
  close(): Promise<void>;
}

export async function startTestSandbox(label: string, env: Record<string, string> = {}): Promise<TestSandbox> {
  const tag = `${label}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const token = randomBytes(24).toString("hex");
  const stateDir = `/run/ih-test-${tag}`;
  const cgroupParent = `/ih-test-${tag}`;
  const config = readSandboxConfig({
    SANDBOX_TOKEN_SHA256: createHash("sha256").update(token).digest("hex"),
    SANDBOX_HOST: "127.0.0.1",
    SANDBOX_PORT: "0",
    SANDBOX_RUNSC: runscPath()!,
    SANDBOX_ROOTFS_DIR: sandboxRootfsDir(),
    SANDBOX_STATE_DIR: stateDir,
    SANDBOX_CGROUP_PARENT: cgroupParent,
    SANDBOX_SLOTS: "2",
    SANDBOX_WARM: "2",
    ...env,
  });
  const api = await startSandboxApi(config, process.env.SANDBOX_TEST_LOG ? jsonLogger : silentLogger);
  const url = `http://127.0.0.1:${api.port}`;
  return {
    api,
    url,
    token,
    stateDir,
    cgroupParent,
    async call(method, target, body, keyId = "k_test", headers = {}) {
      const answer = await fetch(`${url}${target}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          "x-hub-key-id": keyId,
          "content-type": "application/json",
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await answer.text();
      return { status: answer.status, json: text ? JSON.parse(text) : undefined, headers: answer.headers };
    },
    close: () => api.close(),
  };
}

export interface Leftovers {
  readonly processes: readonly string[];
  readonly mounts: readonly string[];
  readonly cgroups: readonly string[];
  readonly files: readonly string[];
}

/** runsc processes of this state directory, mounts under it, cgroups under the parent, files in its bundles directory. */
export function leftovers(stateDir: string, cgroupParent: string): Leftovers {
  const processes: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(`--root=${stateDir}/`)) processes.push(`${pid}: ${cmdline.slice(0, 160)}`);
    } catch {
      // The process ended while being read.
    }
  }
  const mounts = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(`${stateDir}/`));
  const cgroups = readdirSync("/sys/fs/cgroup")
    .map((c) =>
      existsSync(path.join("/sys/fs/cgroup", "cgroup.controllers"))
        ? path.join("/sys/fs/cgroup", cgroupParent)
        : path.join("/sys/fs/cgroup", c, cgroupParent),
    )
    .filter((d, i, all) => all.indexOf(d) === i && existsSync(d));
  const bundles = path.join(stateDir, "bundles");
  const files = existsSync(bundles) ? readdirSync(bundles) : [];
  return { processes, mounts, cgroups, files };
}
