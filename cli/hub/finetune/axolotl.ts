import { stringify } from "yaml";
import { FINETUNE_TARGET_MODULES, FinetuneMethod } from "../../../stacks/finetune";
import type { DatasetFormat } from "./dataset";

/**
 * The trainer's config, rendered from typed settings with a YAML library, checked in tests against
 * axolotl v0.17.0's config schema (test/fixtures/reference/axolotl/). Paths are inside the
 * trainer's container, where the job's volume is mounted at JOB_CONTAINER_DIR.
 */
export const JOB_CONTAINER_DIR = "/job";
export const JOB_PATHS = {
  config: `${JOB_CONTAINER_DIR}/config.yml`,
  dataset: `${JOB_CONTAINER_DIR}/data/train.jsonl`,
  prepared: `${JOB_CONTAINER_DIR}/prepared`,
  output: `${JOB_CONTAINER_DIR}/out`,
  log: `${JOB_CONTAINER_DIR}/train.log`,
  /** Written by the job's wrapper when the trainer exits: its exit status. */
  exitStatus: `${JOB_CONTAINER_DIR}/exit-status`,
  huggingface: `${JOB_CONTAINER_DIR}/huggingface`,
} as const;

export interface TrainerSettings {
  /** Hugging Face repo of the base model's full-precision checkpoint (QLoRA quantizes it while loading). */
  readonly baseModel: string;
  readonly method: FinetuneMethod;
  readonly rank: number;
  /** @default - 2 x rank, the usual LoRA scaling of 2 */
  readonly alpha?: number;
  readonly epochs: number;
  readonly learningRate: number;
  readonly sequenceLen: number;
  readonly microBatch: number;
  readonly gradientAccumulation: number;
  readonly format: DatasetFormat;
  readonly seed: number;
}

export const TRAINER_DEFAULTS = {
  learningRate: 2e-4,
  microBatch: 1,
  gradientAccumulation: 8,
  dropout: 0.05,
  warmupRatio: 0.05,
  seed: 42,
  /** Checkpoints per epoch: what `finetune resume` continues from after an interruption. */
  savesPerEpoch: 4,
} as const;

export function axolotlConfig(s: TrainerSettings): Record<string, unknown> {
  const dataset =
    s.format === "chat"
      ? {
          path: JOB_PATHS.dataset,
          ds_type: "json",
          type: "chat_template",
          field_messages: "messages",
          message_property_mappings: { role: "role", content: "content" },
          // Learn the answers, not the prompts; each assistant turn ends with the template's end-of-turn token.
          roles_to_train: ["assistant"],
          train_on_eos: "turn",
        }
      : { path: JOB_PATHS.dataset, ds_type: "json", type: "completion", field: "text" };
  return {
    base_model: s.baseModel,
    // The model's own chat template (tokenizer_config.json), the one vLLM serves it with.
    ...(s.format === "chat" ? { chat_template: "tokenizer_default" } : {}),
    load_in_4bit: s.method === "qlora",
    adapter: s.method,
    lora_r: s.rank,
    lora_alpha: s.alpha ?? 2 * s.rank,
    lora_dropout: TRAINER_DEFAULTS.dropout,
    // The seven projections vLLM gives LoRA slots (stacks/catalogue/lora.ts); nothing else, so vLLM loads it.
    lora_target_modules: [...FINETUNE_TARGET_MODULES],
    datasets: [dataset],
    dataset_prepared_path: JOB_PATHS.prepared,
    val_set_size: 0,
    output_dir: JOB_PATHS.output,
    sequence_len: s.sequenceLen,
    sample_packing: true,
    pad_to_sequence_len: true,
    num_epochs: s.epochs,
    micro_batch_size: s.microBatch,
    gradient_accumulation_steps: s.gradientAccumulation,
    learning_rate: s.learningRate,
    // QLoRA pages the optimizer state; 16-bit LoRA uses the fused AdamW (both as axolotl's examples do).
    optimizer: s.method === "qlora" ? "paged_adamw_8bit" : "adamw_torch_fused",
    lr_scheduler: "cosine",
    warmup_ratio: TRAINER_DEFAULTS.warmupRatio,
    bf16: "auto",
    gradient_checkpointing: true,
    flash_attention: true,
    logging_steps: 1,
    saves_per_epoch: TRAINER_DEFAULTS.savesPerEpoch,
    save_total_limit: 2,
    save_safetensors: true,
    // An interrupted job continues from its newest checkpoint on the job's volume.
    auto_resume_from_checkpoints: true,
    seed: s.seed,
  };
}

export function renderAxolotlConfig(s: TrainerSettings): string {
  return stringify(axolotlConfig(s), { lineWidth: 0 });
}
