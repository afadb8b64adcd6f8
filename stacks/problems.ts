/**
 * A refused setting: which key, what value, why, and what would work. Checks return these
 * instead of throwing, so every problem in a stack is reported at once.
 */
export interface Problem {
  /** The Pulumi config key(s) at fault, e.g. `llmQuantization`. */
  readonly keys: readonly string[];
  readonly value?: unknown;
  readonly message: string;
  readonly fix: string;
}

export const problem = (keys: string | readonly string[], value: unknown, message: string, fix: string): Problem => ({
  keys: typeof keys === "string" ? [keys] : keys,
  value,
  message,
  fix,
});

/** A warning does not stop the plan but is printed prominently (e.g. SSH open to the internet). */
export interface Warning {
  readonly keys: readonly string[];
  readonly message: string;
}

export function formatValue(value: unknown): string {
  if (value === undefined) return "(unset)";
  return JSON.stringify(value);
}

export function formatProblem(p: Problem): string {
  const value = p.value === undefined ? "" : ` = ${formatValue(p.value)}`;
  return `${p.keys.join(", ")}${value}: ${p.message} ${p.fix}`.trim();
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly Problem[], readonly origin: string) {
    super(
      `${origin}: ${problems.length} setting problem${problems.length === 1 ? "" : "s"}:\n` +
        problems.map((p) => `  - ${formatProblem(p)}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}
