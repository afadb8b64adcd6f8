import { mkdtempSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// A PEFT LoRA adapter written by the test, in the files PEFT saves: adapter_config.json and
// adapter_model.safetensors (u64 little-endian header length, JSON header, then the data).

/** Qwen2.5-Coder-1.5B's projections (input, output) from its config.json: hidden 1536, 12 query and 2 key/value heads of 128, MLP 8960. */
export const QWEN_1_5B_DIMS: Readonly<Record<string, readonly [number, number]>> = {
  q_proj: [1536, 1536],
  k_proj: [1536, 256],
  v_proj: [1536, 256],
  o_proj: [1536, 1536],
  gate_proj: [1536, 8960],
  up_proj: [1536, 8960],
  down_proj: [8960, 1536],
};
export const QWEN_1_5B_LAYERS = 28;
export const ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
const ATTENTION = new Set(["q_proj", "k_proj", "v_proj", "o_proj"]);

export interface Tensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype?: string;
}

export function safetensors(tensors: readonly Tensor[]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * (t.dtype === "F32" ? 4 : 2);
    header[t.name] = { dtype: t.dtype ?? "BF16", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(offset)]);
}

/** The tensors PEFT writes for rank r on `modules` of every layer of Qwen2.5-Coder-1.5B. */
export function loraTensors(r: number, modules: readonly string[], layers = QWEN_1_5B_LAYERS): Tensor[] {
  const out: Tensor[] = [];
  for (let layer = 0; layer < layers; layer++) {
    for (const m of modules) {
      const [input, output] = QWEN_1_5B_DIMS[m];
      const prefix = `base_model.model.model.layers.${layer}.${ATTENTION.has(m) ? "self_attn" : "mlp"}.${m}`;
      out.push(
        { name: `${prefix}.lora_A.weight`, shape: [r, input] },
        { name: `${prefix}.lora_B.weight`, shape: [output, r] },
      );
    }
  }
  return out;
}

export const peftConfig = (over: Record<string, unknown> = {}) => ({
  peft_type: "LORA",
  base_model_name_or_path: "Qwen/Qwen2.5-Coder-1.5B-Instruct",
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: ALL_PROJECTIONS,
  bias: "none",
  modules_to_save: null,
  use_dora: false,
  ...over,
});

export function writeAdapter(
  config: Record<string, unknown>,
  tensors: readonly Tensor[] | Buffer,
  dir: string = mkdtempSync(path.join(os.tmpdir(), "peft-")),
): string {
  writeFileSync(path.join(dir, "adapter_config.json"), JSON.stringify(config));
  writeFileSync(path.join(dir, "adapter_model.safetensors"), Buffer.isBuffer(tensors) ? tensors : safetensors(tensors));
  return dir;
}
