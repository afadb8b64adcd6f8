import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { readStackFile } from "../../../stacks/load";
import { formatProblem } from "../../../stacks/problems";
import { EchoServiceAddressSource } from "../../../infra/deployer-address";
import { sshSourceCidrs } from "../../../infra/network";
import { dropletSshKeys, md5Fingerprint } from "../../../infra/ssh-keys";
import { FINETUNE_METHODS, FinetuneMethod } from "../../../stacks/finetune";
import { ADAPTER_NAME } from "../../../stacks/lora";
import { PROJECT } from "../../../stacks/settings";
import { availableStacks, PROJECT_ROOT } from "../../plan/runner";
import { automationOps, checkPrerequisites, HubCommandError, StackOps } from "../ops";
import {
  finetuneAdd,
  finetuneClean,
  FinetuneEnv,
  finetunePlanOnly,
  finetuneResume,
  finetuneStart,
  finetuneStatus,
} from "./command";
import { DATASET_FORMATS, DatasetFormat } from "./dataset";
import { SshShell } from "./job-ops";
import { automationJobOps, jobCloudName } from "./job-stack";
import { fileJobStore, monthJobSpendUsd, stackJobRecords } from "./record";

export const FINETUNE_USAGE = `usage: npm run hub -- finetune --stack NAME --dataset FILE --name ADAPTER [options]
         train a LoRA adapter of the stack's coder on a GPU droplet that exists only for the job
       npm run hub -- finetune status|resume|clean|add --stack NAME --name ADAPTER
         status: where the job is; resume: continue an interrupted or failed job from its last
         checkpoint; clean: destroy everything the job has in the cloud; add: serve the trained
         adapter as model coder-ADAPTER
options: --epochs N (default 3), --rank R (default 16), --method lora|qlora (default: lora when the
         model fits the GPU in 16 bits), --gpu-size SLUG (default: the cheapest single NVIDIA GPU in
         the stack's region that holds the job), --sequence-len N (default 4096), --learning-rate X
         (default 0.0002), --format chat|completion (default: from the first line),
         --plan (check the dataset and print the plan from Pulumi.<stack>.yaml; nothing is created,
         no credentials needed)
See docs/finetune.md.`;

const whole = (flag: string, text: string | undefined, min: number, max: number): number | undefined => {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max)
    throw new HubCommandError(`${flag} ${JSON.stringify(text)} must be a whole number from ${min} to ${max}`);
  return Number(text);
};

/** The serving stack as its stack file says, for --plan: read-only, no Pulumi CLI or backend. */
function stackFileOps(stack: string): StackOps {
  const file = path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`);
  if (!existsSync(file))
    throw new HubCommandError(`no Pulumi.${stack}.yaml here (stack files: ${availableStacks().join(", ")})`);
  const read = readStackFile(readFileSync(file, "utf8"), file);
  if (!read.ok) throw new HubCommandError(read.problems.map(formatProblem).join("\n"));
  const config = Object.fromEntries(
    Object.entries(read.file.config).map(([k, v]) => [k, { value: v, secret: read.file.secretKeys.includes(k) }]),
  );
  const refuse = async (): Promise<never> => {
    throw new HubCommandError("--plan changes nothing");
  };
  return {
    stackName: stack,
    getConfig: async () => config,
    setConfig: refuse,
    removeConfig: refuse,
    preview: refuse,
    up: refuse,
    outputs: async () => ({}),
  };
}

export async function finetuneCli(
  argv: readonly string[],
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        stack: { type: "string" },
        name: { type: "string" },
        dataset: { type: "string" },
        epochs: { type: "string" },
        rank: { type: "string" },
        method: { type: "string" },
        "gpu-size": { type: "string" },
        "sequence-len": { type: "string" },
        "learning-rate": { type: "string" },
        format: { type: "string" },
        plan: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new HubCommandError(`${(err as Error).message}\n${FINETUNE_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(FINETUNE_USAGE);
    return;
  }
  const action = positionals[0] ?? "start";
  if (!["start", "status", "resume", "clean", "add"].includes(action) || positionals.length > 1)
    throw new HubCommandError(
      `finetune takes status, resume, clean or add (or nothing, to start a job), not "${positionals.join(" ")}"\n${FINETUNE_USAGE}`,
    );
  // Every problem with the invocation at once.
  const problems: string[] = [];
  if (!values.stack) problems.push(`--stack is required (stacks here: ${availableStacks().join(", ")})`);
  if (!values.name) problems.push("--name is required: the adapter's name (clients call it coder-NAME)");
  else if (!ADAPTER_NAME.test(values.name))
    problems.push(
      `--name ${JSON.stringify(values.name)}: an adapter name is 1-40 lower-case letters, digits and inner hyphens (clients call it coder-NAME)`,
    );
  if (action === "start" && !values.dataset) problems.push("--dataset FILE is required to start a job");
  if (action !== "start")
    for (const flag of [
      "dataset",
      "epochs",
      "rank",
      "method",
      "gpu-size",
      "sequence-len",
      "learning-rate",
      "format",
    ] as const)
      if (values[flag] !== undefined) problems.push(`--${flag} goes with starting a job, not with ${action}`);
  if (values.method !== undefined && !FINETUNE_METHODS.includes(values.method as FinetuneMethod))
    problems.push(`--method ${JSON.stringify(values.method)} must be one of ${FINETUNE_METHODS.join(", ")}`);
  if (values.format !== undefined && !DATASET_FORMATS.includes(values.format as DatasetFormat))
    problems.push(`--format ${JSON.stringify(values.format)} must be one of ${DATASET_FORMATS.join(", ")}`);
  const lr = values["learning-rate"];
  if (lr !== undefined && !(Number(lr) > 0 && Number(lr) < 1))
    problems.push(`--learning-rate ${JSON.stringify(lr)} must be a number between 0 and 1, e.g. 0.0002`);
  let numbers: { epochs?: number; rank?: number; sequenceLen?: number } = {};
  try {
    numbers = {
      epochs: whole("--epochs", values.epochs, 1, 50),
      rank: whole("--rank", values.rank, 1, 512),
      sequenceLen: whole("--sequence-len", values["sequence-len"], 128, 1_048_576),
    };
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (problems.length) throw new HubCommandError(problems.join("\n"));
  const stack = values.stack!;
  const name = values.name!;

  const store = fileJobStore(stack, name);
  if (values.plan) {
    if (action !== "start") throw new HubCommandError("--plan goes with starting a job");
    await finetunePlanOnly(
      stackFileOps(stack),
      {
        name,
        dataset: values.dataset,
        ...numbers,
        method: values.method as FinetuneMethod | undefined,
        gpuSize: values["gpu-size"],
        format: values.format as DatasetFormat | undefined,
      },
      { out, now: Date.now },
      monthJobSpendUsd(
        stackJobRecords(stack).filter((r) => r.name !== name),
        Date.now(),
      ),
    );
    return;
  }
  if (action === "status") {
    finetuneStatus(store, { out, now: Date.now }, stack, name);
    return;
  }
  checkPrerequisites();
  const serving = await automationOps(stack, PROJECT_ROOT);
  const servingConfig = await serving.getConfig();
  const value = (key: string): string | undefined => servingConfig[`${PROJECT}:${key}`]?.value;
  const adminCidrs = JSON.parse(value("adminCidrs") ?? "[]") as string[];
  // The job's SSH rule: the stack's adminCidrs, else this machine's public address, as the serving deploy does.
  const sshSources =
    action === "add"
      ? []
      : sshSourceCidrs(adminCidrs, adminCidrs.length ? [] : await new EchoServiceAddressSource().find());
  const publicKey = value("sshPublicKey");
  const fingerprints = JSON.parse(value("sshKeyFingerprints") ?? "[]") as string[];
  const privateKey = value("sshPrivateKey");

  let interrupted = false;
  process.on("SIGINT", () => {
    if (interrupted) {
      out("Interrupted twice: exiting now. The droplet may still run: `finetune clean` destroys it.");
      process.exit(130);
    }
    interrupted = true;
    out("Interrupt received: stopping at the next look, then destroying the droplet (Ctrl-C again to exit at once).");
  });
  const env: FinetuneEnv = {
    serving,
    store,
    jobOps: (record) =>
      automationJobOps(record.jobStack, {
        cloudName: jobCloudName(record.stack, record.name),
        region: record.gpu.region,
        gpuSize: record.gpu.slug,
        image: record.gpu.image,
        volumeGiB: record.volumeGiB,
        sshKeys: dropletSshKeys(fingerprints, publicKey ? md5Fingerprint(publicKey) : undefined),
        sshSources,
        ...(privateKey ? { privateKey } : {}),
      }),
    io: { out, now: Date.now },
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    pollMs: 30_000,
    otherJobsMonthUsd: monthJobSpendUsd(
      stackJobRecords(stack).filter((r) => r.name !== name),
      Date.now(),
    ),
    nodeShell: (host, sshOptions) => new SshShell({ host, sshOptions }),
    interrupted: () => interrupted,
  };
  const o = {
    name,
    dataset: values.dataset,
    ...numbers,
    method: values.method as FinetuneMethod | undefined,
    gpuSize: values["gpu-size"],
    learningRate: lr === undefined ? undefined : Number(lr),
    format: values.format as DatasetFormat | undefined,
  };
  if (action === "start") await finetuneStart(env, o);
  else if (action === "resume") await finetuneResume(env, name);
  else if (action === "clean") await finetuneClean(env, name);
  else await finetuneAdd(env, name);
}
