import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import * as path from "node:path";
import { LORA_MODEL_SHAPES, LORA_PROJECTIONS, LoraProjection, VLLM_LORA_RANKS } from "../../../stacks/catalogue/lora";
import type { ModelEntry } from "../../../stacks/catalogue/models";

/**
 * A PEFT LoRA adapter checked the way vLLM 0.24.0 loads it (stacks/catalogue/lora.ts
 * VLLM_LORA_SOURCES), before it is copied to a GPU node where a refusal would stop the coder:
 * - adapter_config.json (vllm/lora/peft_helper.py): `r`, `lora_alpha` and `target_modules` present;
 *   `r` within --max-lora-rank; `bias` "none"; no `modules_to_save`; no DoRA. vLLM reads neither
 *   `rank_pattern` nor `alpha_pattern` (from_dict keeps only its own fields) and would scale every
 *   module by lora_alpha / r, so an adapter that sets them is refused too.
 * - adapter_model.safetensors, header only (vllm/lora/lora_model.py check_unexpected_modules and
 *   utils.py parse_fine_tuned_lora_name): every tensor `<prefix>.<module>.lora_A.weight` or
 *   `.lora_B.weight` of a module the model supports (here: the seven projections).
 * - shapes (vllm/lora/layers/base_linear.py set_lora): lora_A is [r, input] and lora_B
 *   [output, r] of the base layer. vLLM copies them into the slot's [:r, :input]; a tensor larger
 *   than the layer fails there and a smaller one is silently zero-padded, so this check demands
 *   the exact shape (stricter than vLLM, never looser).
 */
export interface AdapterCheck {
  readonly ok: boolean;
  readonly rank?: number;
  readonly alpha?: number;
  readonly modules: readonly LoraProjection[];
  readonly tensors: number;
  readonly bytes: number;
  readonly problems: readonly string[];
}

const DTYPE_BYTES: Readonly<Record<string, number>> = { F16: 2, BF16: 2, F32: 4 };
/** The safetensors format caps the JSON header at 100 MB (huggingface/safetensors README). */
const MAX_HEADER_BYTES = 100_000_000;

interface TensorInfo {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly data_offsets: readonly [number, number];
}

/** Reads only the header: 8 bytes of little-endian length, then that much JSON. */
export function readSafetensorsHeader(
  file: string,
): { ok: true; tensors: Record<string, TensorInfo>; dataBytes: number } | { ok: false; why: string } {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    if (size < 8)
      return { ok: false, why: `${path.basename(file)} has ${size} bytes, less than the 8-byte header length` };
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    const length = head.readBigUInt64LE(0);
    if (length > BigInt(Math.min(MAX_HEADER_BYTES, size - 8)))
      return {
        ok: false,
        why: `${path.basename(file)} declares a ${length}-byte header in a ${size}-byte file: not a safetensors file`,
      };
    const json = Buffer.alloc(Number(length));
    readSync(fd, json, 0, json.length, 8);
    let header: unknown;
    try {
      header = JSON.parse(json.toString("utf8"));
    } catch {
      return { ok: false, why: `${path.basename(file)}'s header is not JSON: not a safetensors file` };
    }
    if (typeof header !== "object" || header === null || Array.isArray(header))
      return { ok: false, why: `${path.basename(file)}'s header is not a JSON object` };
    const tensors = Object.fromEntries(Object.entries(header).filter(([k]) => k !== "__metadata__")) as Record<
      string,
      TensorInfo
    >;
    return { ok: true, tensors, dataBytes: size - 8 - Number(length) };
  } finally {
    closeSync(fd);
  }
}

/** Input and output width of each projection in the base model. */
function projectionShapes(model: ModelEntry): Record<LoraProjection, { in: number; out: number }> | undefined {
  const shape = Object.hasOwn(LORA_MODEL_SHAPES, model.id) ? LORA_MODEL_SHAPES[model.id] : undefined;
  if (!shape || model.attention.kind !== "gqa") return undefined;
  const H = shape.hiddenSize;
  const Q = model.attention.attentionHeads * model.attention.headDim;
  const K = model.attention.kvHeads * model.attention.headDim;
  const I = shape.intermediateSize;
  return {
    q_proj: { in: H, out: Q },
    k_proj: { in: H, out: K },
    v_proj: { in: H, out: K },
    o_proj: { in: Q, out: H },
    gate_proj: { in: H, out: I },
    up_proj: { in: H, out: I },
    down_proj: { in: I, out: H },
  };
}

const LAYER = /(?:^|\.)layers\.(\d+)\./;

export function checkPeftAdapter(
  dir: string,
  model: ModelEntry,
  maxRank: number = VLLM_LORA_RANKS[VLLM_LORA_RANKS.length - 1],
): AdapterCheck {
  const problems: string[] = [];
  const fail = (): AdapterCheck => ({ ok: false, modules: [], tensors: 0, bytes: 0, problems });
  const configFile = path.join(dir, "adapter_config.json");
  const weightsFile = path.join(dir, "adapter_model.safetensors");
  if (!existsSync(configFile))
    problems.push("adapter_config.json is missing (vLLM reads it first: PEFTHelper.from_local_dir)");
  if (!existsSync(weightsFile))
    problems.push(
      existsSync(path.join(dir, "adapter_model.bin"))
        ? "the weights are adapter_model.bin (pickle); the hub takes adapter_model.safetensors only, which loads without running code"
        : "adapter_model.safetensors is missing",
    );
  if (problems.length) return fail();

  let config: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(readFileSync(configFile, "utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
    config = parsed as Record<string, unknown>;
  } catch (err) {
    problems.push(`adapter_config.json is not a JSON object (${(err as Error).message.split("\n")[0]})`);
    return fail();
  }
  const missing = ["r", "lora_alpha", "target_modules"].filter((k) => !(k in config));
  if (missing.length)
    problems.push(`adapter_config.json lacks ${missing.join(", ")} (vLLM: "Missing required configuration fields")`);
  const rank = config.r;
  if ("r" in config && (typeof rank !== "number" || !Number.isInteger(rank) || rank < 1))
    problems.push(`adapter_config.json r is ${JSON.stringify(rank)}, not a positive whole number`);
  else if (typeof rank === "number" && rank > maxRank)
    problems.push(`LoRA rank ${rank} is greater than max_lora_rank ${maxRank} (vLLM refuses it at load)`);
  if ("peft_type" in config && config.peft_type !== "LORA")
    problems.push(
      `adapter_config.json peft_type is ${JSON.stringify(config.peft_type)}; vLLM serves LoRA adapters only`,
    );
  if ((config.bias ?? "none") !== "none")
    problems.push(`adapter_config.json bias is ${JSON.stringify(config.bias)}: "Adapter bias is not supported" (vLLM)`);
  if (Array.isArray(config.modules_to_save) ? config.modules_to_save.length > 0 : config.modules_to_save != null)
    problems.push(
      `adapter_config.json modules_to_save is ${JSON.stringify(config.modules_to_save)}: "vLLM only supports modules_to_save being None"`,
    );
  if (config.use_dora === true) problems.push('adapter_config.json use_dora is true: "vLLM does not yet support DoRA"');
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = config[key];
    if (v && typeof v === "object" && Object.keys(v).length > 0)
      problems.push(
        `adapter_config.json ${key} sets per-module values, which vLLM ignores (it scales every module by lora_alpha / r): the adapter would be served wrongly`,
      );
  }

  const header = readSafetensorsHeader(weightsFile);
  if (!header.ok) {
    problems.push(header.why);
    return fail();
  }
  const shapes = projectionShapes(model);
  if (!shapes) {
    problems.push(
      `${model.id} has no LoRA shape in the catalogue (stacks/catalogue/lora.ts): its tensors cannot be checked`,
    );
    return fail();
  }
  const layers = model.attention.layers;
  const modules = new Set<LoraProjection>();
  const halves = new Map<string, Set<"A" | "B">>();
  let bytes = 0;
  let end = 0;
  const entries = Object.entries(header.tensors).sort(
    ([, a], [, b]) => (a.data_offsets?.[0] ?? 0) - (b.data_offsets?.[0] ?? 0),
  );
  for (const [name, info] of entries) {
    const where = `tensor ${name}`;
    const size = DTYPE_BYTES[info?.dtype];
    if (!size) {
      problems.push(`${where} has dtype ${JSON.stringify(info?.dtype)}; LoRA weights are F16, BF16 or F32`);
      continue;
    }
    if (!Array.isArray(info.shape) || !Array.isArray(info.data_offsets) || info.data_offsets.length !== 2) {
      problems.push(`${where} has no shape or data_offsets`);
      continue;
    }
    const [from, to] = info.data_offsets;
    const elements = info.shape.reduce((a, b) => a * b, 1);
    if (from !== end || to - from !== elements * size || to > header.dataBytes)
      problems.push(
        `${where} occupies bytes ${from}-${to}, but ${info.shape.join("x")} ${info.dtype} needs ${elements * size} bytes right after the previous tensor (at ${end}) inside the ${header.dataBytes}-byte data: the file is truncated or not safetensors`,
      );
    end = Math.max(end, to);
    bytes += to - from;
    // vLLM skips base-layer copies of the embeddings (is_base_embedding_weights) and MoE base_layer entries.
    if (name.includes("base_layer")) continue;
    const stripped = name.startsWith("base_model.model.") ? name.slice("base_model.model.".length) : name;
    const parts = stripped.split(".");
    if (parts.length < 3 || parts[parts.length - 1] !== "weight" || !/^lora_[AB]$/.test(parts[parts.length - 2])) {
      problems.push(
        `${where} is not a LoRA weight (<module>.lora_A.weight or .lora_B.weight); vLLM: "is unsupported LoRA weight"`,
      );
      continue;
    }
    const half = parts[parts.length - 2] === "lora_A" ? "A" : "B";
    const module = parts[parts.length - 3];
    const moduleName = parts.slice(0, -2).join(".");
    if (!(LORA_PROJECTIONS as readonly string[]).includes(module)) {
      problems.push(
        `${where} targets ${module}; vLLM expects target modules in {${LORA_PROJECTIONS.join(", ")}} for ${model.displayName}`,
      );
      continue;
    }
    const layer = LAYER.exec(stripped);
    if (!layer || Number(layer[1]) >= layers) {
      problems.push(
        `${where} is for ${layer ? `layer ${layer[1]}` : "no decoder layer"}; ${model.displayName} has layers 0-${layers - 1}`,
      );
      continue;
    }
    const projection = module as LoraProjection;
    const { in: inputs, out: outputs } = shapes[projection];
    const want = half === "A" ? [rank, inputs] : [outputs, rank];
    if (info.shape.length !== 2 || info.shape[0] !== want[0] || info.shape[1] !== want[1]) {
      problems.push(
        `${where} is [${info.shape.join(", ")}]; for ${model.displayName}'s ${projection} (${inputs} -> ${outputs}) at r=${JSON.stringify(rank)} it must be [${want.join(", ")}]`,
      );
      continue;
    }
    modules.add(projection);
    halves.set(moduleName, (halves.get(moduleName) ?? new Set()).add(half));
  }
  for (const [moduleName, got] of halves)
    if (got.size < 2)
      problems.push(`${moduleName} has lora_${got.has("A") ? "A" : "B"} but no lora_${got.has("A") ? "B" : "A"}`);
  if (entries.length === 0) problems.push("adapter_model.safetensors holds no tensors");
  const alpha = typeof config.lora_alpha === "number" ? config.lora_alpha : undefined;
  return {
    ok: problems.length === 0,
    rank: typeof rank === "number" ? rank : undefined,
    alpha,
    modules: LORA_PROJECTIONS.filter((m) => modules.has(m)),
    tensors: entries.length,
    bytes,
    problems,
  };
}
