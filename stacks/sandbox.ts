import { CPU_SIZES, type CpuSize, findCpuSize, findGpuSize } from "./catalogue/droplets";
import type { ResolvedSettings } from "./presets";
import { type Problem, problem } from "./problems";

/**
 * The sandbox node (`sandbox: on`): a CPU droplet of its own where gVisor runs the agents' code,
 * away from the gateway node's secrets. Decided here, at plan time: its size, how many executions
 * it runs at once, and whether the stack can have one at all.
 */

export const SANDBOX_NODE_NAME = "sandbox";
/** runsc, the API, the languages' tree and the build of runsc at setup need this much. */
export const SANDBOX_MIN_RAM_GIB = 4;
/** The front on the gateway node (a small Node process). */
export const SANDBOX_FRONT_RAM_GIB = 0.125;

export interface SandboxPlan {
  readonly size: CpuSize;
  /** Executions at once: one per vCPU (each sandbox is held to one CPU). */
  readonly slots: number;
}

export function resolveSandbox(s: ResolvedSettings, problems: Problem[]): SandboxPlan | undefined {
  if (s.sandbox !== "on") return undefined;
  if (s.tier === "local") {
    problems.push(
      problem(
        ["sandbox", "tier"],
        s.sandbox,
        "the sandbox runs on a droplet of its own (gVisor, no hub secret beside untrusted code); the local tier creates no droplets.",
        "Set sandbox to none for the local tier, or deploy a cloud tier.",
      ),
    );
    return undefined;
  }
  const size = findCpuSize(s.sandboxSize);
  const fits = CPU_SIZES.filter((c) => c.ramGiB >= SANDBOX_MIN_RAM_GIB).map(
    (c) => `${c.slug} ($${c.pricePerMonth}/month)`,
  );
  if (!size) {
    problems.push(
      problem(
        "sandboxSize",
        s.sandboxSize,
        findGpuSize(s.sandboxSize)
          ? "is a GPU size; the sandbox node runs on CPUs."
          : "is not a CPU size in the catalogue.",
        `Use one of ${fits.join(", ")}.`,
      ),
    );
    return undefined;
  }
  if (size.ramGiB < SANDBOX_MIN_RAM_GIB) {
    problems.push(
      problem(
        "sandboxSize",
        s.sandboxSize,
        `has ${size.ramGiB} GiB of RAM; the sandbox node needs ${SANDBOX_MIN_RAM_GIB} GiB (gVisor's runsc is built there at setup, and each execution holds up to its memory limit).`,
        `Use one of ${fits.join(", ")}.`,
      ),
    );
    return undefined;
  }
  if (!size.regions.includes(s.region)) {
    problems.push(
      problem(
        ["sandboxSize", "region"],
        s.sandboxSize,
        `is not offered in ${s.region}.`,
        `Regions with it: ${size.regions.join(", ")}.`,
      ),
    );
    return undefined;
  }
  return { size, slots: size.vcpu };
}
