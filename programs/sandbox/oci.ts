/**
 * The OCI runtime spec of a sandbox and of each program run in it (runtime-spec 1.x, which runsc
 * reads). What makes an execution safe, in one place:
 *   - the root file system is the Debian tree, read-only; /work is a small host tmpfs (the scratch
 *     directory, size-limited, owned by the sandbox user); /tmp is a small tmpfs inside gVisor;
 *   - uid/gid 65534 (nobody), no capabilities, no_new_privileges;
 *   - pid, network, ipc, uts and mount namespaces (gVisor's own), and runsc's --network=none;
 *   - host cgroup limits: memory, CPU quota, and a generous pids limit (systrap's own threads
 *     count there: 64 alone lets a fork bomb kill the sandbox), with RLIMIT_NPROC for the program.
 */

export const SANDBOX_UID = 65534;
export const SCRATCH_PATH = "/work";
export const TMP_PATH = "/tmp";
/** Host pids limit per sandbox: the sandbox's own threads plus the program's processes. */
export const HOST_PIDS_LIMIT = 1024;
/** One CPU per sandbox: a busy loop on many threads cannot take the node. */
export const CPU_QUOTA = { quota: 100_000, period: 100_000 } as const;
/** gVisor's own memory (Sentry, gofer) on top of what the program is allowed. */
export const SANDBOX_MEMORY_OVERHEAD = 64 * 1024 * 1024;
export const TMP_BYTES = 16 * 1024 * 1024;

const PATH_ENV = "PATH=/usr/local/bin:/usr/bin:/bin";

export interface SandboxSpecInput {
  readonly rootfs: string;
  /** Host directory (a tmpfs the executor mounted) bound at /work. */
  readonly scratchDir: string;
  readonly cgroupsPath: string;
  /** Memory the program may use; the host limit adds SANDBOX_MEMORY_OVERHEAD. */
  readonly memoryBytes: number;
  readonly hostname?: string;
}

/** The sandbox's config.json: its first process only waits; programs run through `runsc exec`. */
export function sandboxSpec(input: SandboxSpecInput): Record<string, unknown> {
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: SANDBOX_UID, gid: SANDBOX_UID },
      args: ["/bin/sleep", "infinity"],
      env: [PATH_ENV],
      cwd: "/",
      noNewPrivileges: true,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
    },
    root: { path: input.rootfs, readonly: true },
    hostname: input.hostname ?? "sandbox",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: TMP_PATH,
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", `size=${TMP_BYTES}`, "mode=1777"],
      },
      {
        destination: SCRATCH_PATH,
        type: "bind",
        source: input.scratchDir,
        options: ["rbind", "rw", "nosuid", "nodev"],
      },
    ],
    linux: {
      namespaces: [{ type: "pid" }, { type: "network" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }],
      cgroupsPath: input.cgroupsPath,
      resources: {
        memory: { limit: input.memoryBytes + SANDBOX_MEMORY_OVERHEAD },
        pids: { limit: HOST_PIDS_LIMIT },
        cpu: { ...CPU_QUOTA },
      },
    },
  };
}

export interface ProcessSpecInput {
  readonly args: readonly string[];
  readonly processes: number;
  /** Largest file the program may write (the scratch size). */
  readonly fileBytes: number;
  readonly env?: readonly string[];
}

/** The process.json of one program run (`runsc exec --process`). */
export function processSpec(input: ProcessSpecInput): Record<string, unknown> {
  return {
    terminal: false,
    user: { uid: SANDBOX_UID, gid: SANDBOX_UID },
    args: [...input.args],
    env: [
      PATH_ENV,
      `HOME=${SCRATCH_PATH}`,
      "LANG=C.UTF-8",
      "PYTHONUNBUFFERED=1",
      "PYTHONDONTWRITEBYTECODE=1",
      ...(input.env ?? []),
    ],
    cwd: SCRATCH_PATH,
    noNewPrivileges: true,
    capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
    rlimits: [
      // Counts threads too (Node starts about ten); the host pids limit backs it up.
      { type: "RLIMIT_NPROC", hard: input.processes, soft: input.processes },
      { type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 },
      { type: "RLIMIT_FSIZE", hard: input.fileBytes, soft: input.fileBytes },
      { type: "RLIMIT_CORE", hard: 0, soft: 0 },
    ],
  };
}
