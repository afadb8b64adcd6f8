import * as ipaddr from "ipaddr.js";
import * as sshpk from "sshpk";
import { z } from "zod";

/**
 * Every stack setting is a top-level Pulumi config key of a scalar or array type, because
 * Pulumi.yaml can only declare string, integer, boolean and array keys. A stack file names its
 * tier and only the keys it overrides; the tier preset fills in the rest.
 */
export const PROJECT = "inference-hub";

export const TIERS = ["cpu", "gpu", "hybrid", "multigpu", "local", "k8s"] as const;
export type Tier = (typeof TIERS)[number];

export const QUANTIZATIONS = ["none", "8bit", "4bit"] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];

export const OCR_ENGINES = ["deepseek-ocr", "docling", "none"] as const;
export type OcrEngine = (typeof OCR_ENGINES)[number];

export const SANDBOX_MODES = ["none", "on"] as const;
export type SandboxMode = (typeof SANDBOX_MODES)[number];

export type PulumiConfigType = "string" | "integer" | "boolean" | "array";

interface KeySpec<T extends z.ZodType> {
  readonly type: PulumiConfigType;
  readonly description: string;
  readonly schema: T;
  readonly secret?: boolean;
}

const key = <T extends z.ZodType>(type: PulumiConfigType, schema: T, description: string): KeySpec<T> => ({
  type,
  schema,
  description,
});

const int = (min: number, max: number) =>
  z
    .number()
    .int({ error: `must be a whole number from ${min} to ${max}` })
    .min(min, { error: `must be a whole number from ${min} to ${max}` })
    .max(max, { error: `must be a whole number from ${min} to ${max}` });
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(", ")}` });
const slug = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "must be a lower-case slug such as c-4 or tor1");
/** Any control character (C0, DEL, C1): they have no place in a firewall rule or an authorized_keys line. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * An IPv4 or IPv6 CIDR, parsed with ipaddr.js. IPv4 must be four decimal octets: ipaddr.js alone
 * would read 010.0.0.0 as octal (8.0.0.0) and 1.2.3 as 1.2.0.3. IPv6 zone ids (%eth0) mean
 * nothing to a cloud firewall.
 */
export function cidrProblem(text: string): string | undefined {
  const parts = text.split("/");
  if (parts.length !== 2 || !/^(0|[1-9]\d{0,2})$/.test(parts[1]))
    return "must be an address and a prefix length, such as 203.0.113.7/32 or 2001:db8::/48";
  const [address, prefixText] = parts;
  const prefix = Number(prefixText);
  if (address.includes(":")) {
    if (address.includes("%") || !ipaddr.IPv6.isValid(address)) return "is not an IPv6 address";
    return prefix <= 128 ? undefined : "has an IPv6 prefix length above 128";
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(address)) return "is not an IPv4 address of four decimal octets (0-255)";
  return prefix <= 32 ? undefined : "has an IPv4 prefix length above 32";
}

/** The same network however it is spelled (2001:DB8::/32 and 2001:db8:0::/32), for duplicate checks. */
export function cidrKey(text: string): string {
  const [address, prefix] = ipaddr.parseCIDR(text);
  return `${address.toNormalizedString()}/${prefix}`;
}

const cidr = z.string().superRefine((v, ctx) => {
  const why = cidrProblem(v);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

/** Key types DigitalOcean and Ubuntu 24.04's OpenSSH both take (DSA is gone from OpenSSH). */
const SSH_KEY_TYPES: Readonly<Record<string, string>> = {
  "ssh-ed25519": "ed25519",
  "ssh-rsa": "rsa",
  "ecdsa-sha2-nistp256": "ecdsa",
  "ecdsa-sha2-nistp384": "ecdsa",
  "ecdsa-sha2-nistp521": "ecdsa",
};

/** An OpenSSH public key line, decoded with sshpk: a garbage body or a type that disagrees with it is refused. */
export function sshPublicKeyProblem(text: string): string | undefined {
  if (/PRIVATE KEY/.test(text)) return "is a private key; this setting takes the public half (the .pub file)";
  if (CONTROL.test(text))
    return "contains a control character (a line break or similar); it must be a single OpenSSH public key line";
  const type = text.split(" ")[0];
  if (!Object.hasOwn(SSH_KEY_TYPES, type)) return `must start with one of ${Object.keys(SSH_KEY_TYPES).join(", ")}`;
  let key: sshpk.Key;
  try {
    key = sshpk.parseKey(text, "ssh");
  } catch {
    return `has a key body that does not decode as an ${type} public key`;
  }
  if (key.type !== SSH_KEY_TYPES[type]) return `says ${type} but holds a ${key.type} key`;
  // OpenSSH 9.1+ (Ubuntu 24.04 ships 9.6) refuses RSA keys below RequiredRSASize, default 1024 bits.
  if (key.type === "rsa" && key.size < 1024)
    return `is a ${key.size}-bit RSA key, which OpenSSH refuses (RequiredRSASize 1024); use ed25519 or RSA of 3072 bits`;
  return undefined;
}

const sshPublicKey = z.string().superRefine((v, ctx) => {
  const why = sshPublicKeyProblem(v);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

/**
 * An ISO-8601 UTC instant (`2026-12-02T18:00:00Z`): the pin's end is compared with clocks on
 * other machines (the controller, a CI runner), so it carries its zone, and only UTC is written.
 */
export function pinInstantProblem(text: string): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?Z$/.test(text))
    return "must be an ISO-8601 UTC instant such as 2026-12-02T18:00:00Z (date, T, time, Z)";
  const ms = Date.parse(text);
  // Date.parse rolls 2026-02-30 over to March: the text must name a real day and time.
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 16) !== text.slice(0, 16))
    return "is not a real date and time";
  return undefined;
}

const pinInstant = z.string().superRefine((v, ctx) => {
  const why = pinInstantProblem(v);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

export const SETTINGS = {
  tier: key(
    "string",
    oneOf(TIERS),
    "Strategy tier: cpu (CPU node only), gpu (one GPU droplet always on), hybrid (GPU droplet on demand), multigpu (one 8-GPU droplet), local (the CPU services on this machine's Docker), k8s (DigitalOcean Kubernetes: a CPU pool, a GPU pool scaled by KEDA and the cluster autoscaler).",
  ),
  region: key(
    "string",
    slug,
    "DigitalOcean region slug for every droplet and volume (one VPC). GPU sizes exist only in some regions.",
  ),
  cpuSize: key(
    "string",
    slug,
    "Droplet size of the always-on CPU node (gateway, speech, OCR on CPU, CPU coder); in k8s, of each CPU pool node (the plan works out how many).",
  ),
  cpuCacheGiB: key(
    "integer",
    int(10, 16384),
    "Block-storage volume on the CPU node for CPU model files and gateway state (TLS certificates), GiB.",
  ),
  gpuSize: key("string", slug, "Droplet size of each GPU node, e.g. gpu-h100x1-80gb."),
  gpuCount: key("integer", int(0, 64), "Number of GPU droplets serving the coder (replicas behind the gateway)."),
  gpuEnabled: key(
    "boolean",
    z.boolean(),
    "hybrid only: whether the on-demand GPU droplet exists right now. Off destroys the droplet and keeps its model cache.",
  ),
  gpuHoursPerMonth: key(
    "integer",
    int(0, 744),
    "hybrid only: expected GPU hours per month, for the cost estimate and the budget check.",
  ),
  gpuWindows: key(
    "array",
    z.array(z.string()),
    'hybrid only: working-hours windows when the scheduled pipeline keeps the GPU on, e.g. ["mon-fri 08:00-18:00 Europe/Berlin"]. Sets the expected hours.',
  ),
  gpuMinNodes: key(
    "integer",
    int(0, 64),
    "Fewest GPU nodes the autoscaler keeps: 0 in hybrid (scale to zero; the volume stays), at least 1 in gpu and multigpu; in k8s the GPU pool's and KEDA's minimum (0 is documented both ways by DigitalOcean: the plan warns).",
  ),
  gpuMaxNodes: key(
    "integer",
    int(0, 64),
    "Most GPU nodes the autoscaler may run (replicas of the coder); unset, at least gpuCount. One model-cache volume exists per node slot, so raising it adds volumes.",
  ),
  gpuIdleMinutes: key(
    "integer",
    int(1, 1440),
    "Minutes without a coder request before the autoscaler lets the last GPU node go. With gpuPredictiveWake it is the starting point the learned idle time adapts from.",
  ),
  gpuTargetLoadPercent: key(
    "integer",
    int(10, 100),
    'Load that adds a GPU node: running + waiting coder requests as a share of what one replica holds at once, sustained for 60 s (the seed design\'s "80% utilized").',
  ),
  gpuPredictiveWake: key(
    "boolean",
    z.boolean(),
    "Learn when coder traffic comes (time of day, recent gaps), wake the GPU ahead of it and adapt the idle time to the gaps. false: wake on the first request, off after gpuIdleMinutes.",
  ),
  gpuPinNodes: key(
    "integer",
    int(0, 64),
    "GPU nodes pinned by `npm run hub -- gpu on|off --for <duration>` until gpuPinUntil: the autoscaler and the windows leave the count alone until then. Unset: no pin.",
  ),
  gpuPinUntil: key(
    "string",
    pinInstant,
    "When the pin (gpuPinNodes) ends, as an ISO-8601 UTC instant such as 2026-12-02T18:00:00Z. An expired pin is ignored (the plan says so); `npm run hub -- gpu unpin` removes it.",
  ),
  autoscaler: key(
    "boolean",
    z.boolean(),
    "GPU tiers: run the autoscaling controller on the CPU node (programs/autoscaler/controller/). It decides the GPU node count every 15 s and asks the deploy pipeline to apply it; without autoscalerDispatchToken it only advises (logs and metrics).",
  ),
  autoscalerDispatchRepo: key(
    "string",
    z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, "must be a GitHub repository as owner/name"),
    "GitHub repository (owner/name) whose .github/workflows/autoscale.yml the controller dispatches. Unset: advice mode.",
  ),
  autoscalerDispatchRef: key(
    "string",
    z.string().regex(/^[A-Za-z0-9_./-]+$/, "must be a branch or tag name"),
    "Branch (or tag) the dispatched autoscale workflow runs from.",
  ),
  autoscalerActuator: key(
    "string",
    oneOf(["github", "pulumi-deployments"] as const),
    "How the autoscaler asks for a GPU node count: github (a workflow_dispatch of .github/workflows/autoscale.yml in autoscalerDispatchRepo) or pulumi-deployments (a Pulumi Deployments run of this stack through Pulumi Cloud's REST API, token autoscalerPulumiToken; docs/gpu-wake.md).",
  ),
  gpuSnapshotId: key(
    "string",
    z
      .string()
      .regex(/^\d{1,20}$/, "must be a DigitalOcean snapshot id (digits), as `npm run hub -- gpu image build` sets it"),
    "The baked GPU image GPU nodes boot (a DigitalOcean snapshot id), set by `npm run hub -- gpu image build`. Used only while gpuSnapshotName matches the current pins (the plan says which image a node boots). Unset: the GPU base image, set up by cloud-init.",
  ),
  gpuSnapshotName: key(
    "string",
    z.string().regex(/^ih-gpu-[a-z0-9-]{1,100}$/, "must be a name `npm run hub -- gpu image build` gave (ih-gpu-...)"),
    "Name of the snapshot in gpuSnapshotId: it encodes the base image, the pinned images and the node-setup version it was built from, so the plan can tell a stale one.",
  ),
  gpuHoldMaxSeconds: key(
    "integer",
    int(0, 840),
    "Longest a coder request may wait for a waking GPU (X-Hub-Wait, or its key's waitSeconds): it is held and forwarded once a replica is ready; at the deadline the CPU fallback or the 503 answers. 0 turns holding off. At most 840: Traefik cuts a non-streaming answer after 900 s.",
  ),
  gpuHoldMaxRequests: key(
    "integer",
    int(1, 10_000),
    "Most coder requests held at once while the GPU wakes, all keys together; above it a request is refused with 429.",
  ),
  gpuHoldMaxPerKey: key(
    "integer",
    int(1, 10_000),
    "Most coder requests one API key may have held at once; above it that key's request is refused with 429.",
  ),
  modelCacheGiB: key(
    "integer",
    int(10, 16384),
    "Model-cache volume per GPU node (weights + vLLM compile cache), GiB. Grows in place; never shrinks.",
  ),
  llmModel: key(
    "string",
    z.string().min(1),
    "Coding model, by catalogue id (docs/configuration.md): e.g. qwen2.5-coder-32b, codellama-34b, deepseek-v3.",
  ),
  llmQuantization: key(
    "string",
    oneOf(QUANTIZATIONS),
    "none (native dtype), 8bit (FP8 on FP8-capable GPUs: a pre-quantized FP8 checkpoint where the catalogue has one, else FP8 online; Q8_0 on CPU), 4bit (AWQ checkpoint, else bitsandbytes; Q4_K_M on CPU).",
  ),
  llmMaxContext: key(
    "integer",
    int(512, 1_048_576),
    "Maximum context length in tokens (vLLM --max-model-len, llama.cpp --ctx-size).",
  ),
  llmGpuMemoryPercent: key(
    "integer",
    int(5, 95),
    "Share of each GPU's memory given to the coder's vLLM (--gpu-memory-utilization x 100).",
  ),
  llmTensorParallelSize: key(
    "integer",
    int(1, 8),
    "Tensor-parallel size of the coder; must equal the GPU count of gpuSize.",
  ),
  llmLoraAdapters: key(
    "array",
    z.array(z.string()),
    "LoRA adapters vLLM serves next to the coder, each `<name>=hf:<owner>/<repo>@<rank>` or `<name>=volume:adapters/<dir>@<rank>`; clients pick one with model `coder-<name>` (docs/finetune.md). GPU tiers only. `npm run hub -- finetune add` writes entries.",
  ),
  llmMaxLoras: key(
    "integer",
    int(1, 16),
    "LoRA adapters vLLM runs in one batch (--max-loras); each slot takes GPU memory from the KV cache (the plan counts it).",
  ),
  ocrEngine: key(
    "string",
    oneOf(OCR_ENGINES),
    "deepseek-ocr (vLLM on the GPU node), docling (docling-serve on the CPU node) or none.",
  ),
  ocrGpuMemoryPercent: key(
    "integer",
    int(5, 95),
    "Share of GPU memory for DeepSeek-OCR when it shares the GPU with the coder.",
  ),
  ocrCpuFallback: key(
    "boolean",
    z.boolean(),
    "Also run docling-serve on the CPU node, so OCR answers while the GPU is off.",
  ),
  sttModel: key(
    "string",
    z.string().min(1),
    "Whisper model for speech to text (faster-whisper, int8): tiny, base, small, medium or large-v3.",
  ),
  ttsModel: key("string", z.string().min(1), "Coqui TTS model name, e.g. tts_models/en/ljspeech/tacotron2-DDC."),
  ttsAcceptModelLicense: key(
    "boolean",
    z.boolean(),
    "Agree to the licence a ttsModel requires before Coqui downloads it: xtts_v2 needs the Coqui Public Model License (CPML), non-commercial use only (https://tts-hub.github.io/cpml/). Sets COQUI_TOS_AGREED=1. false: such a model is refused at plan time.",
  ),
  fallbackModel: key(
    "string",
    z.string().min(1),
    "CPU fallback coder (llama.cpp, 4-bit GGUF) served under the coder's name while the GPU is off, or none.",
  ),
  embeddingModel: key(
    "string",
    z.string().min(1),
    "Text-embedding model for /v1/embeddings (llama.cpp on the CPU node, served under its catalogue id, e.g. qwen3-embedding-0.6b), or none. Changing it changes every vector: re-index.",
  ),
  domain: key(
    "string",
    z
      .string()
      .regex(
        /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/,
        "must be a DNS name such as hub.example.com",
      ),
    "Public DNS name of the gateway; enables HTTPS with Let's Encrypt. Unset: HTTP only.",
  ),
  acmeEmail: key(
    "string",
    z.email("must be an e-mail address"),
    "Contact e-mail for Let's Encrypt; required with domain.",
  ),
  adminCidrs: key(
    "array",
    z.array(cidr),
    'Source CIDRs allowed to SSH (port 22) to the nodes. Empty: only the public IPv4 address each deploy runs from, looked up at deploy time. "0.0.0.0/0" (and "::/0") opens SSH to the whole internet (the plan warns).',
  ),
  rateLimitPerMinute: key(
    "integer",
    int(1, 100_000),
    "Requests per minute each API key may make on each service, whichever header carries the key (the gatekeeper's default; a key may set its own).",
  ),
  rateLimitBurst: key(
    "integer",
    int(1, 100_000),
    "Requests a key may send at once on each service above its per-minute rate.",
  ),
  budgetUsd: key(
    "integer",
    int(0, 1_000_000),
    "Monthly budget in USD; a plan whose projected month exceeds it is refused.",
  ),
  grafana: key(
    "boolean",
    z.boolean(),
    "Run Grafana on the CPU node with the hub's dashboards, at /grafana/ for API keys with the admin scope. Unset: on whenever Prometheus runs (the monitoring setting).",
  ),
  sshPublicKey: key(
    "string",
    sshPublicKey,
    "OpenSSH public key registered with DigitalOcean and installed for root on every node.",
  ),
  monitoring: key(
    "boolean",
    z.boolean(),
    "Run Prometheus and Alertmanager on the CPU node, and node_exporter (plus the GPU exporter: DCGM on NVIDIA, AMD's device-metrics-exporter on AMD) on every droplet. The local tier runs Prometheus and Alertmanager only.",
  ),
  prometheusRetentionDays: key(
    "integer",
    int(1, 365),
    "Days of metrics Prometheus keeps on the CPU cache volume (storage.tsdb.retention.time); it also stops at a quarter of cpuCacheGiB (retention.size), whichever comes first.",
  ),
  alertEmail: key(
    "string",
    z.email("must be an e-mail address"),
    "Where Alertmanager e-mails alerts; needs alertSmtpSmarthost and alertSmtpFrom (and alertSmtpUser with the secret alertSmtpPassword if the server asks for a login). Unset (and no alertWebhookUrl): alerts are only shown in Prometheus and Alertmanager.",
  ),
  alertSmtpSmarthost: key(
    "string",
    z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, "must be host:port, such as smtp.example.com:587"),
    "SMTP server for alert e-mail, host:port (Alertmanager smtp_smarthost; STARTTLS required).",
  ),
  alertSmtpFrom: key(
    "string",
    z.email("must be an e-mail address"),
    "Sender address of alert e-mail (Alertmanager smtp_from).",
  ),
  alertSmtpUser: key(
    "string",
    z
      .string()
      .min(1)
      .regex(/^[^\s]+$/, "must not contain spaces"),
    "SMTP login for alert e-mail (Alertmanager smtp_auth_username); its password is the secret alertSmtpPassword.",
  ),
  sandbox: key(
    "string",
    oneOf(SANDBOX_MODES),
    "on: a code-execution sandbox for the coding agents (POST /v1/sandbox/executions, keys with the sandbox scope), isolated by gVisor on a droplet of its own that holds no hub secret (docs/sandbox.md). none: no sandbox node.",
  ),
  sandboxSize: key(
    "string",
    slug,
    "Droplet size of the sandbox node (sandbox on): one execution at a time per vCPU, each held to one CPU; at least 4 GiB of RAM.",
  ),
  sshKeyFingerprints: key(
    "array",
    z.array(
      z
        .string()
        .regex(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$|^\d+$/, "must be an MD5 fingerprint (aa:bb:...) or a numeric key id"),
    ),
    "Existing DigitalOcean SSH keys (fingerprints or ids) to install for root, besides sshPublicKey.",
  ),
} as const;

/**
 * Secret settings: read by the program with config.getSecret, never decoded into HubConfig,
 * never printed. Set them with `pulumi config set --secret <key> <value>`.
 */
export const SECRET_SETTINGS = {
  hubApiKey: {
    type: "string",
    description:
      "The backends' internal API key: the gatekeeper swaps it in for the client's key on allowed requests. Unset: a random 48-character key (stack output hubApiKey).",
  },
  apiKeys: {
    type: "string",
    description:
      "Client API keys, as JSON written by `npm run hub -- keys`: ids, SHA-256 hashes, scopes, rate limits (never the keys).",
  },
  auditDatabaseUrl: {
    type: "string",
    description:
      "PostgreSQL connection string (a Supabase one works) for the audit log. Unset: the audit log is the spool file on the CPU node.",
  },
  autoscalerDispatchToken: {
    type: "string",
    description:
      "Fine-grained GitHub token for the autoscaler: repository access to autoscalerDispatchRepo only, permission Actions: write (it can start workflows, nothing else). Unset: the controller runs in advice mode.",
  },
  sandboxToken: {
    type: "string",
    description:
      "The token the sandbox front on the gateway node presents to the sandbox node, which keeps only its SHA-256 (sandbox on). Unset: a random 48-character token kept in the stack's state.",
  },
  autoscalerBillingToken: {
    type: "string",
    description:
      "Optional DigitalOcean token with read-only scope for the autoscaler's billing cross-check (GET /v2/customers/my/balance). Never the write token the deploy uses.",
  },
  alertSmtpPassword: {
    type: "string",
    description:
      "Password for alertSmtpUser. Written to a file only Alertmanager reads (smtp_auth_password_file), never into alertmanager.yml.",
  },
  alertWebhookUrl: {
    type: "string",
    description:
      "Webhook Alertmanager posts alerts to (its JSON webhook format; Slack-style URLs carry a token, hence secret). Written to a file only Alertmanager reads (url_file).",
  },
  autoscalerPulumiToken: {
    type: "string",
    description:
      "Pulumi Cloud access token for autoscalerActuator pulumi-deployments: an organization token with a custom role granting only stack_deployment:create on this stack (docs/gpu-wake.md). Unset: advice mode.",
  },
  sshPrivateKey: {
    type: "string",
    description:
      "Private key for the deployer's SSH connections (readiness checks, Docker over SSH). Unset: the SSH agent (SSH_AUTH_SOCK) is used.",
  },
} as const;
export type SecretSettingName = keyof typeof SECRET_SETTINGS;

export type SettingName = keyof typeof SETTINGS;
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** By own name only: `toString`, `constructor` or `__proto__` are not settings, whatever `in` says. */
export const isSettingName = (name: string): name is SettingName => Object.hasOwn(SETTINGS, name);
export const isSecretSettingName = (name: string): name is SecretSettingName => Object.hasOwn(SECRET_SETTINGS, name);

export type Settings = { -readonly [K in SettingName]: z.infer<(typeof SETTINGS)[K]["schema"]> };
/** What a stack file may hold: the tier and any overrides. */
export type StackOverrides = Partial<Settings>;

/** Settings that may be left unset after the preset is applied. */
export const OPTIONAL_SETTINGS = [
  "domain",
  "acmeEmail",
  "sshPublicKey",
  "autoscalerDispatchRepo",
  "gpuSnapshotId",
  "gpuSnapshotName",
  "alertEmail",
  "alertSmtpSmarthost",
  "alertSmtpFrom",
  "alertSmtpUser",
  "gpuPinNodes",
  "gpuPinUntil",
  "grafana",
] as const;
