import Ajv from "ajv";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { renderAxolotlConfig, TrainerSettings } from "../cli/hub/finetune/axolotl";
import { LORA_PROJECTIONS } from "../stacks/catalogue/lora";
import { AXOLOTL } from "../stacks/catalogue/training";
import { ROOT } from "./helpers/load";

const DIR = path.join(ROOT, "test/fixtures/reference/axolotl");
const FILE = path.join(DIR, `config-schema-${AXOLOTL.version}.json`);
interface Schema {
  properties: Record<string, { anyOf?: { enum?: unknown[] }[] }>;
  $defs: Record<string, { properties: Record<string, unknown> }>;
  "x-derivation": {
    from: string;
    dataset_types: { values: string[] };
    seen_in_examples: { optimizer: string[]; lr_scheduler: string[] };
  };
}
const schema = JSON.parse(readFileSync(FILE, "utf8")) as Schema;
const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);

const base: TrainerSettings = {
  baseModel: "Qwen/Qwen2.5-Coder-32B-Instruct",
  method: "qlora",
  rank: 16,
  epochs: 3,
  learningRate: 2e-4,
  sequenceLen: 4096,
  microBatch: 1,
  gradientAccumulation: 8,
  format: "chat",
  seed: 42,
};
const VARIANTS: TrainerSettings[] = [
  base,
  { ...base, method: "lora", baseModel: "Qwen/Qwen2.5-Coder-7B-Instruct" },
  { ...base, format: "completion" },
  { ...base, method: "lora", format: "completion", rank: 64, alpha: 32 },
];

describe("the schema fixture", () => {
  it("is the file its README records, derived from the pinned axolotl release", () => {
    const readme = readFileSync(path.join(DIR, "README.md"), "utf8");
    const recorded = /\| axolotl\/config-schema-[\d.]+\.json \| ([0-9a-f]{64}) \|/.exec(readme)?.[1];
    expect(createHash("sha256").update(readFileSync(FILE)).digest("hex")).toBe(recorded);
    expect(schema["x-derivation"].from).toContain(`v${AXOLOTL.version} (commit ${AXOLOTL.commit})`);
    expect(AXOLOTL.image.tag.startsWith(`${AXOLOTL.version}-`)).toBe(true);
  });
  it("refuses what axolotl refuses (a sanity check of the validator)", () => {
    expect(validate({ base_model: "m", learning_rate: 0.001 })).toBe(true);
    expect(validate({ learning_rate: 0.001 })).toBe(false); // base_model is required
    expect(validate({ base_model: "m", learning_rate: 0.001, lora_r: "sixteen" })).toBe(false);
    expect(validate({ base_model: "m", learning_rate: 0.001, bf16: "sometimes" })).toBe(false);
    expect(validate({ base_model: "m", learning_rate: 0.001, datasets: [] })).toBe(false); // MinLen(1)
  });
});

describe("the rendered trainer config against axolotl 0.17.0's schema", () => {
  for (const s of VARIANTS) {
    it(`${s.method}, ${s.format}, rank ${s.rank}`, () => {
      const config = parse(renderAxolotlConfig(s)) as Record<string, unknown>;
      expect(validate(config), JSON.stringify(validate.errors)).toBe(true);
      // pydantic ignores unknown keys silently, so a misspelled key would be lost: every key must be a field.
      const unknown = Object.keys(config).filter((k) => !Object.hasOwn(schema.properties, k));
      expect(unknown).toEqual([]);
      const datasets = config.datasets as Record<string, unknown>[];
      for (const d of datasets) {
        expect(Object.keys(d).filter((k) => !Object.hasOwn(schema.$defs.SFTDataset.properties, k))).toEqual([]);
        expect(schema["x-derivation"].dataset_types.values).toContain(d.type);
      }
      // Fields the schema types as transformers' names: values axolotl's own examples use.
      expect(schema["x-derivation"].seen_in_examples.optimizer).toContain(config.optimizer);
      expect(schema["x-derivation"].seen_in_examples.lr_scheduler).toContain(config.lr_scheduler);
      if (config.chat_template !== undefined) {
        const allowed = schema.properties.chat_template.anyOf!.flatMap((a) => a.enum ?? []);
        expect(allowed).toContain(config.chat_template);
      }
      // What vLLM can serve: the seven projections it gives LoRA slots, and nothing saved besides them.
      expect(config.lora_target_modules).toEqual([...LORA_PROJECTIONS]);
      expect(config.lora_modules_to_save).toBeUndefined();
      expect(config.adapter).toBe(s.method);
      expect(config.load_in_4bit).toBe(s.method === "qlora");
      expect(config.lora_alpha).toBe(s.alpha ?? 2 * s.rank);
      expect(config.auto_resume_from_checkpoints).toBe(true);
    });
  }
});
