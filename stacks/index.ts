import { decodeOverrides, EngineConfig } from "./load";
import type { Problem, Warning } from "./problems";
import { resolveHubConfig } from "./resolve";
import type { HubConfig } from "./hub-config";
import type { StackOverrides } from "./settings";

/** `overrides`: what the stack file set, as opposed to what its tier preset filled in. */
export type LoadResult = { ok: true; config: HubConfig; overrides: StackOverrides } | { ok: false; problems: Problem[]; warnings: Warning[] };

/**
 * Engine config (what `pulumi up` or the offline plan hands the program) → validated HubConfig.
 * A key with a malformed value falls back to its preset so the remaining checks still run, and
 * findings that hinge on such a key are left out: they would describe the preset, not the file.
 */
export function loadHubConfig(config: EngineConfig, secretKeys: readonly string[] = []): LoadResult {
  const decoded = decodeOverrides(config, secretKeys);
  const resolved = resolveHubConfig(decoded.overrides);
  if (decoded.problems.length === 0) return resolved.ok ? { ...resolved, overrides: decoded.overrides } : resolved;
  const badKeys = new Set(decoded.problems.flatMap((p) => p.keys));
  const semantic = resolved.ok ? [] : resolved.problems.filter((p) => !p.keys.some((k) => badKeys.has(k)));
  return { ok: false, problems: [...decoded.problems, ...semantic], warnings: resolved.ok ? [...resolved.config.warnings] : resolved.warnings };
}

export * from "./hub-config";
export * from "./problems";
export * from "./settings";
export { engineConfig, readStackFile } from "./load";
export type { EngineConfig, StackFile } from "./load";
export { PRESETS } from "./presets";
export type { ResolvedSettings } from "./presets";
