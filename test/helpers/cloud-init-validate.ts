import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import Ajv, { type ValidateFunction } from "ajv-draft-04";
import { parse } from "yaml";

// Own path constants rather than ./load, which pulls in the whole stacks module; same rule as there.
const SHARED_REFERENCE = path.resolve(__dirname, "../../../shared/reference");
const REFERENCE = existsSync(SHARED_REFERENCE) ? SHARED_REFERENCE : path.resolve(__dirname, "../fixtures/reference");
const SCHEMA_FILE = path.join(REFERENCE, "cloud-init/schema-cloud-config-v1.json");

const HEADER = "#cloud-config";

interface CloudConfigSchema {
  readonly allOf: readonly { readonly $ref?: string }[];
  readonly $defs: Record<string, { readonly properties?: Record<string, unknown> }>;
}

export const CLOUD_INIT_CLI_AVAILABLE: boolean =
  spawnSync("cloud-init", ["--version"], { encoding: "utf8" }).status === 0;

let compiled: { validate: ValidateFunction; topLevelKeys: ReadonlySet<string> } | undefined;

function schema() {
  if (!compiled) {
    const json = JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as CloudConfigSchema;
    // strict: false: the schema uses cloud-init's own keywords (label, deprecated, hidden, prefixItems).
    // Formats off: ajv-formats is not installed, so uri/hostname/date would only print warnings.
    const validate = new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(json);
    // 22.4.2 ignores unknown top-level keys, so collect the keys the modules really read.
    const keys = new Set<string>();
    for (const { $ref } of json.allOf) {
      const name = $ref?.match(/^#\/\$defs\/(.+)$/)?.[1];
      if (name === undefined) continue;
      for (const k of Object.keys(json.$defs[name]?.properties ?? {})) keys.add(k);
    }
    compiled = { validate, topLevelKeys: keys };
  }
  return compiled;
}

/** Debian's `cloud-init schema`: the validator the real program ships. */
function cliProblems(text: string): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), "cloud-init-"));
  try {
    const file = path.join(dir, "user-data");
    writeFileSync(file, text);
    // Not --annotate: in 22.4.2 it exits 0 on errors and crashes on errors inside list items.
    const r = spawnSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8", timeout: 60_000 });
    if (r.error) return [`cloud-init schema could not run: ${r.error.message}`];
    if (r.status === 0) return [];
    const output = `${r.stderr}\n${r.stdout}`.trim().replaceAll(file, "<user-data>");
    return [`cloud-init schema (exit ${r.status}): ${output}`];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Problems with a rendered cloud-config, [] when valid. */
export function cloudInitProblems(text: string): string[] {
  const problems: string[] = [];

  if (CLOUD_INIT_CLI_AVAILABLE) problems.push(...cliProblems(text));
  else if (process.env.CI) problems.push("cloud-init CLI missing: .ci/run must install it");

  const firstLine = text.split("\n", 1)[0];
  if (firstLine !== HEADER)
    problems.push(`first line must be exactly ${JSON.stringify(HEADER)}, got ${JSON.stringify(firstLine)}`);

  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    problems.push(`not valid YAML: ${(e as Error).message}`);
    return problems;
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    problems.push(
      `the document must be a mapping, got ${doc === null ? "nothing" : Array.isArray(doc) ? "a list" : typeof doc}`,
    );
    return problems;
  }

  const { validate, topLevelKeys } = schema();
  if (!validate(doc)) {
    for (const e of validate.errors ?? []) problems.push(`schema: ${e.instancePath || "/"} ${e.message ?? e.keyword}`);
  }
  for (const key of Object.keys(doc)) {
    if (!topLevelKeys.has(key))
      problems.push(`unknown top-level key ${JSON.stringify(key)}: no cloud-init 22.4.2 module reads it`);
  }
  return problems;
}
