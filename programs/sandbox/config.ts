import { cpus, totalmem } from "node:os";
import { LIMIT_NAMES, type Limits } from "./protocol";
import { envReader } from "./env";
import { MAX_LIMITS, MIN_LIMITS, nodeCeiling } from "./limits";

/**
 * The sandbox API's settings, all from the environment (the node's setup writes them to
 * /etc/inference-hub/sandbox.env). Every problem is reported at once, naming the variable.
 */
export interface SandboxConfig {
  /** SANDBOX_TOKEN_SHA256: hex SHA-256 of the token the gateway's front sends (the token itself is never on this node). */
  readonly tokenDigest: Buffer;
  /** SANDBOX_HOST: the node's private address. @default "127.0.0.1" */
  readonly host: string;
  /** SANDBOX_PORT. @default 8090 */
  readonly port: number;
  /** SANDBOX_RUNSC. @default "/usr/local/bin/runsc" */
  readonly runsc: string;
  /** SANDBOX_ROOTFS_DIR: holds rootfs/ and manifest.json (programs/sandbox/rootfs.ts). @default "/var/lib/inference-hub-sandbox/rootfs" */
  readonly rootfsDir: string;
  /** SANDBOX_STATE_DIR: runsc's state and the bundles; on tmpfs, so a reboot leaves nothing. @default "/run/inference-hub-sandbox" */
  readonly stateDir: string;
  /** SANDBOX_CGROUP_PARENT. @default "/inference-hub-sandbox" */
  readonly cgroupParent: string;
  /** SANDBOX_PLATFORM: systrap or ptrace (KVM panics in nested VMs). @default "systrap" */
  readonly platform: "systrap" | "ptrace";
  /** SANDBOX_SLOTS: executions at once. @default - the CPU count */
  readonly slots: number;
  /** SANDBOX_SLOTS_PER_KEY. @default - half the slots, at least 1 */
  readonly slotsPerKey: number;
  /** SANDBOX_QUEUE: requests waiting for a slot. @default - 4 per slot */
  readonly queueLimit: number;
  /** SANDBOX_WARM: fresh sandboxes kept ready. @default - one per slot */
  readonly warm: number;
  /** SANDBOX_MAX_SESSIONS. @default - 4 per slot */
  readonly maxSessions: number;
  /** SANDBOX_MAX_SESSIONS_PER_KEY. @default 2 */
  readonly maxSessionsPerKey: number;
  /** The most a request may ask for: from the node's memory and slots, lowered by SANDBOX_CEILING (JSON of limits). */
  readonly ceiling: Limits;
}

export class SandboxConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`The sandbox API's environment is incomplete:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "SandboxConfigError";
  }
}

type Env = Readonly<Record<string, string | undefined>>;

export function readSandboxConfig(
  env: Env = process.env,
  machine = { cpus: cpus().length, memoryBytes: totalmem() },
): SandboxConfig {
  const { problems, text, integer } = envReader(() => env);
  const digest = text("SANDBOX_TOKEN_SHA256") ?? "";
  if (!/^[0-9a-f]{64}$/.test(digest))
    problems.push(
      "SANDBOX_TOKEN_SHA256 must be the 64 lower-case hex digits of the SHA-256 of the gateway's sandbox token",
    );
  const platform = text("SANDBOX_PLATFORM") ?? "systrap";
  if (platform !== "systrap" && platform !== "ptrace")
    problems.push(`SANDBOX_PLATFORM=${platform} is not valid; use systrap or ptrace (KVM panics in nested VMs)`);
  const cgroupParent = text("SANDBOX_CGROUP_PARENT") ?? "/inference-hub-sandbox";
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(cgroupParent))
    problems.push(
      `SANDBOX_CGROUP_PARENT=${cgroupParent} must be an absolute cgroup path such as /inference-hub-sandbox`,
    );
  const slots = integer("SANDBOX_SLOTS", Math.max(1, machine.cpus), 1, 256);
  let ceiling = nodeCeiling(machine.memoryBytes, slots);
  const override = text("SANDBOX_CEILING");
  if (override !== undefined) {
    try {
      const parsed = JSON.parse(override) as Record<string, unknown>;
      for (const [name, value] of Object.entries(parsed)) {
        const limit = name as (typeof LIMIT_NAMES)[number];
        if (!LIMIT_NAMES.includes(limit))
          problems.push(`SANDBOX_CEILING names ${name}, which is not a limit; use ${LIMIT_NAMES.join(", ")}`);
        else if (
          typeof value !== "number" ||
          !Number.isSafeInteger(value) ||
          value < MIN_LIMITS[limit] ||
          value > MAX_LIMITS[limit]
        )
          problems.push(
            `SANDBOX_CEILING.${name} ${String(value)} must be a whole number from ${MIN_LIMITS[limit]} to ${MAX_LIMITS[limit]}`,
          );
        else ceiling = { ...ceiling, [limit]: Math.min(ceiling[limit], value) };
      }
    } catch {
      problems.push('SANDBOX_CEILING is not JSON; give an object of limits, e.g. {"wall_ms":30000}');
    }
  }
  const config: SandboxConfig = {
    tokenDigest: Buffer.from(digest, "hex"),
    host: text("SANDBOX_HOST") ?? "127.0.0.1",
    port: integer("SANDBOX_PORT", 8090, 0, 65535),
    runsc: text("SANDBOX_RUNSC") ?? "/usr/local/bin/runsc",
    rootfsDir: text("SANDBOX_ROOTFS_DIR") ?? "/var/lib/inference-hub-sandbox/rootfs",
    stateDir: text("SANDBOX_STATE_DIR") ?? "/run/inference-hub-sandbox",
    cgroupParent,
    platform: platform as SandboxConfig["platform"],
    slots,
    slotsPerKey: integer("SANDBOX_SLOTS_PER_KEY", Math.max(1, Math.ceil(slots / 2)), 1, 256),
    queueLimit: integer("SANDBOX_QUEUE", slots * 4, 0, 10_000),
    warm: integer("SANDBOX_WARM", slots, 0, 64),
    maxSessions: integer("SANDBOX_MAX_SESSIONS", slots * 4, 0, 1024),
    maxSessionsPerKey: integer("SANDBOX_MAX_SESSIONS_PER_KEY", 2, 0, 64),
    ceiling,
  };
  if (problems.length) throw new SandboxConfigError(problems);
  return config;
}
