import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import * as path from "node:path";

/**
 * gVisor's `runsc`, as the executor calls it: one command line per operation, the same global
 * flags everywhere. Nothing of the isolation is done here; this file only spells the calls.
 *
 *   --network=none   no network stack beyond loopback inside the sandbox
 *   --overlay2=none  the root file system is the read-only tree itself, no writable overlay
 *   --platform       systrap (the default; KVM panics in nested VMs like the test machines)
 *   --host-uds, --host-fifo stay at their defaults (none): no host sockets or FIFOs reachable
 */

export interface RunscOptions {
  readonly binary: string;
  /** runsc's state directory (--root), one per API process. */
  readonly stateDir: string;
  /** @default "systrap" */
  readonly platform?: "systrap" | "ptrace";
}

export interface RunscResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** runsc's own failure status (runsc/cli/cli.go: "an error that is unlikely to be used by the application"). */
export const RUNSC_FAILURE_STATUS = 128;

export class Runsc {
  constructor(readonly options: RunscOptions) {}

  globalFlags(): string[] {
    return [
      `--root=${this.options.stateDir}`,
      `--platform=${this.options.platform ?? "systrap"}`,
      "--network=none",
      "--overlay2=none",
      "--host-settings=ignore",
    ];
  }

  /** Runs one runsc command to its end; never rejects (the caller judges the status). */
  run(args: readonly string[], timeoutMs = 30_000): Promise<RunscResult> {
    return new Promise((resolve) => {
      const child = spawn(this.options.binary, [...this.globalFlags(), ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout = (stdout + d).slice(-65536)));
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-65536)));
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("error", (error) => {
        clearTimeout(timer);
        resolve({ code: null, stdout, stderr: `${stderr}${error.message}` });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /**
   * `runsc run --detach`: creates and starts the sandbox of a bundle. The sandbox inherits runsc's
   * stdio, so it gets /dev/null and a log file in the bundle, never a pipe this process waits on.
   */
  async start(id: string, bundleDir: string): Promise<void> {
    const logFile = path.join(bundleDir, "runsc-start.log");
    const log = openSync(logFile, "w", 0o600);
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(
        this.options.binary,
        [...this.globalFlags(), "run", "--detach", `--bundle=${bundleDir}`, id],
        { stdio: ["ignore", "ignore", log] },
      );
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.on("error", () => resolve(null));
      child.on("exit", (status) => {
        clearTimeout(timer);
        resolve(status);
      });
    }).finally(() => closeSync(log));
    if (code !== 0)
      throw new Error(`runsc run ${id} failed (exit ${code}): ${lastLine(readFileSync(logFile, "utf8"))}`);
  }

  /**
   * `runsc exec --process <file>` with the program's stdio on host fds 3, 4 and 5 (passed as 0, 1
   * and 2), so runsc's own messages on its stderr never mix with the program's.
   */
  exec(id: string, processFile: string): ChildProcess {
    return spawn(
      this.options.binary,
      [
        ...this.globalFlags(),
        "exec",
        `--process=${processFile}`,
        "--pass-fd=3:0",
        "--pass-fd=4:1",
        "--pass-fd=5:2",
        id,
      ],
      {
        stdio: ["ignore", "ignore", "pipe", "pipe", "pipe", "pipe"],
      },
    );
  }

  /** `runsc delete --force`: stops every process of the sandbox and removes its state and cgroup. */
  async destroy(id: string): Promise<RunscResult> {
    return this.run(["delete", "--force", id], 30_000);
  }

  /** Process count inside the sandbox (`runsc ps --format=json`), or undefined if it cannot be read. */
  async processCount(id: string): Promise<number | undefined> {
    const result = await this.run(["ps", "--format=json", id], 10_000);
    if (result.code !== 0) return undefined;
    try {
      const list: unknown = JSON.parse(result.stdout);
      return Array.isArray(list) ? list.length : undefined;
    } catch {
      return undefined;
    }
  }

  /** Sandbox ids in the state directory (`runsc list -q`). */
  async list(): Promise<string[]> {
    const result = await this.run(["list", "--quiet"], 10_000);
    return result.code === 0
      ? result.stdout
          .split("\n")
          .map((l) => l.trim())
          .filter(Boolean)
      : [];
  }
}

export const lastLine = (text: string): string => text.trim().split("\n").slice(-1)[0]?.slice(0, 300) ?? "";
