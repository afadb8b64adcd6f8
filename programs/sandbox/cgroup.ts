import { existsSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";

/**
 * The host cgroup runsc puts a sandbox in (its OCI spec's cgroupsPath, runsc's cgroupfs driver):
 * what the executor reads for CPU time, peak memory and OOM kills, and writes to change a warm
 * sandbox's memory limit before it runs a request. gVisor leaves denial of service to these host
 * cgroups (gvisor.dev/docs/architecture_guide/security). Both hierarchies: cgroup v2 on the
 * node (Debian 13), v1 on the machines the tests run on.
 */

const ROOT = "/sys/fs/cgroup";

export type CgroupVersion = 1 | 2;

export function cgroupVersion(root = ROOT): CgroupVersion {
  return existsSync(path.join(root, "cgroup.controllers")) ? 2 : 1;
}

export interface CgroupStats {
  /** CPU time of every process in the cgroup (the program and gVisor's own threads), µs. */
  readonly cpuUsec: number;
  /** Highest memory use since the cgroup was made (v2: memory.peak; v1: max_usage_in_bytes). */
  readonly memoryPeakBytes: number;
  /** Processes the host OOM killer killed in it. */
  readonly oomKills: number;
}

const readText = (file: string): string | undefined => {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
};
const readNumber = (file: string): number => Number(readText(file)?.trim() ?? 0) || 0;
const field = (text: string | undefined, name: string): number =>
  Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text ?? "")?.[1] ?? 0);

/** One sandbox's cgroup: `relative` is the spec's cgroupsPath, e.g. "/inference-hub-sandbox/s-1". */
export class SandboxCgroup {
  readonly version: CgroupVersion;

  constructor(
    readonly relative: string,
    private readonly root = ROOT,
  ) {
    this.version = cgroupVersion(root);
  }

  private dir(controller: string): string {
    return this.version === 2 ? path.join(this.root, this.relative) : path.join(this.root, controller, this.relative);
  }

  stats(): CgroupStats {
    if (this.version === 2) {
      const dir = this.dir("");
      return {
        cpuUsec: field(readText(path.join(dir, "cpu.stat")), "usage_usec"),
        memoryPeakBytes: readNumber(path.join(dir, "memory.peak")),
        oomKills: field(readText(path.join(dir, "memory.events")), "oom_kill"),
      };
    }
    return {
      cpuUsec: Math.round(readNumber(path.join(this.dir("cpuacct"), "cpuacct.usage")) / 1000),
      memoryPeakBytes: readNumber(path.join(this.dir("memory"), "memory.max_usage_in_bytes")),
      oomKills: field(readText(path.join(this.dir("memory"), "memory.oom_control")), "oom_kill"),
    };
  }

  /** A new memory limit for a running sandbox (a warm one taking a request's limit). */
  setMemoryLimit(bytes: number): void {
    if (this.version === 2) writeFileSync(path.join(this.dir(""), "memory.max"), String(bytes));
    else writeFileSync(path.join(this.dir("memory"), "memory.limit_in_bytes"), String(bytes));
  }

  /** The directories that exist for this cgroup (empty once runsc deleted it). */
  existing(): string[] {
    // v1: every hierarchy, named ones (name=systemd) included: runsc makes its directory in each.
    const dirs = this.version === 2 ? [this.dir("")] : readdirSync(this.root).map((c) => this.dir(c));
    return [...new Set(dirs)].filter((d) => existsSync(d));
  }

  /** Removes what runsc left (an empty cgroup directory is removed with rmdir). */
  remove(): void {
    for (const dir of this.existing().sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(dir);
      } catch {
        // Still populated (a process not yet reaped) or already gone: the sweep at start retries.
      }
    }
  }
}

/** Every sandbox cgroup under `parent` (e.g. "/inference-hub-sandbox"), in any controller. */
export function sandboxCgroupsUnder(parent: string, root = ROOT): string[] {
  const version = cgroupVersion(root);
  const bases = version === 2 ? [path.join(root, parent)] : readdirSync(root).map((c) => path.join(root, c, parent));
  const found = new Set<string>();
  for (const base of bases) {
    try {
      for (const entry of readdirSync(base, { withFileTypes: true }))
        if (entry.isDirectory()) found.add(path.join(parent, entry.name));
    } catch {
      // This controller has no such parent.
    }
  }
  return [...found];
}

/** Removes `parent` itself once no sandbox cgroup is left under it (a stopped API leaves the host as it found it). */
export function removeCgroupParent(parent: string, root = ROOT): void {
  if (sandboxCgroupsUnder(parent, root).length > 0) return;
  new SandboxCgroup(parent, root).remove();
}
