import { z } from "zod";
import type { HubConfig } from "../../../stacks/hub-config";
import type { PolicyConfig } from "../types";

/**
 * What the deployment and the controller agree on: ports, paths inside the container, the
 * environment variables, and the config file rendered at deploy time (its shape and its parser).
 * services/ and infra/ import only this file and bundle.ts, never the controller's server code.
 */

/** The controller's own port: /metrics, /healthz, /status. On the CPU node's Docker network only (Prometheus and Traefik's admin route reach it there). */
export const CONTROLLER_PORT = 9100;
/** The coder route's off-state answer (503 + Retry-After), reached by Traefik only: nothing else is served here. */
export const OFF_ANSWER_PORT = 9101;
/** Traefik's health check of the holder on the off port (programs/holding/proxy.ts); no public route maps to it. */
export const HOLDER_HEALTH_PATH = "/__hub_holder/health";
/** X-Hub-Backend on the off answer: the name services/backend-header.ts gives the 503 of a GPU that is off. */
export const OFF_BACKEND_NAME = "gpu-off";
export const HEALTH_PATH = "/healthz";
export const STATUS_PATH = "/status";
export const METRICS_PATH = "/metrics";

/** Paths inside the container. */
export const CONTAINER_PATHS = {
  app: "/app",
  bundle: "/app/autoscaler.js",
  configDir: "/config",
  configFile: "/config/autoscaler.json",
  /** Learned state and the ledger, on the CPU node's cache volume. */
  stateDir: "/state",
} as const;

export const ENV = {
  configFile: "AUTOSCALER_CONFIG_FILE",
  stateDir: "AUTOSCALER_STATE_DIR",
  port: "AUTOSCALER_PORT",
  offPort: "AUTOSCALER_OFF_PORT",
  /** Fine-grained GitHub token, Actions: write on the one repository. Unset or empty: advice mode. */
  dispatchToken: "AUTOSCALER_DISPATCH_TOKEN",
  /** Pulumi Cloud token with stack_deployment:create on this stack, for the pulumi-deployments actuator. Unset or empty: advice mode. */
  pulumiToken: "AUTOSCALER_PULUMI_TOKEN",
  /** DigitalOcean token with read scope on billing, optional: cross-checks the ledger. */
  billingToken: "AUTOSCALER_BILLING_TOKEN",
  /** For tests (the recording stand-ins); production uses the defaults. */
  githubApi: "AUTOSCALER_GITHUB_API",
  pulumiApi: "AUTOSCALER_PULUMI_API",
  digitaloceanApi: "AUTOSCALER_DIGITALOCEAN_API",
} as const;

export const GITHUB_API = "https://api.github.com";
export const PULUMI_API = "https://api.pulumi.com";
export const DIGITALOCEAN_API = "https://api.digitalocean.com";
/** The workflow the dispatch names (scaleops owns .github/workflows/autoscale.yml). */
export const DISPATCH_WORKFLOW = "autoscale.yml";

const positive = z.number().finite().nonnegative();
const PULUMI_NAME = /^[A-Za-z0-9_.-]{1,100}$/;

const replicaSchema = z.object({
  node: z.string().regex(/^gpu-\d+$/),
  /** vLLM's /metrics and /health over the VPC. */
  metricsUrl: z.string().url(),
  healthUrl: z.string().url(),
});

export const controllerFileSchema = z.object({
  version: z.literal(1),
  stack: z.string().min(1),
  tier: z.enum(["gpu", "hybrid", "multigpu", "k8s"]),
  /** Seconds between ticks. */
  tickSeconds: z.number().int().min(1).max(300),
  policy: z.object({
    minNodes: z.number().int().min(0),
    maxNodes: z.number().int().min(0),
    idleSeconds: positive,
    targetLoad: z.number().positive().max(1),
    predictive: z.boolean(),
    /** The stack's gpuWindows text, parsed by the controller with stacks/windows.ts. */
    gpuWindows: z.array(z.string()),
    replicaCapacity: z.number().int().positive(),
    coldStartSeconds: positive,
    restartCostSeconds: positive,
    nodeHourlyUsd: positive,
    gpuBudgetUsd: positive,
  }),
  /**
   * From the serving model: the unbilled head of a wake (the pipeline until the droplet exists),
   * droplet creation (billed, before the deploy can name the node) and the teardown.
   */
  timing: z.object({ pipelineSeconds: positive, createSeconds: positive, destroySeconds: positive }),
  /** Where the demand signal is read: the gatekeeper's /metrics (allowed `llm` decisions, ../demand.ts). */
  demand: z.object({ metricsUrl: z.string().url() }),
  /** The GPU replicas this deploy created, as the route table names them. */
  replicas: z.array(replicaSchema),
  /** Whether a CPU stand-in answers the coder route while no replica is ready (else this controller's 503 does). */
  fallback: z.boolean(),
  /**
   * Holding coder requests while the GPU wakes (programs/holding/): the stack's caps, and the CPU
   * stand-in the holder forwards to when a request does not wait. Absent: the off port only answers the 503.
   */
  holding: z
    .object({
      maxSeconds: z.number().int().min(0).max(840),
      maxRequests: z.number().int().min(1),
      maxPerKey: z.number().int().min(1),
      fallbackUrl: z.string().url().nullable(),
    })
    .optional(),
  pin: z.object({ nodes: z.number().int().min(0), untilMs: z.number().int() }).nullable(),
  /** Where a wanted count goes: a GitHub workflow_dispatch, or a Pulumi Deployments run of this stack (deployments.ts). */
  dispatch: z
    .union([
      z.object({
        repo: z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/),
        ref: z.string().min(1),
        workflow: z.string().min(1),
      }),
      z.object({
        kind: z.literal("pulumi-deployments"),
        organization: z.string().regex(PULUMI_NAME),
        project: z.string().regex(PULUMI_NAME),
        stack: z.string().regex(PULUMI_NAME),
      }),
    ])
    .nullable(),
  /** Whether the deploy gave a billing token (the controller still checks the environment). */
  billingCrossCheck: z.boolean(),
  /**
   * The always-on part of the month's bill (CPU node, volumes): what budgetUsd less gpuBudgetUsd
   * is. DigitalOcean's month-to-date figure covers the whole account, so the share of this accrued
   * so far comes off it before it is compared with the GPU's ledger. Absent: 0 (the whole figure counts as GPU).
   */
  fixedMonthlyUsd: positive.default(0),
  /** The k8s tier: `replicas` are StatefulSet slots, deployed while their pod's name resolves (kubernetes.ts). @default - droplets: every named replica is deployed */
  kubernetes: z.object({ replicaSlots: z.boolean() }).optional(),
});

export type ControllerFile = z.infer<typeof controllerFileSchema>;

export class ControllerFileError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`the controller's config file is not valid:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ControllerFileError";
  }
}

export function parseControllerFile(text: string): ControllerFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ControllerFileError([`not JSON: ${(err as Error).message}`]);
  }
  const parsed = controllerFileSchema.safeParse(json);
  if (!parsed.success)
    throw new ControllerFileError(parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`));
  const file = parsed.data;
  if (file.policy.minNodes > file.policy.maxNodes)
    throw new ControllerFileError([
      `policy: minNodes ${file.policy.minNodes} is above maxNodes ${file.policy.maxNodes}`,
    ]);
  return file;
}

/** The pin (`gpu on --for 8h`, settings gpuPinNodes/gpuPinUntil), as the stack holds it. */
export function pinFromHub(hub: HubConfig): HubConfig["gpuPin"] {
  return hub.gpuPin;
}

/** PolicyConfig as the file carries it: windows as their text. */
export function filePolicy(policy: PolicyConfig, gpuWindows: readonly string[]): ControllerFile["policy"] {
  const { windows: _parsed, ...rest } = policy;
  return { ...rest, gpuWindows: [...gpuWindows] };
}

/**
 * Spend the controller cannot see but the month's budget must count: the droplets of fine-tuning
 * jobs (`npm run hub -- finetune`), which live in stacks of their own. The hub command writes this
 * file into the state directory over SSH after each job run; the controller adds this month's
 * entries to its ledger's spend every tick (ledger.ts monthToDateUsd).
 */
export const EXTERNAL_SPEND_FILE = "external-spend.json";

export interface ExternalSpend {
  readonly version: 1;
  /** By job id: the month the spend fell in ("YYYY-MM", UTC), USD, and what it was. */
  readonly entries: Readonly<Record<string, { readonly month: string; readonly usd: number; readonly what: string }>>;
}

export function asExternalSpend(v: unknown): ExternalSpend | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (o.version !== 1 || typeof o.entries !== "object" || o.entries === null || Array.isArray(o.entries))
    return undefined;
  for (const e of Object.values(o.entries as Record<string, unknown>)) {
    if (typeof e !== "object" || e === null) return undefined;
    const x = e as Record<string, unknown>;
    if (
      typeof x.month !== "string" ||
      !/^\d{4}-\d{2}$/.test(x.month) ||
      typeof x.usd !== "number" ||
      !Number.isFinite(x.usd) ||
      x.usd < 0 ||
      typeof x.what !== "string"
    )
      return undefined;
  }
  return v as ExternalSpend;
}

/** This month's (UTC) external spend, USD. */
export function externalMonthUsd(spend: ExternalSpend | undefined, nowMs: number): number {
  const month = new Date(nowMs).toISOString().slice(0, 7);
  return Object.values(spend?.entries ?? {}).reduce((sum, e) => sum + (e.month === month ? e.usd : 0), 0);
}
