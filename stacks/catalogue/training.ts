import { Source, src, unverified } from "./sources";

/**
 * The trainer and the figures behind a fine-tuning job's time, memory and cost estimates. ⚠ marks
 * (verified: false) are planning figures no measurement here confirmed: the job prints them as such.
 */
const READ = "2026-12-07";

/**
 * axolotl, pinned. v0.18.0 (2026-07-17) publishes CUDA 13.0 images only, which need NVIDIA driver
 * 580 or later; DigitalOcean's GPU droplet image ships driver 575 with CUDA 12.9 (FACTS.md). v0.17.0
 * is the newest release with a CUDA 12.8 image. Tag scheme from its release workflow:
 * `<version>-py<python>-cu<cuda>-<torch>` (.github/workflows/main.yml at v0.17.0, job build-axolotl,
 * matrix cuda 128 / python 3.11 / pytorch 2.9.1 marked is_latest).
 */
export const AXOLOTL = {
  version: "0.17.0",
  commit: "09d325b4fd1288b1473c8a330dd19e3c91b1ac32",
  image: { repo: "axolotlai/axolotl", tag: "0.17.0-py3.11-cu128-2.9.1" },
  source: unverified(
    "axolotl-ai-cloud/axolotl v0.17.0 .github/workflows/main.yml (docker/metadata-action pep440 tag + matrix suffix)",
    READ,
    "tag derived from the release workflow; Docker Hub's tag list was not reachable from here",
  ),
  /** The config schema the rendered config is checked against (test/fixtures/reference/axolotl/README.md). */
  schema: src(
    "axolotl-ai-cloud/axolotl v0.17.0 src/axolotl/utils/schemas/*.py (AxolotlInputConfig; `axolotl config-schema` prints its model_json_schema())",
    READ,
  ),
} as const;

export const axolotlImageName = (): string => `${AXOLOTL.image.repo}:${AXOLOTL.image.tag}`;

/** Peak dense BF16 tensor throughput of one GPU, TFLOPS (the datasheets' sparse figures halved). */
export interface TrainingGpu {
  readonly bf16DenseTflops: number;
  readonly source: Source;
}

const NV = (sheet: string, note?: string) =>
  note ? unverified(`NVIDIA ${sheet} datasheet`, READ, note) : src(`NVIDIA ${sheet} datasheet`, READ);

/** By GPU model as the droplet catalogue names it. AMD GPUs are absent: axolotl's images are CUDA builds. */
export const TRAINING_GPUS: Readonly<Record<string, TrainingGpu>> = {
  H100: { bf16DenseTflops: 989, source: NV("H100 SXM", "1,979 TFLOPS BF16 with sparsity") },
  H200: { bf16DenseTflops: 989, source: NV("H200", "same tensor cores as H100 SXM: 1,979 TFLOPS BF16 with sparsity") },
  L40S: { bf16DenseTflops: 362, source: NV("L40S", "362.05 TFLOPS BF16 dense, 733 with sparsity") },
  "RTX 6000 Ada": {
    bf16DenseTflops: 364,
    source: NV("RTX 6000 Ada", "1,457 TFLOPS FP8 with sparsity, quartered; not re-read"),
  },
  "RTX 4000 Ada": {
    bf16DenseTflops: 82,
    source: NV("RTX 4000 Ada", "327.6 TFLOPS FP8 with sparsity, quartered; not re-read"),
  },
};

/**
 * Share of peak a LoRA training step achieves (model FLOPs utilization). Our planning figures:
 * published LoRA runs on H100 report 30-45% MFU with FlashAttention and packing; QLoRA pays for
 * dequantizing the 4-bit weights every step. Replace with the job's own measured tokens/s.
 */
export const TRAINING_MFU = {
  lora: {
    value: 0.35,
    source: unverified(
      "our planning figure: LoRA with FlashAttention and sample packing",
      READ,
      "no run measured here",
    ),
  },
  qlora: {
    value: 0.25,
    source: unverified(
      "our planning figure: QLoRA (bitsandbytes NF4), dequantization each step",
      READ,
      "no run measured here",
    ),
  },
} as const;

/**
 * FLOPs per trained token for a frozen base: forward 2N, backward through the activations 2N (no
 * weight gradients for frozen weights), and gradient checkpointing's second forward 2N: 6N.
 */
export const FLOPS_PER_TOKEN_PER_PARAM = 6;

/** Steps the job takes besides training, seconds (⚠ estimates). */
export const JOB_OVERHEAD = {
  /** Droplet creation and cloud-init; dstack gives DigitalOcean 10 minutes to provision (FACTS.md "GPU cold start"). */
  dropletSeconds: {
    value: 600,
    source: unverified(
      "FACTS.md GPU cold start: dstack's 10-minute DigitalOcean provisioning timeout",
      READ,
      "no creation time is documented",
    ),
  },
  /** Pulling the axolotl image (CUDA, PyTorch, flash-attn: on the order of 10 GB compressed). */
  imageSeconds: { value: 300, source: unverified("our estimate: ~10 GB image at ~35 MB/s", READ) },
  /** Tokenizing and packing the dataset, saving and uploading the adapter. */
  prepareSeconds: { value: 300, source: unverified("our estimate", READ) },
} as const;

/** Published training-memory requirements, to check our memory model against (FACTS.md "LoRA"). */
export const UNSLOTH_REQUIREMENTS = {
  source: unverified("Unsloth's requirements page, via FACTS.md", READ, "sequence length and batch not stated there"),
  /** GB of GPU memory for a 32B model. */
  qlora32bGB: 26,
  lora32bGB: 76,
} as const;
