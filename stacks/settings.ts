import { z } from "zod";

/**
 * Every stack setting is a top-level Pulumi config key of a scalar or array type, because
 * Pulumi.yaml can only declare string, integer, boolean and array keys. A stack file names its
 * tier and only the keys it overrides; the tier preset fills in the rest.
 */
export const PROJECT = "inference-hub";

export const TIERS = ["cpu", "gpu", "hybrid", "multigpu", "local"] as const;
export type Tier = (typeof TIERS)[number];

export const QUANTIZATIONS = ["none", "8bit", "4bit"] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];

export const OCR_ENGINES = ["deepseek-ocr", "docling", "none"] as const;
export type OcrEngine = (typeof OCR_ENGINES)[number];

export type PulumiConfigType = "string" | "integer" | "boolean" | "array";

interface KeySpec<T extends z.ZodType> {
  readonly type: PulumiConfigType;
  readonly description: string;
  readonly schema: T;
  readonly secret?: boolean;
}

const key = <T extends z.ZodType>(type: PulumiConfigType, schema: T, description: string): KeySpec<T> => ({ type, schema, description });

const int = (min: number, max: number) =>
  z
    .number()
    .int({ error: `must be a whole number from ${min} to ${max}` })
    .min(min, { error: `must be a whole number from ${min} to ${max}` })
    .max(max, { error: `must be a whole number from ${min} to ${max}` });
const oneOf = <T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `must be one of ${values.join(", ")}` });
const slug = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "must be a lower-case slug such as c-4 or tor1");
const cidr = z
  .string()
  .regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$|^[0-9a-fA-F:]+\/\d{1,3}$/, "must be a CIDR such as 203.0.113.7/32")
  .refine((v) => !v.includes(".") || v.split("/")[0].split(".").every((o) => Number(o) <= 255), "has an octet above 255");

export const SETTINGS = {
  tier: key("string", oneOf(TIERS), "Strategy tier: cpu (CPU node only), gpu (one GPU droplet always on), hybrid (GPU droplet on demand), multigpu (one 8-GPU droplet), local (the CPU services on this machine's Docker)."),
  region: key("string", slug, "DigitalOcean region slug for every droplet and volume (one VPC). GPU sizes exist only in some regions."),
  cpuSize: key("string", slug, "Droplet size of the always-on CPU node (gateway, speech, OCR on CPU, CPU coder)."),
  cpuCacheGiB: key("integer", int(10, 16384), "Block-storage volume on the CPU node for CPU model files and gateway state (TLS certificates), GiB."),
  gpuSize: key("string", slug, "Droplet size of each GPU node, e.g. gpu-h100x1-80gb."),
  gpuCount: key("integer", int(0, 64), "Number of GPU droplets serving the coder (replicas behind the gateway)."),
  gpuEnabled: key("boolean", z.boolean(), "hybrid only: whether the on-demand GPU droplet exists right now. Off destroys the droplet and keeps its model cache."),
  gpuHoursPerMonth: key("integer", int(0, 744), "hybrid only: expected GPU hours per month, for the cost estimate and the budget check."),
  gpuWindows: key("array", z.array(z.string()), "hybrid only: working-hours windows when the scheduled pipeline keeps the GPU on, e.g. [\"mon-fri 08:00-18:00 Europe/Berlin\"]. Sets the expected hours."),
  modelCacheGiB: key("integer", int(10, 16384), "Model-cache volume per GPU node (weights + vLLM compile cache), GiB. Grows in place; never shrinks."),
  llmModel: key("string", z.string().min(1), "Coding model, by catalogue id (see README): e.g. qwen2.5-coder-32b, codellama-34b, deepseek-v3."),
  llmQuantization: key("string", oneOf(QUANTIZATIONS), "none (native dtype), 8bit (FP8 on FP8-capable GPUs; Q8_0 on CPU), 4bit (AWQ checkpoint, else bitsandbytes; Q4_K_M on CPU)."),
  llmMaxContext: key("integer", int(512, 1_048_576), "Maximum context length in tokens (vLLM --max-model-len, llama.cpp --ctx-size)."),
  llmGpuMemoryPercent: key("integer", int(5, 95), "Share of each GPU's memory given to the coder's vLLM (--gpu-memory-utilization x 100)."),
  llmTensorParallelSize: key("integer", int(1, 8), "Tensor-parallel size of the coder; must equal the GPU count of gpuSize."),
  ocrEngine: key("string", oneOf(OCR_ENGINES), "deepseek-ocr (vLLM on the GPU node), docling (docling-serve on the CPU node) or none."),
  ocrGpuMemoryPercent: key("integer", int(5, 95), "Share of GPU memory for DeepSeek-OCR when it shares the GPU with the coder."),
  ocrCpuFallback: key("boolean", z.boolean(), "Also run docling-serve on the CPU node, so OCR answers while the GPU is off."),
  sttModel: key("string", z.string().min(1), "Whisper model for speech to text (faster-whisper, int8): tiny, base, small, medium or large-v3."),
  ttsModel: key("string", z.string().min(1), "Coqui TTS model name, e.g. tts_models/en/ljspeech/tacotron2-DDC."),
  fallbackModel: key("string", z.string().min(1), "CPU fallback coder (llama.cpp, 4-bit GGUF) served under the coder's name while the GPU is off, or none."),
  domain: key("string", z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, "must be a DNS name such as hub.example.com"), "Public DNS name of the gateway; enables HTTPS with Let's Encrypt. Unset: HTTP only."),
  acmeEmail: key("string", z.email("must be an e-mail address"), "Contact e-mail for Let's Encrypt; required with domain."),
  adminCidrs: key("array", z.array(cidr), "Source CIDRs allowed to SSH to the nodes. Empty: SSH open to the internet (the plan warns)."),
  rateLimitPerMinute: key("integer", int(1, 100_000), "Requests per minute each API key may make on each service, whichever header carries the key (the gatekeeper's default; a key may set its own)."),
  rateLimitBurst: key("integer", int(1, 100_000), "Requests a key may send at once on each service above its per-minute rate."),
  budgetUsd: key("integer", int(0, 1_000_000), "Monthly budget in USD; a plan whose projected month exceeds it is refused."),
  sshPublicKey: key("string", z.string().regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( .*)?$/, "must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)"), "OpenSSH public key registered with DigitalOcean and installed for root on every node."),
  sshKeyFingerprints: key("array", z.array(z.string().regex(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$|^\d+$/, "must be an MD5 fingerprint (aa:bb:...) or a numeric key id")), "Existing DigitalOcean SSH keys (fingerprints or ids) to install for root, besides sshPublicKey."),
} as const;

/**
 * Secret settings: read by the program with config.getSecret, never decoded into HubConfig,
 * never printed. Set them with `pulumi config set --secret <key> <value>`.
 */
export const SECRET_SETTINGS = {
  hubApiKey: {
    type: "string",
    description: "The backends' internal API key: the gatekeeper swaps it in for the client's key on allowed requests. Unset: a random 48-character key (stack output hubApiKey).",
  },
  apiKeys: {
    type: "string",
    description: "Client API keys, as JSON written by `npm run hub -- keys`: ids, SHA-256 hashes, scopes, rate limits (never the keys).",
  },
  auditDatabaseUrl: {
    type: "string",
    description: "PostgreSQL connection string (a Supabase one works) for the audit log. Unset: the audit log is the spool file on the CPU node.",
  },
  sshPrivateKey: {
    type: "string",
    description: "Private key for the deployer's SSH connections (readiness checks, Docker over SSH). Unset: the SSH agent (SSH_AUTH_SOCK) is used.",
  },
} as const;
export type SecretSettingName = keyof typeof SECRET_SETTINGS;

export type SettingName = keyof typeof SETTINGS;
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

export type Settings = { -readonly [K in SettingName]: z.infer<(typeof SETTINGS)[K]["schema"]> };
/** What a stack file may hold: the tier and any overrides. */
export type StackOverrides = Partial<Settings>;

/** Settings that may be left unset after the preset is applied. */
export const OPTIONAL_SETTINGS = ["domain", "acmeEmail", "sshPublicKey"] as const;
