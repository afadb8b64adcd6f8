import { mkdtempSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { checkPeftAdapter } from "../cli/hub/finetune/peft";
import { MODELS } from "../stacks/catalogue/models";
import { ALL_PROJECTIONS, loraTensors, peftConfig, safetensors, Tensor, writeAdapter } from "./helpers/peft-writer";

const model = MODELS.find((m) => m.id === "qwen2.5-coder-1.5b")!;
const MODULES = ALL_PROJECTIONS;
const config = peftConfig;

describe("a PEFT adapter checked the way vLLM 0.24 loads it", () => {
  it("accepts what PEFT writes: rank, target modules and shapes of the base model", () => {
    const r = checkPeftAdapter(writeAdapter(config(), safetensors(loraTensors(8, MODULES))), model, 16);
    expect(r.problems).toEqual([]);
    expect(r).toMatchObject({ ok: true, rank: 8, alpha: 16, modules: MODULES, tensors: 28 * 7 * 2 });
    // 8 x (in + out) x 2 bytes per projection, summed, x 28 layers.
    expect(r.bytes).toBe(8 * 2 * 28 * (3072 + 1792 + 1792 + 3072 + 10496 + 10496 + 10496));
  });
  it("accepts an attention-only adapter with F32 weights", () => {
    const tensors = loraTensors(16, ["q_proj", "v_proj"]).map((t) => ({ ...t, dtype: "F32" }));
    expect(
      checkPeftAdapter(writeAdapter(config({ r: 16, target_modules: ["q_proj", "v_proj"] }), tensors), model).ok,
    ).toBe(true);
  });
});

describe("a wrong adapter is refused with vLLM's reason", () => {
  const refused = (cfg: Record<string, unknown>, tensors: readonly Tensor[] | Buffer, maxRank?: number) => {
    const r = checkPeftAdapter(writeAdapter(cfg, tensors), model, maxRank);
    expect(r.ok).toBe(false);
    return r.problems.join("\n");
  };
  it("a rank above --max-lora-rank", () => {
    expect(refused(config({ r: 64 }), loraTensors(64, ["q_proj"]), 32)).toMatch(
      /LoRA rank 64 is greater than max_lora_rank 32/,
    );
  });
  it("a tensor of the wrong shape for the base model (an adapter of another model size)", () => {
    // Qwen2.5-Coder-3B's hidden size is 2048: its q_proj lora_A does not fit the 1.5B's layer.
    const wrong = loraTensors(8, ["q_proj"]).map((t) =>
      t.name.endsWith("layers.3.self_attn.q_proj.lora_A.weight") ? { ...t, shape: [8, 2048] } : t,
    );
    expect(refused(config(), wrong)).toMatch(
      /layers\.3\.self_attn\.q_proj\.lora_A\.weight is \[8, 2048\]; .* must be \[8, 1536\]/,
    );
  });
  it("a rank in the tensors that disagrees with r", () => {
    expect(refused(config({ r: 8 }), loraTensors(16, ["q_proj"]))).toMatch(/must be \[8, 1536\]/);
  });
  it("modules vLLM does not expect (the embeddings, lm_head)", () => {
    const extra = [
      ...loraTensors(8, ["q_proj"]),
      { name: "base_model.model.lm_head.lora_A.weight", shape: [8, 1536] },
      { name: "base_model.model.lm_head.lora_B.weight", shape: [151936, 8] },
    ];
    expect(refused(config({ target_modules: ["q_proj", "lm_head"] }), extra)).toMatch(
      /targets lm_head; vLLM expects target modules in \{q_proj/,
    );
  });
  it("config features vLLM refuses: bias, modules_to_save, DoRA, per-module patterns, missing fields", () => {
    const t = loraTensors(8, ["q_proj"]);
    expect(refused(config({ bias: "all" }), t)).toMatch(/Adapter bias is not supported/);
    expect(refused(config({ modules_to_save: ["lm_head"] }), t)).toMatch(/modules_to_save being None/);
    expect(refused(config({ use_dora: true }), t)).toMatch(/DoRA/);
    expect(refused(config({ rank_pattern: { q_proj: 32 } }), t)).toMatch(/rank_pattern/);
    const { lora_alpha: _drop, ...noAlpha } = config();
    expect(refused(noAlpha, t)).toMatch(/lacks lora_alpha/);
  });
  it("a layer the model does not have, a half without its pair, a name that is no LoRA weight", () => {
    expect(
      refused(config(), [
        { name: "base_model.model.model.layers.28.self_attn.q_proj.lora_A.weight", shape: [8, 1536] },
        { name: "base_model.model.model.layers.28.self_attn.q_proj.lora_B.weight", shape: [1536, 8] },
      ]),
    ).toMatch(/layer 28; .* layers 0-27/);
    expect(
      refused(config(), [{ name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", shape: [8, 1536] }]),
    ).toMatch(/has lora_A but no lora_B/);
    expect(
      refused(config(), [{ name: "base_model.model.model.layers.0.self_attn.q_proj.weight", shape: [1536, 1536] }]),
    ).toMatch(/not a LoRA weight/);
  });
  it("a file that is not safetensors, or is cut short", () => {
    expect(refused(config(), Buffer.from("PK\u0003\u0004 this is a zip"))).toMatch(/not a safetensors file/);
    const whole = safetensors(loraTensors(8, ["q_proj"]));
    expect(refused(config(), whole.subarray(0, whole.length - 100))).toMatch(/truncated/);
  });
  it("pickle weights or no config at all", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "peft-"));
    writeFileSync(path.join(dir, "adapter_model.bin"), "x");
    expect(checkPeftAdapter(dir, model).problems.join("\n")).toMatch(
      /adapter_config.json is missing[\s\S]*adapter_model.bin \(pickle\)/,
    );
  });
});
