import { mkdirSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { JOB_MOUNT } from "../../../infra/finetune-job";
import { axolotlImageName } from "../../../stacks/catalogue/training";
import { HubCommandError } from "../ops";
import { JOB_CONTAINER_DIR, JOB_PATHS } from "./axolotl";
import type { JobOps, RemoteShell } from "./job-ops";
import type { AdapterCheck } from "./peft";
import { JobPhase, JobRecord, JobStore, spendUsd } from "./record";

/**
 * A fine-tuning job's life: droplet, image, data, training (steps and loss), collect, destroy. The
 * droplet is destroyed whether the job succeeds or fails; on failure or interruption the job's
 * volume (checkpoints, downloaded weights) stays for `finetune resume`, and `finetune clean`
 * removes everything. The command ends by saying what, if anything, is left.
 */
export interface JobIo {
  readonly out: (line: string) => void;
  readonly now: () => number;
}

export interface JobDeps {
  readonly ops: JobOps;
  readonly store: JobStore;
  readonly io: JobIo;
  readonly sleep: (ms: number) => Promise<void>;
  /** Between two looks at the trainer. */
  readonly pollMs: number;
  /** The PEFT check against the base model (peft.ts), on the collected files. */
  readonly checkAdapter: (dir: string) => AdapterCheck;
  /** The dataset's bytes, for the upload (read again: the file must still be what was checked). */
  readonly datasetFile: () => string;
  /** Set when the operator interrupts (Ctrl-C): the job stops at its next look. */
  readonly interrupted?: () => boolean;
}

export class JobInterrupted extends Error {}

const CONTAINER = "hub-finetune";
const REMOTE = {
  dataset: JOB_PATHS.dataset.replace(JOB_CONTAINER_DIR, JOB_MOUNT),
  config: JOB_PATHS.config.replace(JOB_CONTAINER_DIR, JOB_MOUNT),
  log: JOB_PATHS.log.replace(JOB_CONTAINER_DIR, JOB_MOUNT),
  exitStatus: JOB_PATHS.exitStatus.replace(JOB_CONTAINER_DIR, JOB_MOUNT),
  output: JOB_PATHS.output.replace(JOB_CONTAINER_DIR, JOB_MOUNT),
};

/** Starts the trainer unless it runs already or has finished; a finished one reports its exit status. */
export function startTrainerScript(): string {
  const image = axolotlImageName();
  return [
    "set -eu",
    `if [ -f ${REMOTE.exitStatus} ]; then echo "exited $(cat ${REMOTE.exitStatus})"; exit 0; fi`,
    `if [ "$(docker inspect -f '{{.State.Running}}' ${CONTAINER} 2>/dev/null || true)" = "true" ]; then echo running; exit 0; fi`,
    `docker rm -f ${CONTAINER} >/dev/null 2>&1 || true`,
    // The wrapper records the trainer's exit status on the volume: it survives the container and the droplet.
    `docker run -d --name ${CONTAINER} --gpus all --ipc=host -v ${JOB_MOUNT}:${JOB_CONTAINER_DIR} -e HF_HOME=${JOB_PATHS.huggingface} -e HF_HUB_ENABLE_HF_TRANSFER=0 --entrypoint /bin/bash ${image} -c 'axolotl train ${JOB_PATHS.config} >> ${JOB_PATHS.log} 2>&1; echo $? > ${JOB_PATHS.exitStatus}' >/dev/null`,
    "echo started",
  ].join("\n");
}

/** One look: whether the trainer finished (its exit status) and the log's new bytes since `offset`. */
export function lookScript(offset: number): string {
  return [
    `if [ -f ${REMOTE.exitStatus} ]; then echo "exit=$(cat ${REMOTE.exitStatus})"; else echo "exit="; fi`,
    "echo ---",
    `tail -c +${offset + 1} ${REMOTE.log} 2>/dev/null || true`,
  ].join("\n");
}

/** Training progress from the trainer's log: the Hugging Face Trainer's loss dicts and tqdm's step counter. */
export function parseProgress(text: string): { step?: number; steps?: number; loss?: number } {
  const out: { step?: number; steps?: number; loss?: number } = {};
  for (const m of text.matchAll(/'loss': '?(-?[\d.]+(?:e-?\d+)?)'?/g)) out.loss = Number(m[1]);
  for (const m of text.matchAll(/(\d+)\/(\d+) \[/g)) {
    out.step = Number(m[1]);
    out.steps = Number(m[2]);
  }
  return out;
}

function phase(deps: JobDeps, record: JobRecord, name: JobPhase, what: string): void {
  record.phase = name;
  record.updatedMs = deps.io.now();
  deps.store.save(record);
  deps.io.out(`[${name}] ${what}`);
}

async function must(shell: RemoteShell, script: string, what: string): Promise<string> {
  const r = await shell.run(script);
  if (r.code !== 0)
    throw new HubCommandError(
      `${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`,
    );
  return r.stdout;
}

/** Copies the dataset unless the volume already holds the same bytes (a resumed job); the config always. */
async function uploadData(deps: JobDeps, shell: RemoteShell, record: JobRecord): Promise<void> {
  const remote = (await shell.run(`sha256sum ${REMOTE.dataset} 2>/dev/null || true`)).stdout.split(" ")[0];
  if (remote === record.dataset.sha256)
    deps.io.out(`  the job's volume already holds the dataset (sha256 ${record.dataset.sha256.slice(0, 12)})`);
  else {
    await shell.upload(deps.datasetFile(), REMOTE.dataset);
    const copied = (await must(shell, `sha256sum ${REMOTE.dataset}`, "checking the uploaded dataset")).split(" ")[0];
    if (copied !== record.dataset.sha256)
      throw new HubCommandError(
        `the dataset arrived with sha256 ${copied}, not ${record.dataset.sha256}: the upload was damaged`,
      );
    deps.io.out(
      `  uploaded ${record.dataset.examples} examples, ${record.dataset.tokens.toLocaleString("en-US")} tokens`,
    );
  }
  const local = path.join(os.tmpdir(), `hub-finetune-${process.pid}-config.yml`);
  writeFileSync(local, record.trainerConfig, { mode: 0o600 });
  await shell.upload(local, REMOTE.config);
}

async function train(deps: JobDeps, shell: RemoteShell, record: JobRecord): Promise<number> {
  const started = (await must(shell, startTrainerScript(), "starting the trainer")).trim();
  deps.io.out(
    `  trainer ${started.startsWith("exited") ? "had already finished" : started === "running" ? "was running: following it" : "started"} (${axolotlImageName()})`,
  );
  let lastShown = "";
  for (;;) {
    if (deps.interrupted?.()) throw new JobInterrupted("interrupted by the operator");
    const look = await must(shell, lookScript(record.logBytes), "reading the trainer's state");
    const cut = look.indexOf("\n---\n");
    const head = cut < 0 ? look : look.slice(0, cut);
    const fresh = cut < 0 ? "" : look.slice(cut + 5);
    if (fresh) {
      deps.store.appendLog(fresh);
      record.logBytes += Buffer.byteLength(fresh, "utf8");
      const p = parseProgress(fresh);
      record.lastProgress = { ...record.lastProgress, ...p };
      if (p.loss !== undefined) record.finalLoss = p.loss;
    }
    const lp = record.lastProgress;
    const line =
      lp?.step !== undefined
        ? `  training: step ${lp.step}/${lp.steps}${lp.loss !== undefined ? `, loss ${lp.loss}` : ""}`
        : "";
    if (line && line !== lastShown) {
      deps.io.out(line);
      lastShown = line;
    }
    record.updatedMs = deps.io.now();
    deps.store.save(record);
    const exit = /^exit=(\d*)$/m.exec(head)?.[1];
    if (exit) return Number(exit);
    await deps.sleep(deps.pollMs);
  }
}

async function collect(deps: JobDeps, shell: RemoteShell, record: JobRecord): Promise<void> {
  const listed = await must(shell, `ls ${REMOTE.output}`, "listing the trainer's output");
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    if (!listed.split(/\s+/).includes(file))
      throw new HubCommandError(
        `the trainer finished without ${file} in its output (found: ${listed.trim().split(/\s+/).join(", ") || "nothing"})`,
      );
  }
  mkdirSync(deps.store.adapterDir, { recursive: true, mode: 0o700 });
  for (const file of ["adapter_config.json", "adapter_model.safetensors"])
    await shell.download(`${REMOTE.output}/${file}`, path.join(deps.store.adapterDir, file));
  const check = deps.checkAdapter(deps.store.adapterDir);
  if (!check.ok) throw new HubCommandError(`the trained adapter would not load in vLLM: ${check.problems.join("; ")}`);
  record.adapter = { dir: deps.store.adapterDir, rank: check.rank!, bytes: check.bytes };
  deps.io.out(
    `  adapter: rank ${check.rank}, ${check.modules.join(", ")}, ${(check.bytes / 1e6).toFixed(1)} MB, checked as vLLM 0.24 loads it -> ${deps.store.adapterDir}`,
  );
}

function closeSpan(deps: JobDeps, record: JobRecord): void {
  const open = record.dropletSpans.find((s) => s.toMs === undefined);
  if (open) open.toMs = deps.io.now();
}

/** What is left in the job's stack, said plainly: the last line the command prints. */
async function sayWhatIsLeft(deps: JobDeps, record: JobRecord): Promise<void> {
  const left = await deps.ops.stack.resources();
  const spent = `spent $${spendUsd(record, deps.io.now()).toFixed(2)} on the droplet (estimate was $${record.estimate.totalUsd.toFixed(2)})`;
  if (left.droplet)
    deps.io.out(
      `WARNING: the job's droplet still exists and is billed: run \`npm run hub -- finetune clean --stack ${record.stack} --name ${record.name}\`. ${spent}.`,
    );
  else if (left.volume)
    deps.io.out(
      `Nothing is left running. The job's ${record.volumeGiB} GiB volume is kept for \`finetune resume\` ($${((record.volumeGiB * 0.1) / 30).toFixed(2)}/day); \`finetune clean\` deletes it. ${spent}.`,
    );
  else deps.io.out(`Nothing is left running and nothing is kept in the cloud. ${spent}.`);
}

/** Runs (or resumes) the job to its end; the droplet never outlives this call unless destroying it fails. */
export async function runJob(
  deps: JobDeps,
  record: JobRecord,
  beforeLastWord: (record: JobRecord) => Promise<void> = async () => undefined,
): Promise<JobRecord> {
  record.status = "running";
  record.error = undefined;
  deps.store.save(record);
  let shell: RemoteShell | undefined;
  try {
    phase(
      deps,
      record,
      "droplet",
      `creating ${record.gpu.slug} in ${record.gpu.region} (job stack ${deps.ops.stack.stackName}; the serving stack is not touched)`,
    );
    // Billing starts when DigitalOcean creates the droplet: count from just before asking.
    if (!record.dropletSpans.some((s) => s.toMs === undefined)) record.dropletSpans.push({ fromMs: deps.io.now() });
    deps.store.save(record);
    const connection = await deps.ops.stack.up({ droplet: true }, (l) => deps.io.out(`  | ${l.trimEnd()}`));
    if (!connection) throw new HubCommandError("the job's stack came up without a droplet address");
    shell = deps.ops.connect(connection);

    phase(deps, record, "image", `pulling ${axolotlImageName()}`);
    await must(
      shell,
      `docker image inspect ${axolotlImageName()} >/dev/null 2>&1 || docker pull -q ${axolotlImageName()}`,
      "pulling the trainer image",
    );

    phase(deps, record, "data", "dataset and trainer config to the job's volume");
    await uploadData(deps, shell, record);

    phase(
      deps,
      record,
      "training",
      `${record.method}, rank ${record.rank}, ${record.epochs} epoch(s); the base weights download on first start`,
    );
    const exit = await train(deps, shell, record);
    if (exit !== 0)
      throw new HubCommandError(
        `the trainer exited with status ${exit}; the end of its log:\n${(await shell.run(`tail -n 20 ${REMOTE.log}`)).stdout.trimEnd()}`,
      );

    phase(deps, record, "collect", "copying the adapter here and checking it");
    await collect(deps, shell, record);

    phase(deps, record, "destroy", "destroying the droplet and the job's volume");
    await deps.ops.stack.destroy((l) => deps.io.out(`  | ${l.trimEnd()}`));
    closeSpan(deps, record);
    record.status = "succeeded";
    deps.store.save(record);
    deps.io.out(
      `Done: adapter ${record.name}${record.finalLoss !== undefined ? `, final loss ${record.finalLoss}` : ""}; log ${deps.store.logFile}. Serve it with \`npm run hub -- finetune add --stack ${record.stack} --name ${record.name}\`.`,
    );
  } catch (err) {
    const interrupted = err instanceof JobInterrupted;
    record.status = interrupted ? "interrupted" : "failed";
    record.error = (err as Error).message;
    deps.store.save(record);
    deps.io.out(`${interrupted ? "Interrupted" : "Failed"} in phase ${record.phase}: ${record.error}`);
    await stopDroplet(deps, record);
  }
  await beforeLastWord(record);
  await sayWhatIsLeft(deps, record);
  return record;
}

/** Destroys the droplet, keeps the volume (a resume continues from its checkpoints). */
async function stopDroplet(deps: JobDeps, record: JobRecord): Promise<void> {
  try {
    deps.io.out("[destroy] destroying the droplet; the job's volume stays for `finetune resume`");
    await deps.ops.stack.up({ droplet: false }, (l) => deps.io.out(`  | ${l.trimEnd()}`));
    closeSpan(deps, record);
  } catch (err) {
    record.error = `${record.error ?? ""}; destroying the droplet failed too: ${(err as Error).message.split("\n")[0]}`;
  }
  deps.store.save(record);
}

/** `finetune clean`: everything in the job's stack goes, the record says so; local files stay. */
export async function cleanJob(
  deps: JobDeps,
  record: JobRecord,
  beforeLastWord: (record: JobRecord) => Promise<void> = async () => undefined,
): Promise<JobRecord> {
  deps.io.out(
    `[destroy] destroying job stack ${deps.ops.stack.stackName} (droplet, volume, firewall, VPC); the serving stack is not touched`,
  );
  await deps.ops.stack.destroy((l) => deps.io.out(`  | ${l.trimEnd()}`));
  closeSpan(deps, record);
  if (record.status !== "succeeded") record.status = "cleaned";
  deps.store.save(record);
  await beforeLastWord(record);
  await sayWhatIsLeft(deps, record);
  return record;
}
