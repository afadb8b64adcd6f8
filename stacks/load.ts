import { parseDocument } from "yaml";
import { z } from "zod";
import { readEnvironmentBlock, type StackEnvironment } from "./esc";
import { NOT_SHOWN, problem, Problem, Problems, Warning } from "./problems";
import { isDeclared } from "./project-config";
import {
  isSecretSettingName,
  isSettingName,
  PROJECT,
  PulumiConfigType,
  SECRET_SETTINGS,
  SETTING_NAMES,
  SETTINGS,
  SettingName,
  StackOverrides,
} from "./settings";

/**
 * Reading a stack file the way `pulumi up` does. From the Pulumi CLI's source (pulumi/pulumi
 * v3.248.0, read 2026-12-01):
 * - sdk/go/common/workspace/loaders.go `LoadProjectStackBytes` + `stackConfigNamespacedWithProject`:
 *   a key without a `:` is rewritten to `<project>:<key>` before anything else; a non-string
 *   mapping key anywhere in the file fails `SimplifyMarshalledProject` ("expected only string keys");
 *   a null value only draws a warning there.
 * - sdk/go/common/resource/config/key.go `ParseKey`: `<namespace>:<name>` (one colon; either part may
 *   be empty) or the older `<namespace>:config:<name>`; any other key fails the whole stack file
 *   ("could not parse ... as a configuration key"). Two spellings of one key both land in a Go map,
 *   so which value wins depends on map iteration order.
 * - sdk/go/common/resource/config/object.go `isSecureValue`: a secure value is a mapping with the
 *   single key `secure` holding a string; a list or mapping containing one is secure as a whole.
 * - sdk/go/common/workspace/config.go `validateStackConfigValue` + project.go `ValidateConfigValue`:
 *   every key Pulumi.yaml declares is type-checked before the program runs (integer =
 *   strconv.Atoi; boolean = "true"/"false"; array<string> = a list of strings, never a string
 *   holding JSON). Undeclared keys are not checked there: Pulumi.yaml declares only the settings
 *   whose default changes nothing (stacks/project-config.ts), and no secret setting, so the
 *   program checks the rest (decodeOverrides) and refuses a secret setting in the clear
 *   (secretsInTheClear).
 * - pkg/resource/deploy/source_eval.go and sdk/go/common/resource/plugin/langruntime_plugin.go hand
 *   the program `key.String()` = `<namespace>:<name>` → text (objects as JSON); the Node SDK
 *   (sdk/nodejs/runtime/config.ts `cleanKey`) also folds `<ns>:config:<name>` into `<ns>:<name>`.
 */

/** Config as the Pulumi engine hands it to a program: `project:key` → string (arrays as JSON). */
export type EngineConfig = Readonly<Record<string, string>>;

/** What the offline plan hands the program for a `secure:` value it cannot decrypt. */
export const OFFLINE_SECRET_STAND_IN = "[secret]";

export interface StackFile {
  readonly config: EngineConfig;
  /** Keys whose value is `secure:` ciphertext: known to exist, unreadable offline. */
  readonly secretKeys: readonly string[];
  /** What `pulumi up` would refuse before the program runs (bad keys, wrong types, secrets in the clear). */
  readonly problems: readonly Problem[];
  readonly warnings: readonly Warning[];
  /** The ESC environments the file imports (`environment:`), which only the esc CLI can open. */
  readonly environment?: StackEnvironment;
}

/**
 * Namespaces something in this program reads: the project's own, the engine's, and the providers
 * in package.json (@pulumi/digitalocean, docker, command, random, tls).
 */
const KNOWN_NAMESPACES = new Set([PROJECT, "pulumi", "digitalocean", "docker", "command", "random", "tls"]);

/** Plain setting values → engine config, the way the Pulumi CLI passes them (scalars as text, the rest as JSON). */
export function engineConfig(settings: Readonly<Record<string, unknown>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(settings).map(([k, v]) => [`${PROJECT}:${k}`, typeof v === "string" ? v : JSON.stringify(v)]),
  );
}

/** A stack-file key as the CLI reads it (loaders.go, then key.go `ParseKey`), or undefined where it refuses it. */
export function parseStackKey(raw: string): { namespace: string; name: string } | undefined {
  const key = raw.includes(":") ? raw : `${PROJECT}:${raw}`;
  const parts = key.split(":");
  if (parts.length === 2) return { namespace: parts[0], name: parts[1] };
  if (parts.length === 3 && parts[1] === "config") return { namespace: parts[0], name: parts[2] };
  return undefined;
}

/** An engine-config key as the Node SDK hands it to the program (runtime/config.ts `cleanKey`). */
function engineKey(fullKey: string): { namespace: string; name: string } {
  const idx = fullKey.indexOf(":");
  if (idx < 0) return { namespace: PROJECT, name: fullKey };
  const rest = fullKey.slice(idx + 1);
  return {
    namespace: fullKey.slice(0, idx),
    name: idx > 0 && rest.startsWith("config:") ? rest.slice("config:".length) : rest,
  };
}

/** YAML as yaml.v3 would hand it to Pulumi, with mappings as Maps so `__proto__` stays a plain key. */
type Yaml = string | number | boolean | null | readonly Yaml[] | ReadonlyMap<unknown, Yaml>;

const isYamlMap = (v: unknown): v is ReadonlyMap<unknown, Yaml> => v instanceof Map;

/** object.go `isSecureValue`. */
const isSecure = (v: Yaml): boolean => isYamlMap(v) && v.size === 1 && typeof v.get("secure") === "string";
const containsSecure = (v: Yaml): boolean =>
  isSecure(v) || (Array.isArray(v) ? v.some(containsSecure) : isYamlMap(v) && [...v.values()].some(containsSecure));

/** The first mapping key that is not a string, found depth-first. */
function nonStringKey(v: Yaml): unknown {
  if (Array.isArray(v)) {
    for (const item of v) {
      const found = nonStringKey(item);
      if (found !== undefined) return found;
    }
  } else if (isYamlMap(v)) {
    for (const [k, item] of v) {
      if (typeof k !== "string") return k === undefined ? null : k;
      const found = nonStringKey(item);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** Deeper than any stack file needs; the walks below recurse. */
const MAX_DEPTH = 64;

/** A value Pulumi could not read either: an alias that contains itself (yaml.v3 refuses it), or absurd nesting. */
function shapeProblem(root: Yaml): string | undefined {
  const ancestors = new Set<unknown>();
  const walk = (v: Yaml, depth: number): string | undefined => {
    if (!Array.isArray(v) && !isYamlMap(v)) return undefined;
    if (ancestors.has(v)) return "has an alias that contains itself.";
    if (depth > MAX_DEPTH) return `is nested deeper than ${MAX_DEPTH} levels.`;
    ancestors.add(v);
    for (const item of Array.isArray(v) ? v : v.values()) {
      const why = walk(item, depth + 1);
      if (why) return why;
    }
    ancestors.delete(v);
    return undefined;
  };
  return walk(root, 0);
}

/** JSON-ready value; Object.fromEntries defines own properties, so a `__proto__` key stays data. */
function plain(v: Yaml): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (isYamlMap(v)) return Object.fromEntries([...v].map(([k, item]) => [String(k), plain(item)]));
  return v;
}

/** The text the CLI passes for a value (object.go `MarshalString`: scalars as text, the rest as JSON). */
function engineText(v: Yaml): string {
  if (typeof v === "string") return v;
  if (v === null) return "";
  return JSON.stringify(plain(v));
}

const INT64_MAX = BigInt("9223372036854775807");

/** project.go `ValidateConfigValue` for the types Pulumi.yaml declares here; undefined when it passes. */
function declaredTypeProblem(type: PulumiConfigType, v: Yaml): { why: string; fix: string } | undefined {
  const structured = Array.isArray(v) || isYamlMap(v);
  if (v === null) return { why: "has no value", fix: "Give it a value or remove the line." };
  if (type === "array") {
    if (Array.isArray(v) && v.every((item) => typeof item === "string")) return undefined;
    return Array.isArray(v)
      ? { why: "is a list with an item that is not a string", fix: "Quote every item." }
      : {
          why:
            typeof v === "string"
              ? "is a string, not a YAML list (a list written as JSON text is still a string)"
              : "is not a list",
          fix: 'Write it as a YAML list of strings, e.g. ["a", "b"], or with pulumi config set --path \'key[0]\' a.',
        };
  }
  if (structured) return { why: `is a ${Array.isArray(v) ? "list" : "mapping"}`, fix: `Write a single ${type} value.` };
  const text = engineText(v);
  if (type === "integer") {
    // Go's strconv.Atoi: optional sign, decimal digits, within int64.
    if (/^[+-]?\d+$/.test(text) && BigInt(text) <= INT64_MAX && BigInt(text) >= -INT64_MAX - BigInt(1))
      return undefined;
    return { why: "is not a whole number", fix: "Write a whole number, e.g. 2." };
  }
  if (type === "boolean")
    return text === "true" || text === "false"
      ? undefined
      : { why: "is not true or false", fix: "Write true or false." };
  return undefined;
}

/** Scalars and lists of scalars as they are; a mapping (perhaps a mangled `secure:` one) only by its shape. */
function shownValue(v: Yaml): unknown {
  if (isYamlMap(v)) return "(a mapping)";
  if (Array.isArray(v))
    return v.some((item) => isYamlMap(item) || Array.isArray(item)) ? "(a list of lists or mappings)" : plain(v);
  return v;
}

const typeName = (type: PulumiConfigType) => (type === "array" ? "array<string>" : type);

/** Reads a Pulumi.<stack>.yaml the way the Pulumi CLI hands it to the program. */
/** A stack file Pulumi cannot read at all: one problem, nothing else to check. */
const unreadable = (p: Problem): { ok: false; problems: Problems } => ({ ok: false, problems: [p] });

export function readStackFile(
  text: string,
  origin: string,
): { ok: true; file: StackFile } | { ok: false; problems: Problems } {
  // loaders.go readFileStripUTF8BOM; yaml.v3 applies `<<` merge keys.
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text.replace(/^\uFEFF/, ""), { merge: true, uniqueKeys: true, prettyErrors: false });
  } catch (err) {
    return unreadable(
      problem("(file)", origin, `cannot be parsed: ${(err as Error).message.split("\n")[0]}`, "Fix the YAML syntax."),
    );
  }
  if (doc.errors.length) {
    return unreadable(
      problem("(file)", origin, `is not valid YAML: ${doc.errors[0].message.split("\n")[0]}`, "Fix the YAML syntax."),
    );
  }
  let root: Yaml;
  try {
    root = doc.toJS({ mapAsMap: true, maxAliasCount: 100 }) as Yaml;
  } catch (err) {
    return unreadable(
      problem(
        "(file)",
        origin,
        `cannot be read: ${(err as Error).message.split("\n")[0]}`,
        "Fix the YAML (aliases, anchors).",
      ),
    );
  }
  const shape = shapeProblem(root);
  if (shape) return unreadable(problem("(file)", origin, shape, "Fix the YAML (aliases, anchors, nesting)."));
  if (root === null || root === undefined)
    return { ok: true, file: { config: {}, secretKeys: [], problems: [], warnings: [] } };
  if (!isYamlMap(root)) {
    return unreadable(
      problem(
        "(file)",
        origin,
        "is not a Pulumi stack file (expected a mapping with a `config:` key).",
        "See Pulumi.hybrid.yaml for the shape.",
      ),
    );
  }
  const configSection = root.get("config") ?? null;
  if (configSection !== null && !isYamlMap(configSection)) {
    return unreadable(
      problem(
        "config",
        Array.isArray(configSection) ? "(a list)" : configSection,
        "must be a mapping of `inference-hub:<key>: value`.",
        "See Pulumi.hybrid.yaml for the shape.",
      ),
    );
  }
  const problems: Problem[] = [];
  const warnings: Warning[] = [];
  for (const [k, v] of root) {
    const bad = typeof k !== "string" ? k : k === "config" ? undefined : nonStringKey(v);
    if (bad !== undefined)
      problems.push(
        problem(
          "(file)",
          origin,
          `has a mapping key ${JSON.stringify(bad)} that is not a string; Pulumi refuses the stack file ("expected only string keys").`,
          "Quote the key.",
        ),
      );
  }

  const config = new Map<string, string>();
  const secretKeys: string[] = [];
  const seen = new Map<string, { raw: string; json: string }>();
  for (const [rawKey, value] of configSection ?? new Map<unknown, Yaml>()) {
    if (typeof rawKey !== "string") {
      problems.push(
        problem(
          String(rawKey),
          undefined,
          'is a config key that is not a string; Pulumi refuses the stack file ("expected only string keys").',
          `Write it as ${PROJECT}:<setting>.`,
        ),
      );
      continue;
    }
    const parsed = parseStackKey(rawKey);
    if (!parsed) {
      problems.push(
        problem(
          rawKey,
          undefined,
          "is not a config key Pulumi can read; it refuses the whole stack file (keys are `<namespace>:<name>`, or the older `<namespace>:config:<name>`).",
          `Write it as ${PROJECT}:<setting>.`,
        ),
      );
      continue;
    }
    const { namespace, name } = parsed;
    const fullKey = `${namespace}:${name}`;
    const isProject = namespace === PROJECT;
    const shownKey = isProject && name !== "" ? name : rawKey;
    const nested = nonStringKey(value);
    if (nested !== undefined) {
      problems.push(
        problem(
          shownKey,
          undefined,
          `holds a mapping key ${JSON.stringify(nested)} that is not a string; Pulumi refuses the stack file ("expected only string keys").`,
          "Quote the key.",
        ),
      );
      continue;
    }
    const json = JSON.stringify(plain(value));
    const earlier = seen.get(fullKey);
    if (earlier) {
      if (earlier.json !== json) {
        problems.push(
          problem(
            shownKey,
            undefined,
            `is set twice (as \`${earlier.raw}\` and \`${rawKey}\`) with different values; Pulumi would keep whichever its map iteration meets last.`,
            "Keep one of the two lines.",
          ),
        );
      } else {
        warnings.push({
          keys: [shownKey],
          message: `is set twice (as \`${earlier.raw}\` and \`${rawKey}\`), to the same value. Keep one line.`,
        });
      }
      continue;
    }
    seen.set(fullKey, { raw: rawKey, json });
    if (value === null)
      warnings.push({ keys: [shownKey], message: "has no value; Pulumi warns and passes it on as an empty value." });

    if (!isProject) {
      if (!KNOWN_NAMESPACES.has(namespace)) {
        const meant = isSettingName(name) || isSecretSettingName(name) ? ` Did you mean ${PROJECT}:${name}?` : "";
        warnings.push({
          keys: [rawKey],
          message: `is in namespace "${namespace}", which neither this project nor its providers read, so pulumi up ignores it.${meant}`,
        });
      }
      if (containsSecure(value)) secretKeys.push(fullKey);
      config.set(fullKey, containsSecure(value) ? OFFLINE_SECRET_STAND_IN : engineText(value));
      continue;
    }
    if (name === "") {
      problems.push(
        problem(
          rawKey,
          undefined,
          `has no setting name after "${PROJECT}:".`,
          `Write ${PROJECT}:<setting>, e.g. ${PROJECT}:tier; settings are listed in README.md.`,
        ),
      );
      continue;
    }
    if (isSecretSettingName(name)) {
      if (isSecure(value)) {
        secretKeys.push(fullKey);
        config.set(fullKey, OFFLINE_SECRET_STAND_IN);
      } else if (containsSecure(value)) {
        problems.push(
          problem(
            name,
            NOT_SHOWN,
            "is a list or mapping; a secret setting is one encrypted string.",
            `Store it as one encrypted string: pulumi config set --secret ${name} <value>.`,
          ),
        );
      } else {
        // The value stays out of the message: it is a secret that was committed in the clear.
        problems.push(clearSecretProblem(name));
      }
      continue;
    }
    if (containsSecure(value)) {
      // pulumi up would decrypt it; offline there is nothing to read. decodeOverrides says so.
      secretKeys.push(fullKey);
      config.set(fullKey, OFFLINE_SECRET_STAND_IN);
      continue;
    }
    if (isSettingName(name) && isDeclared(name)) {
      const type = SETTINGS[name].type;
      const wrong = declaredTypeProblem(type, value);
      if (wrong) {
        problems.push(
          problem(
            name,
            shownValue(value),
            `${wrong.why}; Pulumi.yaml declares it ${typeName(type)}, so pulumi up refuses the stack before the program runs.`,
            wrong.fix,
          ),
        );
        continue;
      }
    }
    config.set(fullKey, engineText(value));
  }
  const environment = readEnvironmentBlock(root.get("environment"), origin);
  if (environment.problem) problems.push(environment.problem);
  return {
    ok: true,
    file: {
      config: Object.fromEntries(config),
      secretKeys,
      problems,
      warnings,
      ...(environment.environment ? { environment: environment.environment } : {}),
    },
  };
}

/** A secret setting whose value is not encrypted; the value is never repeated. */
const clearSecretProblem = (name: string): Problem =>
  problem(
    name,
    NOT_SHOWN,
    "is a secret setting stored in the clear in the stack file; pulumi up refuses it too.",
    `Remove it and store it encrypted: pulumi config set --secret ${name} <value>.`,
  );

/**
 * What `pulumi up` hands the program in the clear among the secret settings: Pulumi.yaml cannot
 * declare them secret without making them required, so the program refuses them itself.
 * `secretKeys`: the engine's list of encrypted keys (`<namespace>:<name>`).
 */
export function secretsInTheClear(config: EngineConfig, secretKeys: readonly string[]): Problem[] {
  const secret = new Set(secretKeys.map((k) => Object.values(engineKey(k)).join(":")));
  const problems: Problem[] = [];
  for (const fullKey of Object.keys(config)) {
    const { namespace, name } = engineKey(fullKey);
    if (namespace === PROJECT && isSecretSettingName(name) && !secret.has(`${namespace}:${name}`))
      problems.push(clearSecretProblem(name));
  }
  return problems;
}

/** Longest name worth a suggestion: setting names are under 25 characters. */
const MAX_SUGGESTION_INPUT = 64;

/** Case-insensitive Levenshtein distance, or limit + 1 as soon as it must exceed `limit`. */
function distanceAtMost(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      rowMin = Math.min(rowMin, current[j]);
    }
    if (rowMin > limit) return limit + 1;
    previous = current;
  }
  return previous[b.length];
}

/** The nearest candidate within a third of the name's length (at least 2 edits); bounded work for any input. */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  if (name.length === 0 || name.length > MAX_SUGGESTION_INPUT) return undefined;
  const limit = Math.max(2, Math.floor(name.length / 3));
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const d = distanceAtMost(lower, c.toLowerCase(), Math.min(limit, bestDistance));
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

export const didYouMean = (name: string, candidates: readonly string[]): string => {
  const guess = closest(name, candidates);
  return guess ? `Did you mean ${guess}?` : "";
};

function decodeValue(name: SettingName, text: string): { ok: true; value: unknown } | { ok: false; why: string } {
  const { type } = SETTINGS[name];
  switch (type) {
    case "integer":
      // strconv.Atoi's syntax, which the CLI applies to declared integers (project.go ValidateConfigValue).
      return /^[+-]?\d+$/.test(text) ? { ok: true, value: Number(text) } : { ok: false, why: "is not a whole number" };
    case "boolean":
      return text === "true" || text === "false"
        ? { ok: true, value: text === "true" }
        : { ok: false, why: "is not true or false" };
    case "array":
      try {
        const parsed: unknown = JSON.parse(text);
        return Array.isArray(parsed) ? { ok: true, value: parsed } : { ok: false, why: "is not a list" };
      } catch {
        return { ok: false, why: "is not a list" };
      }
    case "string":
      return { ok: true, value: text };
  }
}

const zodWhy = (issues: readonly z.core.$ZodIssue[]): string =>
  issues.map((i) => (i.path.length ? `item ${i.path.join(".")} ` : "") + i.message).join("; ");

const SECRET_NAMES = Object.keys(SECRET_SETTINGS);
const KNOWN_NAMES: readonly string[] = [...SETTING_NAMES, ...SECRET_NAMES];

/**
 * Engine config → typed overrides of this project's keys. Other namespaces (digitalocean:token,
 * ...) belong to providers and are skipped. Every bad key is reported, not just the first.
 */
export function decodeOverrides(
  config: EngineConfig,
  secretKeys: readonly string[] = [],
): { overrides: StackOverrides; problems: Problem[] } {
  const problems: Problem[] = [];
  const overrides: Partial<Record<SettingName, unknown>> = {};
  const secret = new Set(secretKeys.map((k) => Object.values(engineKey(k)).join(":")));
  for (const [fullKey, text] of Object.entries(config)) {
    const { namespace, name } = engineKey(fullKey);
    if (namespace !== PROJECT) continue;
    if (name === "") {
      problems.push(
        problem(
          fullKey,
          undefined,
          `has no setting name after "${PROJECT}:".`,
          `Write ${PROJECT}:<setting>, e.g. ${PROJECT}:tier.`,
        ),
      );
      continue;
    }
    // Secret settings are read by the program with config.getSecret, not decoded here.
    if (isSecretSettingName(name)) continue;
    if (!isSettingName(name)) {
      // An unknown key's value may be anything, a password included: never repeat it.
      const nearSecret = closest(name, SECRET_NAMES) !== undefined;
      problems.push(
        problem(
          name,
          NOT_SHOWN,
          `is not a setting of this project${nearSecret ? " (its value is not shown: the name is close to a secret setting's)" : ""}.`,
          `${didYouMean(name, KNOWN_NAMES)} Settings are listed in README.md and Pulumi.yaml.`.trim(),
        ),
      );
      continue;
    }
    if (secret.has(`${namespace}:${name}`)) {
      problems.push(
        problem(
          name,
          NOT_SHOWN,
          "is stored encrypted, but it is not a secret setting: pulumi up would decrypt it, the offline plan cannot read it.",
          `Set it in the clear: pulumi config set ${name} <value>.`,
        ),
      );
      continue;
    }
    const decoded = decodeValue(name, text);
    if (!decoded.ok) {
      problems.push(problem(name, text, `${decoded.why}.`, `Use a ${SETTINGS[name].type} value.`));
      continue;
    }
    const checked = SETTINGS[name].schema.safeParse(decoded.value);
    if (!checked.success) {
      problems.push(problem(name, decoded.value, `${zodWhy(checked.error.issues)}.`, `${SETTINGS[name].description}`));
      continue;
    }
    overrides[name] = checked.data;
  }
  return { overrides: overrides as StackOverrides, problems };
}
