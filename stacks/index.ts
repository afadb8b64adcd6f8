import { decodeOverrides, EngineConfig, StackFile } from "./load";
import { isNonEmpty, Problem, Problems, Warning } from "./problems";
import { resolveHubConfig } from "./resolve";
import type { HubConfig } from "./hub-config";
import { PROJECT, StackOverrides } from "./settings";

/** `overrides`: what the stack file set, as opposed to what its tier preset filled in. */
export type LoadResult =
  | { ok: true; config: HubConfig; overrides: StackOverrides }
  | { ok: false; problems: Problems; warnings: Warning[] };

/**
 * Engine config (what `pulumi up` or the offline plan hands the program) → validated HubConfig.
 * A key with a malformed value falls back to its preset so the remaining checks still run, and
 * findings that hinge on such a key are left out: they would describe the preset, not the file.
 * `earlier`: problems found before the program would run (the CLI's own checks of the stack file).
 */
export function loadHubConfig(
  config: EngineConfig,
  secretKeys: readonly string[] = [],
  earlier: readonly Problem[] = [],
  nowMs: number = Date.now(),
): LoadResult {
  const decoded = decodeOverrides(config, secretKeys);
  // nowMs: whether a GPU pin (gpuPinUntil) has expired; the hub command passes its own clock.
  const resolved = resolveHubConfig(decoded.overrides, nowMs);
  const found = [...earlier, ...decoded.problems];
  if (!isNonEmpty(found))
    return resolved.ok
      ? { ok: true, config: withAdviceModeWarning(resolved.config, config), overrides: decoded.overrides }
      : resolved;
  const badKeys = new Set(found.flatMap((p) => p.keys));
  const semantic = resolved.ok ? [] : resolved.problems.filter((p) => !p.keys.some((k) => badKeys.has(k)));
  return {
    ok: false,
    problems: [found[0], ...found.slice(1), ...semantic],
    warnings: resolved.ok ? [...resolved.config.warnings] : resolved.warnings,
  };
}

/**
 * The autoscaling controller acts only with a dispatch repository and token; without either it
 * advises (decides, logs, exports) and the plan says so. The token is a secret setting: only
 * whether it is set is looked at, never its value.
 */
function withAdviceModeWarning(hub: HubConfig, config: EngineConfig): HubConfig {
  // In k8s, KEDA scales; the controller only keeps the ledger and the budget ceiling (docs/kubernetes.md).
  if (!hub.settings.autoscaler || !hub.gpu || hub.tier === "k8s") return hub;
  if (hub.settings.autoscalerActuator === "pulumi-deployments") {
    if (config[`${PROJECT}:autoscalerPulumiToken`]) return hub;
    const message =
      "the autoscaling controller runs in advice mode: it decides, logs and exports metrics, but does not change the GPU node count, because autoscalerPulumiToken is not set. pulumi config set --secret autoscalerPulumiToken <an organization token whose custom role grants only stack_deployment:create on this stack> (docs/gpu-wake.md) to let it act through Pulumi Deployments, or autoscaler false to run none.";
    return { ...hub, warnings: [...hub.warnings, { keys: ["autoscalerPulumiToken"], message }] };
  }
  const missing = [
    hub.settings.autoscalerDispatchRepo ? "" : "autoscalerDispatchRepo",
    config[`${PROJECT}:autoscalerDispatchToken`] ? "" : "autoscalerDispatchToken",
  ].filter(Boolean);
  if (missing.length === 0) return hub;
  const message = `the autoscaling controller runs in advice mode: it decides, logs and exports metrics, but does not change the GPU node count, because ${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} not set. Set autoscalerDispatchRepo (owner/name) and pulumi config set --secret autoscalerDispatchToken <fine-grained token, Actions: write on that repository> to let it act, or autoscaler false to run none.`;
  return { ...hub, warnings: [...hub.warnings, { keys: missing, message }] };
}

/** A stack file read with readStackFile → validated HubConfig, with the file's own problems and warnings. */
export function loadStackFile(file: StackFile): LoadResult {
  const loaded = loadHubConfig(file.config, file.secretKeys, file.problems);
  if (!loaded.ok) return { ...loaded, warnings: [...file.warnings, ...loaded.warnings] };
  return { ...loaded, config: { ...loaded.config, warnings: [...file.warnings, ...loaded.config.warnings] } };
}

export * from "./hub-config";
export * from "./problems";
export * from "./settings";
export { engineConfig, OFFLINE_SECRET_STAND_IN, readStackFile } from "./load";
export {
  mergeEnvironmentConfig,
  settingsLeftToEnvironments,
  unseenEnvironmentsWarning,
  type EscConfigValue,
  type StackEnvironment,
} from "./esc";
export type { EngineConfig, StackFile } from "./load";
export { PRESETS } from "./presets";
export type { ResolvedSettings } from "./presets";
