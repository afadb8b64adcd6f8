// load.ts reads the block with readEnvironmentBlock; the stand-in is only read inside a function, so the cycle is harmless.
import { OFFLINE_SECRET_STAND_IN } from "./load";
import { problem, type Problem, type Warning } from "./problems";
import { PROJECT, SECRET_SETTINGS, SETTING_NAMES } from "./settings";

/**
 * Pulumi ESC environments a stack file imports (`environment:` in Pulumi.<stack>.yaml). Pulumi
 * accepts a list of names, or an inline environment definition with `imports:` (names, or
 * one-key mappings `name: {merge: false}`) and perhaps `values:` (pulumi/pulumi
 * sdk/go/common/workspace/project.go, Environment.UnmarshalYAML; pulumi.com/docs/esc/guides/pulumi-iac).
 * Imports merge in order, later over earlier; the stack file's own config wins over all of them.
 */
export interface StackEnvironment {
  readonly imports: readonly string[];
  /** The inline definition has `values:` of its own, which only ESC can evaluate. */
  readonly inlineValues: boolean;
}

const isMap = (v: unknown): v is ReadonlyMap<unknown, unknown> => v instanceof Map;

/** The `environment:` block as read by yaml's toJS({ mapAsMap: true }); undefined when absent. */
export function readEnvironmentBlock(
  value: unknown,
  origin: string,
): { environment?: StackEnvironment; problem?: Problem } {
  if (value === undefined || value === null) return {};
  const shape = "Write it as a list of environment names (environment: [my-project/dev]) or a mapping with imports:.";
  const names = (list: unknown): string[] | undefined => {
    if (!Array.isArray(list)) return undefined;
    const out: string[] = [];
    for (const item of list) {
      if (typeof item === "string" && item.trim()) out.push(item.trim());
      else if (isMap(item) && item.size === 1 && typeof [...item.keys()][0] === "string")
        out.push(String([...item.keys()][0]));
      else return undefined;
    }
    return out;
  };
  if (Array.isArray(value)) {
    const imports = names(value);
    if (!imports)
      return { problem: problem("environment", origin, "holds an item that is not an environment name.", shape) };
    return imports.length ? { environment: { imports, inlineValues: false } } : {};
  }
  if (isMap(value)) {
    const imports = value.has("imports") ? names(value.get("imports")) : [];
    if (!imports)
      return {
        problem: problem(
          "environment",
          origin,
          "has an imports: entry that is not a list of environment names.",
          shape,
        ),
      };
    const values = value.get("values");
    const inlineValues = isMap(values) && values.size > 0;
    return imports.length || inlineValues ? { environment: { imports, inlineValues } } : {};
  }
  return {
    problem: problem(
      "environment",
      origin,
      "is neither a list of environment names nor an environment definition.",
      shape,
    ),
  };
}

/** One pulumiConfig entry an environment gives, as `esc env open --format detailed` reports it. */
export interface EscConfigValue {
  /** As written under pulumiConfig: `name` (this project's namespace) or `namespace:name`. */
  readonly key: string;
  readonly value: unknown;
  readonly secret: boolean;
}

/** A pulumiConfig key as the engine names it: a bare name belongs to the project. */
export const escEngineKey = (key: string) => (key.includes(":") ? key : `${PROJECT}:${key}`);

/** The hub's settings (secret ones too) this stack file does not set: what an environment might set unseen. */
export function settingsLeftToEnvironments(config: Readonly<Record<string, string>>): string[] {
  return [...SETTING_NAMES, ...Object.keys(SECRET_SETTINGS)].filter((name) => !(`${PROJECT}:${name}` in config));
}

/**
 * The stack file's config with the environments' values under it (the file wins). A value ESC
 * marks secret stays unread, as a `secure:` value does offline: the stand-in, and its key
 * among the secret keys. Values are never put in a message.
 */
export function mergeEnvironmentConfig(
  config: Readonly<Record<string, string>>,
  secretKeys: readonly string[],
  values: readonly EscConfigValue[],
): { config: Record<string, string>; secretKeys: string[]; set: string[] } {
  const fromEnvironments = new Map<string, EscConfigValue>();
  for (const v of values) fromEnvironments.set(escEngineKey(v.key), v);
  const merged: Record<string, string> = { ...config };
  const secret = [...secretKeys];
  const set: string[] = [];
  for (const [key, v] of fromEnvironments) {
    if (key in config) continue;
    set.push(key);
    if (v.secret) {
      merged[key] = OFFLINE_SECRET_STAND_IN;
      secret.push(key);
    } else
      merged[key] =
        typeof v.value === "string"
          ? v.value
          : v.value === null || v.value === undefined
            ? ""
            : JSON.stringify(v.value);
  }
  return { config: merged, secretKeys: secret, set };
}

/**
 * The plan could not open the environments: it goes on without them. The warning's keys are
 * `environment` and every setting the file leaves open (a message is capped at 1,000 characters;
 * 68 setting names are longer), so the plan document lists each setting it could not see.
 */
export function unseenEnvironmentsWarning(
  environment: StackEnvironment,
  why: string,
  unseen: readonly string[],
): Warning {
  const names = environment.imports.length ? environment.imports.join(", ") : "(an inline definition)";
  const inline = environment.inlineValues ? " and the inline values: under environment:" : "";
  return {
    keys: ["environment", ...unseen],
    message: `imports ESC environment(s) ${names}${inline}, which this plan could not open: ${why}. It was planned without them, so the ${unseen.length} settings named here, which this file does not set, could differ at pulumi up (it opens them). Install the esc CLI and run esc login to plan with them, or set what matters in the stack file.`,
  };
}
