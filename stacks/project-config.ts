import { PRESETS } from "./presets";
import { SETTING_NAMES, SettingName, TIERS } from "./settings";

/**
 * Which settings Pulumi.yaml's `config:` block declares, under the Pulumi CLI's rules (pulumi/pulumi
 * v3.248.0, sdk/go/common/workspace/config.go `mergeConfig`, `validateStackConfigValue`; project.go
 * `Validate`; read 2026-12-07):
 *
 * - a project key with neither `default` nor `value` is required: a stack that does not set it is
 *   refused ("Stack 'cpu' is missing configuration value ..."), whatever its `type`;
 * - a `default` is handed to the program for every stack that does not set the key, exactly as if
 *   the stack file had set it (and `pulumi config` lists it);
 * - `secret: true` is checked only on a key with a `type`, and a default is plaintext, which that
 *   check refuses: a declared secret can only be a required one.
 *
 * So a setting is declared (type, description, default) only where every tier's preset holds the
 * same value: the default then changes nothing a preset decides. The others, and every secret
 * setting, stay undeclared (Pulumi.yaml lists them in a comment): the program checks their types,
 * and refuses a secret setting stored in the clear, itself (stacks/load.ts, infra/program.ts).
 */
export const DECLARED_DEFAULTS: ReadonlyMap<SettingName, unknown> = new Map(
  SETTING_NAMES.flatMap((name): [SettingName, unknown][] => {
    const values = TIERS.map((tier) => PRESETS[tier][name]);
    if (values[0] === undefined) return [];
    return values.every((v) => JSON.stringify(v) === JSON.stringify(values[0])) ? [[name, values[0]]] : [];
  }),
);

export const isDeclared = (name: string): boolean => DECLARED_DEFAULTS.has(name as SettingName);
