import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import type { Readable, Writable } from "node:stream";
import { type CgroupStats, SandboxCgroup } from "./cgroup";
import { HOST_PIDS_LIMIT, processSpec, SANDBOX_MEMORY_OVERHEAD, SANDBOX_UID, sandboxSpec, SCRATCH_PATH } from "./oci";
import type { LimitHit, Limits } from "./protocol";
import { lastLine, Runsc, RUNSC_FAILURE_STATUS } from "./runsc";

/**
 * One gVisor sandbox: a runsc container whose first process only waits, a size-limited host
 * tmpfs for its /work, its own host cgroup. Programs run in it through `runsc exec`, watched
 * here for the limits gVisor leaves to its caller: wall clock, CPU time (read from the host
 * cgroup), output size. Memory is the host cgroup's; the process count is RLIMIT_NPROC's.
 * Destroying it removes the container, its cgroup, the tmpfs and the bundle.
 */

export interface SandboxHost {
  readonly runsc: Runsc;
  /** The Debian tree, mounted read-only as every sandbox's root. */
  readonly rootfs: string;
  /** Where bundles live (config.json, process files, the scratch mount point): one directory per sandbox. */
  readonly bundlesDir: string;
  /** Parent of every sandbox's cgroup, e.g. "/inference-hub-sandbox". */
  readonly cgroupParent: string;
}

export interface SandboxFile {
  /** Relative to /work (checked by the protocol's schema: no "..", no absolute path). */
  readonly name: string;
  readonly content: Buffer;
}

export interface RunInput {
  readonly args: readonly string[];
  readonly stdin: Buffer;
  readonly limits: Limits;
}

export interface RunOutcome {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly stdoutTruncated: boolean;
  readonly stderrTruncated: boolean;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly limitsHit: readonly LimitHit[];
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly memoryBytes: number;
  /** The sandbox itself failed (not the program): runsc's last words. */
  readonly sandboxError?: string;
  /** The sandbox can no longer run anything (killed by a limit, or dead). */
  readonly spent: boolean;
}

const CPU_POLL_MS = 25;
/** How long output is still read after the program exited. */
const OUTPUT_DRAIN_MS = 100;
const SIGNALS: Readonly<Record<number, string>> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  10: "SIGUSR1",
  11: "SIGSEGV",
  12: "SIGUSR2",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  31: "SIGSYS",
};

/** Runs a host command to its end; rejects with its stderr when it fails. */
function host(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")}: exit ${code}: ${lastLine(stderr)}`)),
    );
  });
}

export const mountTmpfs = (dir: string, bytes: number): Promise<void> =>
  host("mount", [
    "-t",
    "tmpfs",
    "-o",
    `size=${bytes},mode=0700,uid=${SANDBOX_UID},gid=${SANDBOX_UID},nosuid,nodev`,
    "tmpfs",
    dir,
  ]);
export const unmount = (dir: string): Promise<void> => host("umount", ["--lazy", dir]);

let sequence = 0;
/** Unique per process and start: sandbox ids never repeat, even across restarts of the API. */
export const newSandboxId = (): string =>
  `ih-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}-${(sequence++).toString(36)}`;

export class Sandbox {
  private runs = 0;
  private destroyed: Promise<void> | undefined;
  /** The cgroup's figures just before a limit ended the sandbox (its cgroup goes with it). */
  private finalStats: CgroupStats | undefined;

  private constructor(
    private readonly host: SandboxHost,
    readonly id: string,
    readonly bundleDir: string,
    readonly scratchDir: string,
    readonly cgroup: SandboxCgroup,
    private memoryBytes: number,
    private scratchBytes: number,
    readonly createdMs: number,
  ) {}

  /** Creates and starts a sandbox; on any failure nothing of it is left behind. */
  static async create(
    sandboxHost: SandboxHost,
    sizes: { readonly memoryBytes: number; readonly scratchBytes: number },
  ): Promise<Sandbox> {
    const id = newSandboxId();
    const bundleDir = path.join(sandboxHost.bundlesDir, id);
    const scratchDir = path.join(bundleDir, "work");
    const cgroupsPath = `${sandboxHost.cgroupParent}/${id}`;
    const sandbox = new Sandbox(
      sandboxHost,
      id,
      bundleDir,
      scratchDir,
      new SandboxCgroup(cgroupsPath),
      sizes.memoryBytes,
      sizes.scratchBytes,
      Date.now(),
    );
    try {
      await fsp.mkdir(scratchDir, { recursive: true, mode: 0o700 });
      await mountTmpfs(scratchDir, sizes.scratchBytes);
      const spec = sandboxSpec({ rootfs: sandboxHost.rootfs, scratchDir, cgroupsPath, memoryBytes: sizes.memoryBytes });
      await fsp.writeFile(path.join(bundleDir, "config.json"), JSON.stringify(spec));
      await sandboxHost.runsc.start(id, bundleDir);
    } catch (error) {
      await sandbox.destroy();
      throw error;
    }
    return sandbox;
  }

  get used(): boolean {
    return this.runs > 0;
  }

  get alive(): boolean {
    return this.destroyed === undefined;
  }

  /** Sets the memory and scratch sizes of the next run (a warm sandbox was made with the defaults). */
  async resize(memoryBytes: number, scratchBytes: number): Promise<void> {
    if (memoryBytes !== this.memoryBytes) {
      this.cgroup.setMemoryLimit(memoryBytes + SANDBOX_MEMORY_OVERHEAD);
      this.memoryBytes = memoryBytes;
    }
    if (scratchBytes !== this.scratchBytes) {
      await host("mount", ["-o", `remount,size=${scratchBytes}`, this.scratchDir]);
      this.scratchBytes = scratchBytes;
    }
  }

  /**
   * Writes the program's files into /work from the host. Only for a sandbox that has run nothing
   * yet: a directory a program had its hands on may hold symlinks leading out of it.
   */
  async writeFreshFiles(files: readonly SandboxFile[]): Promise<void> {
    if (this.used) throw new Error("files go into a used sandbox through the sandbox itself (writeFilesInside)");
    for (const file of files) {
      const target = path.join(this.scratchDir, file.name);
      if (!target.startsWith(`${this.scratchDir}/`))
        throw new Error(`file name ${file.name} leaves the scratch directory`);
      let dir = path.dirname(target);
      const made: string[] = [];
      while (dir !== this.scratchDir && !(await fsp.stat(dir).catch(() => undefined))) {
        made.unshift(dir);
        dir = path.dirname(dir);
      }
      for (const d of made) {
        await fsp.mkdir(d, { mode: 0o755 });
        await fsp.chown(d, SANDBOX_UID, SANDBOX_UID);
      }
      await fsp.writeFile(target, file.content, { mode: 0o644, flag: "wx" });
      await fsp.chown(target, SANDBOX_UID, SANDBOX_UID);
    }
  }

  /** Runs one program and watches it; the sandbox is spent if a limit stopped it. */
  async run(input: RunInput): Promise<RunOutcome> {
    if (!this.alive) throw new Error(`sandbox ${this.id} is gone`);
    this.runs += 1;
    const { limits } = input;
    const processFile = path.join(this.bundleDir, `process-${this.runs}.json`);
    await fsp.writeFile(
      processFile,
      JSON.stringify(processSpec({ args: input.args, processes: limits.processes, fileBytes: limits.scratch_bytes })),
    );
    const before = this.cgroup.stats();
    const started = process.hrtime.bigint();
    const child = this.host.runsc.exec(this.id, processFile);
    const [, , runscStderr, stdin, stdout, stderr] = child.stdio as unknown as [
      null,
      null,
      Readable,
      Writable,
      Readable,
      Readable,
    ];

    const limitsHit = new Set<LimitHit>();
    let stopping: Promise<void> | undefined;
    const stop = (why: LimitHit): void => {
      limitsHit.add(why);
      stopping ??= this.stopForLimit(why, limits.processes, limitsHit);
    };

    const collect = (stream: Readable, cap: number) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      stream.on("data", (chunk: Buffer) => {
        if (truncated) return;
        const room = cap - size;
        if (chunk.length > room) {
          chunks.push(chunk.subarray(0, room));
          size = cap;
          truncated = true;
          stop("output");
          return;
        }
        chunks.push(chunk);
        size += chunk.length;
      });
      stream.on("error", () => undefined);
      return () => ({ data: Buffer.concat(chunks), truncated });
    };
    const out = collect(stdout, limits.output_bytes);
    const err = collect(stderr, limits.output_bytes);
    let runscMessages = "";
    runscStderr.setEncoding("utf8").on("data", (d: string) => (runscMessages = (runscMessages + d).slice(-8192)));
    stdin.on("error", () => undefined);
    stdin.end(input.stdin);

    const wallTimer = setTimeout(() => stop("wall"), limits.wall_ms);
    const cpuTimer = setInterval(() => {
      if (this.cgroup.stats().cpuUsec - before.cpuUsec > limits.cpu_ms * 1000) stop("cpu");
    }, CPU_POLL_MS);
    const status = await new Promise<number | null>((resolve) => {
      child.on("error", () => resolve(null));
      child.on("exit", (code) => resolve(code));
    });
    // A background process the program left may hold its stdout open: read what is there, briefly.
    await Promise.race([
      new Promise((resolve) => child.on("close", resolve)),
      new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS)),
    ]);
    const wallMs = Number((process.hrtime.bigint() - started) / 1_000_000n);
    clearTimeout(wallTimer);
    clearInterval(cpuTimer);
    await stopping;
    const after = this.finalStats ?? this.cgroup.stats();
    const cpuMs = Math.round((after.cpuUsec - before.cpuUsec) / 1000);
    if (after.oomKills > before.oomKills) limitsHit.add("memory");
    // A run that went on past the CPU limit between two polls still counts as stopped by it.
    if (cpuMs > limits.cpu_ms && limitsHit.size === 0) limitsHit.add("cpu");

    const stoppedBySandbox = limitsHit.size > 0;
    let exitCode: number | null = null;
    let signal: string | null = null;
    let sandboxError: string | undefined;
    if (stoppedBySandbox) {
      signal = "SIGKILL";
    } else if (status === null || (status === RUNSC_FAILURE_STATUS && runscMessages.trim() !== "")) {
      sandboxError = lastLine(runscMessages) || "runsc exec did not start";
    } else if (status > 128 && status - 128 in SIGNALS) {
      // runsc exec reports a signal as a shell does: 128 + its number.
      signal = SIGNALS[status - 128];
    } else {
      exitCode = status;
    }
    const o = out();
    const e = err();
    return {
      stdout: o.data,
      stderr: e.data,
      stdoutTruncated: o.truncated,
      stderrTruncated: e.truncated,
      exitCode,
      signal,
      limitsHit: [...limitsHit],
      wallMs,
      cpuMs,
      memoryBytes: after.memoryPeakBytes,
      sandboxError,
      spent: stoppedBySandbox || sandboxError !== undefined,
    };
  }

  /** A limit was hit: note whether the run was at its process limit, then end the whole sandbox. */
  private async stopForLimit(why: LimitHit, processLimit: number, hit: Set<LimitHit>): Promise<void> {
    if (why === "wall" || why === "cpu") {
      // A fork bomb spins at RLIMIT_NPROC until the clock or the CPU limit ends it: say so.
      const count = await this.host.runsc.processCount(this.id);
      if (count !== undefined && count >= processLimit - 1) hit.add("processes");
    }
    this.finalStats = this.cgroup.stats();
    await this.host.runsc.destroy(this.id);
  }

  /** Removes everything of the sandbox: its processes, state, cgroup, scratch tmpfs and bundle. Idempotent. */
  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      await this.host.runsc.destroy(this.id);
      await unmount(this.scratchDir).catch(() => undefined);
      await fsp.rm(this.bundleDir, { recursive: true, force: true }).catch(() => undefined);
      // runsc removes the cgroup it made; an empty one left after a crash goes here.
      this.cgroup.remove();
    })();
    return this.destroyed;
  }
}

/** The host pids limit, for the docs and tests. */
export { HOST_PIDS_LIMIT, SCRATCH_PATH };
