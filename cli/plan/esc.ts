import { execFile } from "node:child_process";
import {
  mergeEnvironmentConfig,
  settingsLeftToEnvironments,
  unseenEnvironmentsWarning,
  type EscConfigValue,
  type StackFile,
  type Warning,
} from "../../stacks";

/**
 * Opens the ESC environments a stack file imports with the `esc` CLI, so the offline plan sees what
 * `pulumi up` will: `esc env open <name> pulumiConfig --format detailed` (pulumi.com/docs/esc/cli/commands/esc_env_open:
 * `esc env open [<org-name>/][<project-name>/]<environment-name> [property path]`, formats json, yaml, detailed, ...).
 * The detailed format marks each value `secret`, so a secret stays unread here as a `secure:` value
 * does; the CLI's stdout is parsed and never printed.
 */

export type EscOpenResult =
  | { readonly ok: true; readonly values: readonly EscConfigValue[] }
  | { readonly ok: false; readonly why: string };

export type EscOpen = (name: string) => Promise<EscOpenResult>;

/** What esc prints when it has no credentials (pulumi/esc cmd/esc/cli/login.go: "no credentials, please run `esc login`"). */
const NOT_LOGGED_IN = /no credentials|esc login|not logged in/i;
const ESC_TIMEOUT_MS = 60_000;

/** `esc env open` through the `esc` on PATH (or HUB_ESC). */
export function escCli(env: NodeJS.ProcessEnv = process.env): EscOpen {
  const bin = env.HUB_ESC || "esc";
  return (name) =>
    new Promise((resolve) => {
      execFile(
        bin,
        ["env", "open", name, "pulumiConfig", "--format", "detailed"],
        { env, encoding: "utf8", timeout: ESC_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error) {
            const code = (error as NodeJS.ErrnoException).code;
            if (code === "ENOENT")
              return resolve({ ok: false, why: "the esc CLI is not installed (see pulumi.com/docs/install/esc)" });
            const said = firstLine(stderr);
            if (NOT_LOGGED_IN.test(stderr)) return resolve({ ok: false, why: "esc is not logged in (run esc login)" });
            return resolve({ ok: false, why: `esc env open ${name} failed${said ? `: ${said}` : ""}` });
          }
          try {
            resolve({ ok: true, values: pulumiConfigValues(JSON.parse(stdout)) });
          } catch (err) {
            resolve({
              ok: false,
              why: `esc env open ${name} printed something that is not its detailed JSON (${(err as Error).message.slice(0, 120)})`,
            });
          }
        },
      );
    });
}

/** The first line of esc's complaint, short: it describes the definition, not values. */
const firstLine = (text: string) =>
  text
    .trim()
    .split("\n")[0]
    ?.replace(/^error:\s*/i, "")
    .slice(0, 200) ?? "";

/** esc's detailed Value: { value, secret?, unknown?, trace }; objects and arrays hold Values. */
interface DetailedValue {
  readonly value?: unknown;
  readonly secret?: boolean;
}
const isDetailed = (v: unknown): v is DetailedValue => typeof v === "object" && v !== null && !Array.isArray(v);

/** Plain JSON from a detailed Value, and whether any part of it is secret. */
function unwrap(v: DetailedValue): { value: unknown; secret: boolean } {
  let secret = v.secret === true;
  const inner = v.value;
  if (Array.isArray(inner)) {
    const items = inner.map((x) => (isDetailed(x) ? unwrap(x) : { value: x, secret: false }));
    secret ||= items.some((i) => i.secret);
    return { value: items.map((i) => i.value), secret };
  }
  if (isDetailed(inner)) {
    const entries = Object.entries(inner).map(
      ([k, x]) => [k, isDetailed(x) ? unwrap(x) : { value: x, secret: false }] as const,
    );
    secret ||= entries.some(([, e]) => e.secret);
    return { value: Object.fromEntries(entries.map(([k, e]) => [k, e.value])), secret };
  }
  return { value: inner, secret };
}

/** The entries of an opened environment's pulumiConfig (none when it has no pulumiConfig). */
export function pulumiConfigValues(detailed: unknown): EscConfigValue[] {
  if (!isDetailed(detailed) || detailed.value === undefined || detailed.value === null) return [];
  if (!isDetailed(detailed.value)) throw new Error("pulumiConfig is not a mapping");
  return Object.entries(detailed.value).map(([key, v]) => ({
    key,
    ...(isDetailed(v) ? unwrap(v) : { value: v, secret: false }),
  }));
}

/**
 * The stack file with its environments' settings under its own, when esc opens every one of them;
 * else the file as it is and a warning naming the environments and the settings the plan could not see.
 */
export async function withEnvironments(
  file: StackFile,
  open: EscOpen = escCli(),
): Promise<{ file: StackFile; warnings: Warning[] }> {
  const environment = file.environment;
  if (!environment) return { file, warnings: [] };
  const unseen = settingsLeftToEnvironments(file.config);
  if (environment.inlineValues)
    return {
      file,
      warnings: [
        unseenEnvironmentsWarning(environment, "environment: has inline values:, which only ESC evaluates", unseen),
      ],
    };
  const values: EscConfigValue[] = [];
  for (const name of environment.imports) {
    const opened = await open(name);
    if (!opened.ok) return { file, warnings: [unseenEnvironmentsWarning(environment, opened.why, unseen)] };
    values.push(...opened.values);
  }
  const merged = mergeEnvironmentConfig(file.config, file.secretKeys, values);
  const secret = new Set(merged.secretKeys);
  const shown = merged.set.map(
    (k) => `${k.replace(/^inference-hub:/, "")}${secret.has(k) ? " (secret, not read)" : ""}`,
  );
  const note: Warning = {
    keys: ["environment"],
    message: `planned with ESC environment(s) ${environment.imports.join(", ")}, opened with esc: ${shown.length ? `they set ${shown.join(", ")}` : "they set no setting this file leaves open"}. The stack file's own values win over theirs.`,
  };
  return { file: { ...file, config: merged.config, secretKeys: merged.secretKeys }, warnings: [note] };
}
