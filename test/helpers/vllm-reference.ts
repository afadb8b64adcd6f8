import * as path from "node:path";
import { GPU_SIZES } from "../../stacks/catalogue/droplets";
import { MODELS } from "../../stacks/catalogue/models";
import { QUANTIZATIONS } from "../../stacks/settings";
import { loadSettings, readJson, REFERENCE } from "./load";

interface VllmReference {
  version: string;
  flags: string[];
  boolean_flags: string[];
  store_true_flags: string[];
  optional_value_flags?: string[];
  short_aliases: Record<string, string>;
  choices: Record<string, (string | number)[]>;
  other_choices: Record<string, { values: (string | number)[] }>;
  deprecated_flags: string[];
  server: { default_port: number; health_endpoint: string; metrics_endpoint: string };
}

export const VLLM_REFERENCE = readJson<VllmReference>(path.join(REFERENCE, "vllm/args-0.24.0.json"));

/**
 * Problems with an argument list for `vllm serve`, checked against vLLM's own parser data:
 * the model comes first and is positional, every option is known by its exact name, every
 * value of a choice option is allowed, and boolean flags take no value.
 */
/**
 * List-typed options take one or more values (nargs='+', args-0.24.0.json parser_behaviour);
 * --lora-modules is one (FrontendArgs.lora_modules: list[LoRAModulePath]).
 */
const MULTI_VALUE = new Set(["--lora-modules", "--api-key", "--served-model-name", "--allowed-media-domains"]);

export function vllmArgProblems(args: readonly string[]): string[] {
  const ref = VLLM_REFERENCE;
  const problems: string[] = [];
  const flags = new Set(ref.flags);
  // boolean_flags lists the --X form; its --no-X twin is a boolean too.
  const booleans = new Set([
    ...ref.boolean_flags,
    ...ref.boolean_flags.map((f) => f.replace(/^--/, "--no-")),
    ...ref.store_true_flags,
  ]);
  if (args.length === 0 || args[0].startsWith("-"))
    problems.push(`the model must be the first, positional argument (got ${args[0]})`);
  if (args.includes("--model"))
    problems.push("--model is deprecated in 0.24.0 and an error in 0.11.0: pass the model positionally");
  for (let i = 1; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("-")) {
      problems.push(`stray value ${JSON.stringify(arg)} at position ${i}`);
      continue;
    }
    const name = ref.short_aliases[arg] ?? arg;
    if (!flags.has(name) || arg.includes("_") || arg.includes("=")) {
      problems.push(`${arg} is not an option of vllm serve ${ref.version}`);
      continue;
    }
    if (ref.deprecated_flags.includes(name)) problems.push(`${arg} is deprecated`);
    if (booleans.has(name)) {
      if (i + 1 < args.length && !args[i + 1].startsWith("-"))
        problems.push(`${arg} is a boolean flag but is followed by ${JSON.stringify(args[i + 1])}`);
      continue;
    }
    const value = args[i + 1];
    if (value === undefined || value.startsWith("--")) {
      if (!ref.optional_value_flags?.includes(name)) problems.push(`${arg} needs a value`);
      continue;
    }
    const allowed = ref.choices[name] ?? ref.other_choices[name]?.values;
    // Choice lists hold numbers for integer options (--max-lora-rank), strings for the rest.
    if (allowed && !allowed.map(String).includes(value))
      problems.push(`${arg} ${value} is not one of ${allowed.join(", ")}`);
    i++;
    if (MULTI_VALUE.has(name)) while (i + 1 < args.length && !args[i + 1].startsWith("-")) i++;
  }
  return problems;
}

/**
 * Every coder model × quantization × GPU size (gpu tier for one GPU, multigpu for eight), loaded
 * with the given extra settings: what the vLLM command-line tests sweep.
 */
export function* coderMatrix(extra: Record<string, unknown> = {}) {
  for (const model of MODELS.filter((m) => m.role === "coder"))
    for (const quantization of QUANTIZATIONS)
      for (const size of GPU_SIZES) {
        const result = loadSettings({
          tier: size.gpuCount > 1 ? "multigpu" : "gpu",
          region: size.regions[0],
          gpuSize: size.slug,
          llmModel: model.id,
          llmQuantization: quantization,
          llmTensorParallelSize: size.gpuCount,
          llmMaxContext: Math.min(8192, model.maxContext),
          llmGpuMemoryPercent: 90,
          ocrEngine: "docling",
          budgetUsd: 100000,
          modelCacheGiB: 1000,
          ...extra,
        });
        yield { label: `${model.id} ${quantization} ${size.slug}`, result };
      }
}
