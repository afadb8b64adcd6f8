import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { findGpuSize, GPU_SIZES, GpuSize } from "../../../stacks/catalogue/droplets";
import { findModel, ModelEntry } from "../../../stacks/catalogue/models";
import { FinetuneMethod, FinetunePlan, planFinetune } from "../../../stacks/finetune";
import type { HubConfig } from "../../../stacks/hub-config";
import { ADAPTER_NAME, formatAdapterEntry, parseAdapterEntry } from "../../../stacks/lora";
import { formatProblem } from "../../../stacks/problems";
import { PROJECT } from "../../../stacks/settings";
import { applyDecision } from "../commands";
import { decide, resolveConfig, StackConfig } from "../decisions";
import { HubCommandError, StackOps } from "../ops";
import { renderAxolotlConfig, TRAINER_DEFAULTS } from "./axolotl";
import { checkDataset, DatasetFormat, formatDatasetProblems } from "./dataset";
import { cleanJob, JobDeps, JobIo, runJob } from "./job";
import type { JobOps, RemoteShell } from "./job-ops";
import { jobStackName } from "./job-stack";
import { checkPeftAdapter } from "./peft";
import { JobRecord, JobStore, spendUsd } from "./record";
import { recordJobSpend } from "./spend";
import { tokenCounterFor } from "./tokens";

/**
 * `npm run hub -- finetune ...`: the checks and the plan before anything exists, then the job's
 * life (job.ts), and `finetune add`, which puts a trained adapter on the serving stack's GPU
 * volumes and lists it in llmLoraAdapters.
 */
export interface FinetuneOptions {
  readonly name: string;
  readonly dataset?: string;
  readonly epochs?: number;
  readonly rank?: number;
  readonly method?: FinetuneMethod;
  readonly gpuSize?: string;
  readonly sequenceLen?: number;
  readonly learningRate?: number;
  readonly format?: DatasetFormat;
}

export interface FinetuneEnv {
  readonly serving: StackOps;
  readonly store: JobStore;
  /** The job's Pulumi and SSH operations for this record. */
  readonly jobOps: (record: JobRecord, serving: StackConfig) => JobOps;
  readonly io: JobIo;
  readonly sleep: (ms: number) => Promise<void>;
  readonly pollMs: number;
  /** This month's spend of the stack's other fine-tuning jobs recorded on this machine. */
  readonly otherJobsMonthUsd: number;
  /** A shell on a serving GPU node (finetune add). */
  readonly nodeShell: (host: string, sshOptions: readonly string[]) => RemoteShell;
  readonly interrupted?: () => boolean;
}

export const FINETUNE_DEFAULTS = { epochs: 3, rank: 16, sequenceLen: 4096 } as const;

async function servingHub(
  env: Pick<FinetuneEnv, "serving" | "io">,
): Promise<{ config: StackConfig; hub: HubConfig; model: ModelEntry }> {
  const config = await env.serving.getConfig();
  const resolved = resolveConfig(config, {}, env.io.now());
  if (!resolved.ok) throw new HubCommandError(`the stack's config is refused; fix it first:\n  ${resolved.reason}`);
  const model = findModel(resolved.hub.settings.llmModel)!;
  return { config, hub: resolved.hub, model };
}

/** The cheapest single-GPU NVIDIA size in the stack's region the job fits, or the one asked for. */
function chooseGpu(hub: HubConfig, asked: string | undefined, fits: (g: GpuSize) => boolean): GpuSize {
  if (asked) {
    const g = findGpuSize(asked);
    if (!g)
      throw new HubCommandError(
        `--gpu-size ${asked} is not a GPU size; GPU sizes: ${GPU_SIZES.map((s) => s.slug).join(", ")}`,
      );
    if (!g.regions.includes(hub.region))
      throw new HubCommandError(
        `--gpu-size ${asked} is not offered in ${hub.region}, the stack's region (it is in ${g.regions.join(", ")}); the job runs in the stack's region`,
      );
    return g;
  }
  const candidates = GPU_SIZES.filter(
    (g) => g.vendor === "nvidia" && g.gpuCount === 1 && g.regions.includes(hub.region),
  ).sort((a, b) => a.pricePerHour - b.pricePerHour);
  const found = candidates.find(fits);
  if (!found)
    throw new HubCommandError(
      `no single-GPU NVIDIA size in ${hub.region} holds this job (${candidates.map((g) => g.slug).join(", ") || "none offered"}); lower --sequence-len or --rank, or pass --gpu-size`,
    );
  return found;
}

function planOrRefuse(p: ReturnType<typeof planFinetune>): FinetunePlan {
  if (!p.ok)
    throw new HubCommandError(
      `refused before anything was created:\n${p.problems.map((x) => `  - ${formatProblem(x)}`).join("\n")}`,
    );
  return p.plan;
}

function jobDeps(env: FinetuneEnv, record: JobRecord, serving: StackConfig, model: ModelEntry): JobDeps {
  return {
    ops: env.jobOps(record, serving),
    store: env.store,
    io: env.io,
    sleep: env.sleep,
    pollMs: env.pollMs,
    checkAdapter: (dir) => checkPeftAdapter(dir, model),
    datasetFile: () => record.dataset.file,
    interrupted: env.interrupted,
  };
}

interface Checked {
  readonly config: StackConfig;
  readonly hub: HubConfig;
  readonly model: ModelEntry;
  readonly file: string;
  readonly bytes: Buffer;
  readonly report: ReturnType<typeof checkDataset>;
  readonly gpu: GpuSize;
  readonly plan: FinetunePlan;
  readonly rank: number;
  readonly epochs: number;
  readonly sequenceLen: number;
}

/** Everything before the cloud: the name, the dataset line by line, the plan and the budget. */
async function checkAndPlan(
  env: Pick<FinetuneEnv, "serving" | "io" | "otherJobsMonthUsd">,
  o: FinetuneOptions,
): Promise<Checked> {
  if (!ADAPTER_NAME.test(o.name))
    throw new HubCommandError(
      `--name ${JSON.stringify(o.name)}: an adapter name is 1-40 lower-case letters, digits and inner hyphens (clients will call it coder-${o.name})`,
    );
  if (!o.dataset)
    throw new HubCommandError(
      '--dataset FILE is required: a JSON Lines file of chat ({"messages": [...]}) or completion ({"text": ...}) examples',
    );
  const { config, hub, model } = await servingHub(env);
  const rank = o.rank ?? FINETUNE_DEFAULTS.rank;
  const epochs = o.epochs ?? FINETUNE_DEFAULTS.epochs;
  const sequenceLen = o.sequenceLen ?? Math.min(FINETUNE_DEFAULTS.sequenceLen, model.maxContext);

  const file = path.resolve(o.dataset);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new HubCommandError(
      `--dataset ${o.dataset}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
    );
  }
  const counter = tokenCounterFor(model);
  env.io.out(`[check] ${path.basename(file)}: counting tokens with ${counter.name}`);
  const report = checkDataset(bytes, { format: o.format, sequenceLen, modelContext: model.maxContext, counter });
  if (report.problems.length > 0)
    throw new HubCommandError(
      `the dataset is refused (${report.problems.length} problem(s)); nothing was created:\n${formatDatasetProblems(
        o.dataset,
        report.problems,
      )
        .map((l) => `  ${l}`)
        .join("\n")}`,
    );
  for (const w of report.warnings) env.io.out(`  note: ${w}`);
  env.io.out(
    `  ${report.examples} ${report.format} examples, ${report.tokens.toLocaleString("en-US")} tokens${report.exactTokens ? "" : " ⚠ estimated"}, longest ${report.longest?.tokens} (line ${report.longest?.line})`,
  );

  const request = {
    model,
    rank,
    epochs,
    sequenceLen,
    microBatch: TRAINER_DEFAULTS.microBatch,
    datasetTokens: report.tokens,
    projectedMonthUsd: hub.cost.monthlyUsd + env.otherJobsMonthUsd,
    budgetUsd: hub.budgetUsd,
    method: o.method,
  };
  const gpu = chooseGpu(
    hub,
    o.gpuSize,
    (g) => planFinetune({ ...request, gpu: g, projectedMonthUsd: 0, budgetUsd: Number.MAX_SAFE_INTEGER }).ok,
  );
  const plan = planOrRefuse(planFinetune({ ...request, gpu }));
  for (const line of plan.lines) env.io.out(`  ${line}`);
  env.io.out(
    `  budget: stack's projected month $${hub.cost.monthlyUsd.toFixed(2)}${env.otherJobsMonthUsd > 0 ? ` + this month's earlier jobs $${env.otherJobsMonthUsd.toFixed(2)}` : ""} + this job $${plan.totalUsd.toFixed(2)} <= budgetUsd $${hub.budgetUsd}`,
  );
  return { config, hub, model, file, bytes, report, gpu, plan, rank, epochs, sequenceLen };
}

/** `finetune --plan`: the checks and the plan, nothing created. */
export async function finetunePlanOnly(
  serving: StackOps,
  o: FinetuneOptions,
  io: JobIo,
  otherJobsMonthUsd: number,
): Promise<void> {
  await checkAndPlan({ serving, io, otherJobsMonthUsd }, o);
  io.out("Plan only: nothing was created.");
}

export async function finetuneStart(env: FinetuneEnv, o: FinetuneOptions): Promise<JobRecord> {
  const existing = env.store.load();
  if (existing && existing.status !== "cleaned")
    throw new HubCommandError(
      `a job named ${o.name} already exists on this stack (${existing.status}, phase ${existing.phase}): \`finetune resume\` or \`finetune clean --name ${o.name}\` first, or pick another --name`,
    );
  const { config, hub, model, file, bytes, report, gpu, plan, rank, epochs, sequenceLen } = await checkAndPlan(env, o);
  const now = env.io.now();
  const record: JobRecord = {
    version: 1,
    stack: env.serving.stackName,
    name: o.name,
    jobStack: jobStackName(env.serving.stackName, o.name),
    model: model.id,
    baseModel: model.repo,
    method: plan.method,
    rank,
    epochs,
    sequenceLen,
    format: report.format!,
    dataset: {
      file,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      examples: report.examples,
      tokens: report.tokens,
    },
    gpu: { slug: gpu.slug, pricePerHour: gpu.pricePerHour, image: gpu.image, region: hub.region },
    volumeGiB: plan.volumeGiB,
    estimate: { totalUsd: plan.totalUsd, totalSeconds: plan.totalSeconds },
    trainerConfig: renderAxolotlConfig({
      baseModel: model.repo,
      method: plan.method,
      rank,
      epochs,
      learningRate: o.learningRate ?? TRAINER_DEFAULTS.learningRate,
      sequenceLen,
      microBatch: TRAINER_DEFAULTS.microBatch,
      gradientAccumulation: TRAINER_DEFAULTS.gradientAccumulation,
      format: report.format!,
      seed: TRAINER_DEFAULTS.seed,
    }),
    phase: "check",
    status: "running",
    startedMs: now,
    updatedMs: now,
    dropletSpans: [],
    logBytes: 0,
  };
  env.store.save(record);
  return runJob(jobDeps(env, record, config, model), record, reportSpend(env, hub));
}

/** Tells the autoscaling controller's ledger what the job's droplets cost; a failure here is said, never fatal. */
const reportSpend =
  (env: FinetuneEnv, hub: HubConfig) =>
  async (record: JobRecord): Promise<void> => {
    try {
      env.io.out(`Budget: ${await recordJobSpend(env.serving, hub, record, env.nodeShell, env.io.now())}.`);
    } catch (err) {
      env.io.out(
        `Budget: the job's spend could NOT be given to the controller's ledger (${(err as Error).message.split("\n")[0]}); \`finetune status\` shows it, and the next \`finetune\` run counts it from this machine's records.`,
      );
    }
  };

function recordOrRefuse(store: JobStore, stack: string, name: string): JobRecord {
  const record = store.load();
  if (!record)
    throw new HubCommandError(
      `no fine-tuning job named ${name} on stack ${stack} on this machine (records live in ${path.dirname(store.dir)})`,
    );
  return record;
}

export async function finetuneResume(env: FinetuneEnv, name: string): Promise<JobRecord> {
  const record = recordOrRefuse(env.store, env.serving.stackName, name);
  if (record.status === "succeeded")
    throw new HubCommandError(
      `job ${name} has finished; its adapter is in ${record.adapter?.dir}. \`finetune add --name ${name}\` serves it.`,
    );
  if (record.status === "cleaned")
    throw new HubCommandError(
      `job ${name} was cleaned up; start it again with \`finetune --dataset ... --name ${name}\` after \`finetune clean\``,
    );
  const { config, hub, model } = await servingHub(env);
  // The estimate again, on top of what the month has spent, this job included.
  const spent = spendUsd(record, env.io.now());
  if (hub.cost.monthlyUsd + env.otherJobsMonthUsd + spent + record.estimate.totalUsd > hub.budgetUsd) {
    throw new HubCommandError(
      `budgetUsd = ${hub.budgetUsd}: the projected month $${hub.cost.monthlyUsd.toFixed(2)} + fine-tuning spent $${(env.otherJobsMonthUsd + spent).toFixed(2)} + this job's estimate $${record.estimate.totalUsd.toFixed(2)} is above it. Raise budgetUsd, or \`finetune clean --name ${name}\`.`,
    );
  }
  env.io.out(
    `Resuming ${name} (was ${record.status} in phase ${record.phase}); the trainer continues from its newest checkpoint on the job's volume.`,
  );
  return runJob(jobDeps(env, record, config, model), record, reportSpend(env, hub));
}

export async function finetuneClean(env: FinetuneEnv, name: string): Promise<JobRecord> {
  const record = recordOrRefuse(env.store, env.serving.stackName, name);
  const { config, hub, model } = await servingHub(env);
  return cleanJob(jobDeps(env, record, config, model), record, reportSpend(env, hub));
}

export function finetuneStatus(store: JobStore, io: JobIo, stack: string, name: string): void {
  const env = { store, io };
  const r = recordOrRefuse(store, stack, name);
  const p = r.lastProgress;
  env.io.out(
    `${r.name} on ${r.stack}: ${r.status}, phase ${r.phase}; ${r.method} rank ${r.rank} of ${r.model} on ${r.gpu.slug}`,
  );
  if (p?.step !== undefined) env.io.out(`  step ${p.step}/${p.steps}${p.loss !== undefined ? `, loss ${p.loss}` : ""}`);
  env.io.out(
    `  droplet spend $${spendUsd(r, env.io.now()).toFixed(2)} (estimate $${r.estimate.totalUsd.toFixed(2)}); log ${env.store.logFile}${r.error ? `; last error: ${r.error}` : ""}`,
  );
  if (r.dropletSpans.some((s) => s.toMs === undefined))
    env.io.out(
      `  a droplet may still be running (since ${new Date(r.dropletSpans.find((s) => s.toMs === undefined)!.fromMs).toISOString()}): \`finetune resume\` follows it, \`finetune clean\` destroys it`,
    );
}

const ADAPTERS_KEY = `${PROJECT}:llmLoraAdapters`;

/**
 * `finetune add`: checks the collected adapter against the serving model, copies it onto the
 * model-cache volume of every GPU node that runs now (into a temporary directory, then renamed),
 * and lists it in llmLoraAdapters through the usual preview-then-apply. A node that is off gets
 * it the next time `finetune add` runs while it is on; until then vLLM starts without it.
 */
export async function finetuneAdd(env: FinetuneEnv, name: string): Promise<void> {
  const record = recordOrRefuse(env.store, env.serving.stackName, name);
  if (record.status !== "succeeded" || !record.adapter)
    throw new HubCommandError(`job ${name} has no collected adapter (${record.status}, phase ${record.phase})`);
  const { config, model } = await servingHub(env);
  if (model.id !== record.model)
    throw new HubCommandError(
      `the adapter was trained on ${record.model}, but the stack serves ${model.id}: vLLM would refuse its shapes`,
    );
  const check = checkPeftAdapter(record.adapter.dir, model);
  if (!check.ok)
    throw new HubCommandError(`the adapter in ${record.adapter.dir} would not load: ${check.problems.join("; ")}`);

  const outputs = await env.serving.outputs();
  const addresses = (outputs.nodeAddresses?.value ?? {}) as Record<string, { public?: string }>;
  const options = (outputs.nodeSshOptions?.value ?? {}) as Record<string, string[]>;
  const gpuNodes = Object.keys(addresses).filter((n) => n.startsWith("gpu-"));
  const copied: string[] = [];
  for (const node of gpuNodes) {
    const host = addresses[node]?.public;
    if (!host || !options[node])
      throw new HubCommandError(
        `the stack's outputs have no address or SSH options for ${node}: run \`pulumi up\` once from this checkout so it records them`,
      );
    const shell = env.nodeShell(host, options[node]);
    const incoming = `/mnt/model-cache/adapters/.incoming-${name}`;
    const must = async (script: string, what: string) => {
      const r = await shell.run(script);
      if (r.code !== 0)
        throw new HubCommandError(`${node}: ${what} failed: ${(r.stderr || r.stdout).trim().split("\n").pop()}`);
    };
    await must(`set -e; rm -rf ${incoming}; mkdir -p ${incoming}`, "preparing the adapters directory");
    for (const file of ["adapter_config.json", "adapter_model.safetensors"])
      await shell.upload(path.join(record.adapter.dir, file), `${incoming}/${file}`);
    // Swapped in by rename: vLLM never reads a half-copied adapter.
    await must(
      `set -e; cd /mnt/model-cache/adapters; rm -rf ${name}.old; if [ -d ${name} ]; then mv ${name} ${name}.old; fi; mv .incoming-${name} ${name}; rm -rf ${name}.old`,
      "placing the adapter",
    );
    copied.push(node);
    env.io.out(`  ${node}: adapter copied to /mnt/model-cache/adapters/${name}`);
  }
  if (gpuNodes.length === 0)
    env.io.out(
      "  no GPU node runs now: the adapter is listed, and vLLM starts without it until `finetune add` runs again with the GPU on",
    );

  const current = JSON.parse(config[ADAPTERS_KEY]?.value ?? "[]") as string[];
  const entry = formatAdapterEntry({ name, source: { kind: "volume", path: `adapters/${name}` }, rank: check.rank! });
  const others = current.filter((e) => {
    const parsed = parseAdapterEntry(e, "coder");
    return !(parsed.ok && parsed.adapter.name === name);
  });
  const decision = decide(
    config,
    { [ADAPTERS_KEY]: JSON.stringify([...others, entry]) },
    `serve adapter ${name} as coder-${name}`,
    env.io.now(),
  );
  await applyDecision(env.serving, config, decision, env.io);
  env.io.out(
    `Clients call it with model "coder-${name}"${copied.length ? "" : " once a GPU node has it"}; \`npm run smoke\` checks every coder-* model the hub lists.`,
  );
}
