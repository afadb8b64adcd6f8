import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { engineConfig, loadHubConfig, LoadResult, loadStackFile, readStackFile } from "../../stacks";

export const ROOT = path.resolve(__dirname, "../..");
export const SHARED = path.resolve(ROOT, "../shared");
/**
 * The real programs' schemas and argument lists: ../shared/reference where the workplace lays it
 * out, else the byte-identical copy in test/fixtures/reference (a plain clone, e.g. on GitHub).
 */
export const REFERENCE = existsSync(path.join(SHARED, "reference"))
  ? path.join(SHARED, "reference")
  : path.join(ROOT, "test/fixtures/reference");

/** Loads stack-file text the way the plan and `pulumi up` do. */
export function loadText(text: string): LoadResult {
  const file = readStackFile(text, "test.yaml");
  if (!file.ok) return { ok: false, problems: file.problems, warnings: [] };
  return loadStackFile(file.file);
}

/** Loads a tier preset with overrides given as plain values. */
export function loadSettings(settings: Record<string, unknown>): LoadResult {
  return loadHubConfig(engineConfig(settings));
}

export function mustLoad(settings: Record<string, unknown>) {
  const r = loadSettings(settings);
  if (!r.ok) throw new Error(r.problems.map((p) => `${p.keys.join(",")}: ${p.message}`).join("\n"));
  return r.config;
}

export const readJson = <T = unknown>(file: string): T => JSON.parse(readFileSync(file, "utf8")) as T;
