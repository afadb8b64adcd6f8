import { LIMIT_NAMES, type LimitName, type Limits } from "./protocol";

/**
 * Limits of one execution: conservative defaults a request gets when it names none, the ceiling no
 * request may pass, and the floor below which an interpreter cannot start. Judge0's defaults are
 * 5 s CPU, 10 s wall, 128 MB, 60 processes (FACTS.md "Sandbox"); Node and Python under gVisor need
 * a little more memory than that to start comfortably.
 */

const MiB = 1024 * 1024;

export const DEFAULT_LIMITS: Limits = {
  wall_ms: 10_000,
  cpu_ms: 5_000,
  memory_bytes: 256 * MiB,
  processes: 64,
  output_bytes: 1 * MiB,
  scratch_bytes: 64 * MiB,
};

/** The most any request may ask for, before the node's own size (nodeCeiling) lowers it. */
export const MAX_LIMITS: Limits = {
  wall_ms: 120_000,
  cpu_ms: 60_000,
  memory_bytes: 2048 * MiB,
  processes: 512,
  output_bytes: 16 * MiB,
  scratch_bytes: 512 * MiB,
};

/** Below these an interpreter does not start (Node's threads count as processes; V8 wants ~40 MiB). */
export const MIN_LIMITS: Limits = {
  wall_ms: 100,
  cpu_ms: 100,
  memory_bytes: 64 * MiB,
  processes: 16,
  output_bytes: 1024,
  scratch_bytes: 1 * MiB,
};

const UNITS: Record<LimitName, (n: number) => string> = {
  wall_ms: (n) => `${n} ms`,
  cpu_ms: (n) => `${n} ms`,
  memory_bytes: (n) => `${n} bytes (${(n / MiB).toFixed(0)} MiB)`,
  processes: (n) => `${n}`,
  output_bytes: (n) => `${n} bytes`,
  scratch_bytes: (n) => `${n} bytes (${(n / MiB).toFixed(0)} MiB)`,
};

/**
 * The ceiling on a node: memory and scratch (both held in RAM) shared by `slots` executions at
 * once, with `reservedBytes` kept for the node itself, never above MAX_LIMITS.
 */
export function nodeCeiling(ramBytes: number, slots: number, reservedBytes = 768 * MiB): Limits {
  const perSlot = Math.max(MIN_LIMITS.memory_bytes, Math.floor((ramBytes - reservedBytes) / Math.max(1, slots)));
  const memory = Math.min(MAX_LIMITS.memory_bytes, Math.floor((perSlot * 3) / 4 / MiB) * MiB);
  const scratch = Math.min(
    MAX_LIMITS.scratch_bytes,
    Math.max(MIN_LIMITS.scratch_bytes, Math.floor(perSlot / 4 / MiB) * MiB),
  );
  return { ...MAX_LIMITS, memory_bytes: memory, scratch_bytes: scratch };
}

export type ResolvedLimits =
  | { readonly ok: true; readonly limits: Limits }
  | { readonly ok: false; readonly problems: readonly string[] };

/**
 * A request's limits: each named one checked against the floor and the ceiling, the rest the
 * defaults (lowered to the ceiling). Every problem at once, each naming the field and what works.
 */
export function resolveLimits(
  requested: Partial<Record<LimitName, number>> | undefined,
  ceiling: Limits,
  defaults: Limits = DEFAULT_LIMITS,
): ResolvedLimits {
  const problems: string[] = [];
  const limits = {} as Record<LimitName, number>;
  for (const name of LIMIT_NAMES) {
    const asked = requested?.[name];
    const floor = MIN_LIMITS[name];
    const top = Math.max(floor, ceiling[name]);
    if (asked === undefined) {
      limits[name] = Math.min(defaults[name], top);
      continue;
    }
    if (!Number.isSafeInteger(asked) || asked < floor || asked > top) {
      problems.push(
        `limits.${name} ${asked} is outside what this sandbox allows; use a whole number from ${UNITS[name](floor)} to ${UNITS[name](top)}`,
      );
      continue;
    }
    limits[name] = asked;
  }
  return problems.length ? { ok: false, problems } : { ok: true, limits };
}
