import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { problem, Problem } from "./problems";
import { PROJECT, SECRET_SETTINGS, SETTING_NAMES, SETTINGS, SettingName, StackOverrides } from "./settings";

/** Config as the Pulumi engine hands it to a program: `project:key` → string (arrays as JSON). */
export type EngineConfig = Readonly<Record<string, string>>;

export interface StackFile {
  readonly config: EngineConfig;
  /** Keys whose value is `secure:` ciphertext: known to exist, unreadable offline. */
  readonly secretKeys: readonly string[];
}

/** Plain setting values → engine config, the way the Pulumi CLI passes them (scalars as text, the rest as JSON). */
export function engineConfig(settings: Readonly<Record<string, unknown>>): Record<string, string> {
  return Object.fromEntries(Object.entries(settings).map(([k, v]) => [`${PROJECT}:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
}

/** Reads a Pulumi.<stack>.yaml the way the Pulumi CLI hands it to the program. */
export function readStackFile(text: string, origin: string): { ok: true; file: StackFile } | { ok: false; problems: Problem[] } {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    return { ok: false, problems: [problem("(file)", origin, `is not valid YAML: ${(err as Error).message.split("\n")[0]}`, "Fix the YAML syntax.")] };
  }
  if (doc === null || doc === undefined) return { ok: true, file: { config: {}, secretKeys: [] } };
  if (typeof doc !== "object" || Array.isArray(doc)) {
    return { ok: false, problems: [problem("(file)", origin, "is not a Pulumi stack file (expected a mapping with a `config:` key).", "See Pulumi.hybrid.yaml for the shape.")] };
  }
  const configSection = (doc as Record<string, unknown>).config ?? {};
  if (typeof configSection !== "object" || configSection === null || Array.isArray(configSection)) {
    return { ok: false, problems: [problem("config", configSection, "must be a mapping of `inference-hub:<key>: value`.", "See Pulumi.hybrid.yaml for the shape.")] };
  }
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  const problems: Problem[] = [];
  for (const [fullKey, value] of Object.entries(configSection as Record<string, unknown>)) {
    const isSecure = typeof value === "object" && value !== null && !Array.isArray(value) && "secure" in value;
    if (isSecure) secretKeys.push(fullKey);
    const name = fullKey.startsWith(`${PROJECT}:`) ? fullKey.slice(PROJECT.length + 1) : undefined;
    if (name && name in SECRET_SETTINGS && !isSecure) {
      // The value stays out of the message: it is a secret that was committed in the clear.
      problems.push(problem(name, "(not shown)", "is a secret setting stored in the clear in the stack file.", `Remove it and store it encrypted: pulumi config set --secret ${name} <value>.`));
      continue;
    }
    // The CLI passes scalars as strings and structured values as JSON; do the same.
    config[fullKey] = isSecure ? "[secret]" : typeof value === "string" ? value : JSON.stringify(value);
  }
  if (problems.length) return { ok: false, problems };
  return { ok: true, file: { config, secretKeys } };
}

function closest(name: string, candidates: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) dp[0][j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++)
        dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
    return dp[a.length][b.length];
  };
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(name, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

export const didYouMean = (name: string, candidates: readonly string[]): string => {
  const guess = closest(name, candidates);
  return guess ? `Did you mean ${guess}?` : "";
};

function decodeValue(name: SettingName, text: string): { ok: true; value: unknown } | { ok: false; why: string } {
  const { type } = SETTINGS[name];
  switch (type) {
    case "integer":
      return /^-?\d+$/.test(text.trim()) ? { ok: true, value: Number(text) } : { ok: false, why: "is not a whole number" };
    case "boolean":
      return text === "true" || text === "false" ? { ok: true, value: text === "true" } : { ok: false, why: "is not true or false" };
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

const zodWhy = (issues: readonly z.core.$ZodIssue[]): string => issues.map((i) => (i.path.length ? `item ${i.path.join(".")} ` : "") + i.message).join("; ");

/**
 * Engine config → typed overrides of this project's keys. Other namespaces (digitalocean:token,
 * ...) belong to providers and are skipped. Every bad key is reported, not just the first.
 */
export function decodeOverrides(config: EngineConfig, secretKeys: readonly string[] = []): { overrides: StackOverrides; problems: Problem[] } {
  const problems: Problem[] = [];
  const overrides: Record<string, unknown> = {};
  for (const [fullKey, text] of Object.entries(config)) {
    const [namespace, name] = fullKey.includes(":") ? [fullKey.slice(0, fullKey.indexOf(":")), fullKey.slice(fullKey.indexOf(":") + 1)] : [PROJECT, fullKey];
    if (namespace !== PROJECT) continue;
    // Secret settings are read by the program with config.getSecret, not decoded here.
    if (name in SECRET_SETTINGS) continue;
    if (!(SETTING_NAMES as string[]).includes(name)) {
      const known = [...SETTING_NAMES, ...Object.keys(SECRET_SETTINGS)];
      problems.push(problem(name, text, "is not a setting of this project.", `${didYouMean(name, known)} Settings are listed in README.md and Pulumi.yaml.`.trim()));
      continue;
    }
    const settingName = name as SettingName;
    if (secretKeys.includes(fullKey)) {
      problems.push(problem(name, "[secret]", "is stored as a secret, but it is not a secret setting; the plan cannot read it.", `Set it in the clear: pulumi config set ${name} <value>.`));
      continue;
    }
    const decoded = decodeValue(settingName, text);
    if (!decoded.ok) {
      problems.push(problem(name, text, `${decoded.why}.`, `Use a ${SETTINGS[settingName].type} value.`));
      continue;
    }
    const checked = SETTINGS[settingName].schema.safeParse(decoded.value);
    if (!checked.success) {
      problems.push(problem(name, decoded.value, `${zodWhy(checked.error.issues)}.`, `${SETTINGS[settingName].description}`));
      continue;
    }
    overrides[settingName] = checked.data;
  }
  return { overrides: overrides as StackOverrides, problems };
}
