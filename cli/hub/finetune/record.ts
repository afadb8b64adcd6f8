import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DROPLET_MIN_BILLED_SECONDS } from "../../../stacks/catalogue/droplets";
import type { FinetuneMethod } from "../../../stacks/finetune";
import type { DatasetFormat } from "./dataset";

/**
 * What a fine-tuning job remembers between runs of the command, on the operator's machine:
 * enough to resume it, clean it up, account for its spend and add its adapter. One directory per
 * serving stack and adapter name: job.json, the trainer's log, the collected adapter.
 */
export const JOB_PHASES = ["check", "droplet", "image", "data", "training", "collect", "destroy"] as const;
export type JobPhase = (typeof JOB_PHASES)[number];

export type JobStatus = "running" | "succeeded" | "failed" | "interrupted" | "cleaned";

export interface JobRecord {
  readonly version: 1;
  readonly stack: string;
  readonly name: string;
  readonly jobStack: string;
  readonly model: string;
  readonly baseModel: string;
  readonly method: FinetuneMethod;
  readonly rank: number;
  readonly epochs: number;
  readonly sequenceLen: number;
  readonly format: DatasetFormat;
  readonly dataset: {
    readonly file: string;
    readonly sha256: string;
    readonly examples: number;
    readonly tokens: number;
  };
  readonly gpu: {
    readonly slug: string;
    readonly pricePerHour: number;
    readonly image: string;
    readonly region: string;
  };
  readonly volumeGiB: number;
  readonly estimate: { readonly totalUsd: number; readonly totalSeconds: number };
  /** The rendered trainer config (YAML), as uploaded. */
  readonly trainerConfig: string;
  phase: JobPhase;
  status: JobStatus;
  startedMs: number;
  updatedMs: number;
  /** Each stretch a droplet of this job existed (from just before its creation to after its destruction). */
  dropletSpans: { fromMs: number; toMs?: number }[];
  /** Bytes of the trainer's log already copied here. */
  logBytes: number;
  lastProgress?: { step?: number; steps?: number; loss?: number };
  finalLoss?: number;
  error?: string;
  adapter?: { readonly dir: string; readonly rank: number; readonly bytes: number };
}

/** Billed droplet seconds: each droplet at least DigitalOcean's 60 s minimum; an open span counts to now. */
export function billedDropletSeconds(record: Pick<JobRecord, "dropletSpans">, nowMs: number): number {
  return record.dropletSpans.reduce(
    (sum, s) => sum + Math.max(DROPLET_MIN_BILLED_SECONDS, ((s.toMs ?? nowMs) - s.fromMs) / 1000),
    0,
  );
}

export function spendUsd(record: Pick<JobRecord, "dropletSpans" | "gpu">, nowMs: number): number {
  return (billedDropletSeconds(record, nowMs) / 3600) * record.gpu.pricePerHour;
}

export interface JobStore {
  readonly dir: string;
  readonly logFile: string;
  readonly adapterDir: string;
  load(): JobRecord | undefined;
  save(record: JobRecord): void;
  appendLog(text: string): void;
}

export const FINETUNE_HOME = () => path.join(os.homedir(), ".inference-hub", "finetune");

/** Files under <root>/<stack>/<name>/, private to the user. */
export function fileJobStore(stack: string, name: string, root: string = FINETUNE_HOME()): JobStore {
  const dir = path.join(root, stack, name);
  const file = path.join(dir, "job.json");
  const ensure = () => fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return {
    dir,
    logFile: path.join(dir, "train.log"),
    adapterDir: path.join(dir, "adapter"),
    load: () => {
      try {
        return JSON.parse(fs.readFileSync(file, "utf8")) as JobRecord;
      } catch {
        return undefined;
      }
    },
    save: (record) => {
      ensure();
      fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
      fs.renameSync(`${file}.tmp`, file);
    },
    appendLog: (text) => {
      ensure();
      fs.appendFileSync(path.join(dir, "train.log"), text, { mode: 0o600 });
    },
  };
}

/** Every job record of a stack on this machine (for the month's spend). */
export function stackJobRecords(stack: string, root: string = FINETUNE_HOME()): JobRecord[] {
  const dir = path.join(root, stack);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).flatMap((name) => {
    const record = fileJobStore(stack, name, root).load();
    return record ? [record] : [];
  });
}

/** This calendar month's (UTC) droplet spend of the stack's jobs recorded here. */
export function monthJobSpendUsd(records: readonly JobRecord[], nowMs: number): number {
  const month = new Date(nowMs).toISOString().slice(0, 7);
  return records.reduce(
    (sum, r) =>
      sum +
      r.dropletSpans
        .filter((s) => new Date(s.fromMs).toISOString().slice(0, 7) === month)
        .reduce((a, s) => a + spendUsd({ dropletSpans: [s], gpu: r.gpu }, nowMs), 0),
    0,
  );
}
