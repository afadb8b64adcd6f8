import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { finetuneAdd, finetuneClean, FinetuneEnv, finetuneResume, finetuneStart } from "../cli/hub/finetune/command";
import { fileJobStore, JobRecord, JobStore, monthJobSpendUsd } from "../cli/hub/finetune/record";
import { HubCommandError } from "../cli/hub/ops";
import {
  FakeVolume,
  recordingJobOps,
  recordingNodeShell,
  RecordingJobStack,
  TrainerScript,
} from "./helpers/finetune-stand-ins";
import { cfg, RecordingOps } from "./helpers/recording-ops";

const root = mkdtempSync(path.join(os.tmpdir(), "finetune-job-"));
const dataset = path.join(root, "team.jsonl");
writeFileSync(
  dataset,
  Array.from({ length: 40 }, (_, i) =>
    JSON.stringify({
      messages: [
        { role: "user", content: `add ${i}` },
        { role: "assistant", content: `def add_${i}(a, b):\n    return a + b + ${i}` },
      ],
    }),
  ).join("\n"),
);

const SERVING = { tier: "hybrid", llmModel: "qwen2.5-coder-1.5b", budgetUsd: "400" };
let jobs = 0;

interface Rig {
  readonly env: FinetuneEnv;
  readonly stack: RecordingJobStack;
  readonly volume: FakeVolume;
  readonly serving: RecordingOps;
  readonly lines: string[];
  readonly store: JobStore;
  readonly nodeLog: string[];
  interruptAfterLooks?: number;
}

/** One job's world: the serving stack (recorded), the job's stack and droplet (stand-ins), files in a temp dir. */
function rig(trainer: TrainerScript, serving: Record<string, string> = SERVING): Rig {
  const name = `acme${++jobs}`;
  const lines: string[] = [];
  const stack = new RecordingJobStack(`hybrid-ft-${name}`);
  const volume = new FakeVolume(trainer);
  const ops = recordingJobOps(stack, volume);
  const servingOps = new RecordingOps(cfg(serving));
  const store = fileJobStore("hybrid", name, path.join(root, "records"));
  const nodeLog: string[] = [];
  let t = Date.parse("2026-12-07T10:00:00Z");
  const r: Rig = {
    stack,
    volume,
    serving: servingOps,
    lines,
    store,
    nodeLog,
    env: {
      serving: servingOps,
      store,
      jobOps: () => ops,
      io: { out: (l) => void lines.push(l), now: () => (t += 10_000) },
      sleep: async () => undefined,
      pollMs: 0,
      otherJobsMonthUsd: 0,
      nodeShell: recordingNodeShell(nodeLog),
      interrupted: () =>
        r.interruptAfterLooks !== undefined &&
        volume.scripts.filter((s) => s.includes("tail -c +")).length >= r.interruptAfterLooks,
    },
  };
  return r;
}

const start = (r: Rig, over: Record<string, unknown> = {}) =>
  finetuneStart(r.env, { name: r.store.dir.split(path.sep).pop()!, dataset, epochs: 1, ...over });
const phasesOf = (lines: readonly string[]) => lines.flatMap((l) => /^\[(\w+)\]/.exec(l)?.[1] ?? []);

describe("the job's life against recording stand-ins of Pulumi and SSH", () => {
  it("succeeds: creates, runs, collects, destroys; the serving stack is only read", async () => {
    const r = rig({ steps: 12, stepsPerLook: 5 });
    const record = await start(r);
    expect(record.status).toBe("succeeded");
    expect(r.stack.calls).toEqual(["up droplet=true", "destroy"]);
    expect(phasesOf(r.lines)).toEqual(["check", "droplet", "image", "data", "training", "collect", "destroy"]);
    // Progress by phase, with steps and loss as the trainer logged them.
    expect(r.lines).toContain("  training: step 5/12, loss 0.4");
    expect(r.lines).toContain("  training: step 12/12, loss 0.1667");
    expect(record.finalLoss).toBe(0.1667);
    // The adapter came home and passed the PEFT check; the whole log is kept.
    expect(existsSync(path.join(r.store.adapterDir, "adapter_model.safetensors"))).toBe(true);
    expect(record.adapter).toMatchObject({ rank: 8 });
    expect(readFileSync(r.store.logFile, "utf8")).toMatch(/12\/12 \[/);
    // The dataset and the trainer config reached the volume; the config is the rendered one.
    expect(r.volume.uploads).toEqual(["/mnt/job/data/train.jsonl", "/mnt/job/config.yml"]);
    expect(r.lines.at(-1)).toMatch(/^Nothing is left running and nothing is kept in the cloud\. spent \$\d+\.\d\d/);
    expect(r.serving.calls).toEqual(["getConfig"]);
    // Spend: one droplet span, closed.
    expect(record.dropletSpans).toHaveLength(1);
    expect(record.dropletSpans[0].toMs).toBeGreaterThan(record.dropletSpans[0].fromMs);
  });

  it("fails in training: the droplet is destroyed, the volume kept for resume, the log tail shown", async () => {
    const r = rig({ steps: 6, stepsPerLook: 3, exit: 1 });
    const record = await start(r);
    expect(record.status).toBe("failed");
    expect(record.phase).toBe("training");
    expect(r.stack.calls).toEqual(["up droplet=true", "up droplet=false"]);
    expect(record.error).toMatch(/exited with status 1[\s\S]*CUDA out of memory/);
    expect(r.lines.at(-1)).toMatch(/^Nothing is left running\. The job's \d+ GiB volume is kept for `finetune resume`/);
    expect(record.dropletSpans.every((s) => s.toMs !== undefined)).toBe(true);
  });

  it("fails when the trained adapter would not load in vLLM, and still destroys the droplet", async () => {
    const r = rig({ steps: 2, stepsPerLook: 2, adapterRank: 8, adapterTensors: Buffer.from("not safetensors at all") });
    const record = await start(r);
    expect(record.status).toBe("failed");
    expect(record.phase).toBe("collect");
    expect(record.error).toMatch(/would not load in vLLM/);
    expect(r.stack.calls).toEqual(["up droplet=true", "up droplet=false"]);
  });

  it("is interrupted, then resumed with one command: same volume, no second upload, continues from its step", async () => {
    const r = rig({ steps: 10, stepsPerLook: 3 });
    r.interruptAfterLooks = 2;
    const first = await start(r);
    expect(first.status).toBe("interrupted");
    expect(r.stack.calls).toEqual(["up droplet=true", "up droplet=false"]);
    expect(r.volume.step).toBe(6);
    r.interruptAfterLooks = undefined;
    const resumed = await finetuneResume(r.env, first.name);
    expect(resumed.status).toBe("succeeded");
    expect(r.stack.calls).toEqual(["up droplet=true", "up droplet=false", "up droplet=true", "destroy"]);
    // The job's volume kept the dataset: only the config went up again.
    expect(r.volume.uploads.filter((u) => u.endsWith("train.jsonl"))).toHaveLength(1);
    expect(r.lines).toContain(
      `  the job's volume already holds the dataset (sha256 ${resumed.dataset.sha256.slice(0, 12)})`,
    );
    // Two droplets were billed, each closed.
    expect(resumed.dropletSpans).toHaveLength(2);
    expect(r.lines.at(-1)).toMatch(/^Nothing is left running and nothing is kept in the cloud/);
  });

  it("says so loudly when the droplet cannot be destroyed, and `finetune clean` removes it", async () => {
    const r = rig({ steps: 4, stepsPerLook: 2, exit: 3 });
    r.stack.failUp.noDroplet = new Error("DigitalOcean API: 503 Service Unavailable");
    const record = await start(r);
    expect(record.status).toBe("failed");
    expect(record.error).toMatch(/destroying the droplet failed too: DigitalOcean API: 503/);
    expect(r.lines.at(-1)).toMatch(
      /^WARNING: the job's droplet still exists and is billed: run `npm run hub -- finetune clean --stack hybrid --name acme\d+`/,
    );
    const cleaned = await finetuneClean(r.env, record.name);
    expect(cleaned.status).toBe("cleaned");
    expect(r.stack.calls.at(-1)).toBe("destroy");
    expect(r.lines.at(-1)).toMatch(/^Nothing is left running and nothing is kept in the cloud/);
    // The span left open by the failed destroy is closed by the clean-up.
    expect(cleaned.dropletSpans.every((s) => s.toMs !== undefined)).toBe(true);
  });

  it("fails to create the droplet: nothing is left, the record says why", async () => {
    const r = rig({ steps: 4, stepsPerLook: 2 });
    r.stack.failUp.droplet = new Error('422 "Size is not available in this region"');
    const record = await start(r);
    expect(record).toMatchObject({ status: "failed", phase: "droplet" });
    expect(r.stack.calls).toEqual(["up droplet=true", "up droplet=false"]);
    expect(r.volume.scripts).toEqual([]);
  });
});

describe("the month's budget guard counts the job", () => {
  it("writes the job's droplet spend into the autoscaling controller's external-spend.json on the CPU node, merged with what is there", async () => {
    const r = rig({ steps: 2, stepsPerLook: 2 });
    const files = new Map<string, Buffer>([
      [
        "192.0.2.1:/mnt/cpu-cache/autoscaler/state/external-spend.json",
        Buffer.from(
          JSON.stringify({
            version: 1,
            entries: { "finetune:hybrid/older:2026-12": { month: "2026-12", usd: 1.5, what: "fine-tuning job older" } },
          }),
        ),
      ],
    ]);
    (r.env as { nodeShell: FinetuneEnv["nodeShell"] }).nodeShell = recordingNodeShell(r.nodeLog, files);
    r.serving.deployedNodes = { cpu: { public: "192.0.2.1" } };
    const outputs = r.serving.outputs.bind(r.serving);
    r.serving.outputs = async () => ({
      ...(await outputs()),
      nodeSshOptions: { value: { cpu: ["-o", "BatchMode=yes"] }, secret: false },
    });
    const record = await start(r);
    const written = JSON.parse(files.get("192.0.2.1:/mnt/cpu-cache/autoscaler/state/external-spend.json")!.toString());
    const [span] = record.dropletSpans;
    // One span on an RTX 4000 Ada at $0.76/h, at least DigitalOcean's 60 s.
    const usd = (Math.max(60, (span.toMs! - span.fromMs) / 1000) / 3600) * 0.76;
    expect(written.entries[`finetune:hybrid/${record.name}:2026-12`]).toEqual({
      month: "2026-12",
      usd: Math.round(usd * 10_000) / 10_000,
      what: `fine-tuning job ${record.name} (gpu-4000adax1-20gb)`,
    });
    expect(written.entries["finetune:hybrid/older:2026-12"].usd).toBe(1.5);
    expect(r.lines).toContain(
      `Budget: $${usd.toFixed(2)} of droplet time recorded in the autoscaling controller's ledger (external-spend.json): the month's GPU budget there counts it.`,
    );
    // ... said before the last word, which stays "what is left".
    expect(r.lines.at(-1)).toMatch(/^Nothing is left running/);
  });
  it("says plainly when the controller's ledger could not be told", async () => {
    const r = rig({ steps: 2, stepsPerLook: 2 });
    await start(r);
    expect(r.lines.find((l) => l.startsWith("Budget:"))).toMatch(
      /NOT given to the controller's ledger: the stack's outputs lack the CPU node's address or SSH options/,
    );
  });
});

describe("refusals before anything exists", () => {
  it("a bad dataset or a job over the budget creates nothing and asks nothing of the job's stack", async () => {
    const bad = path.join(root, "bad.jsonl");
    writeFileSync(bad, '{"prompt": "x"}\n');
    const r = rig({ steps: 1, stepsPerLook: 1 });
    await expect(start(r, { dataset: bad })).rejects.toThrow(/bad\.jsonl:1: has neither "messages"/);
    // The hybrid preset's month is $244.10 (CPU node s-8vcpu-16gb $96 + 40 GPU hours at $3.39 $135.60
    // + volumes $12.50): $245 holds the stack but not an hour of H100 on top.
    const poor = rig({ steps: 1, stepsPerLook: 1 }, { ...SERVING, budgetUsd: "245" });
    await expect(start(poor, { gpuSize: "gpu-h100x1-80gb" })).rejects.toThrow(
      /budgetUsd = 245: the stack's projected month is \$244\.10; with this job's \$\d+\.\d\d it would be \$24[5-9]\.\d\d, above the budget of \$245\.00/,
    );
    for (const x of [r, poor]) {
      expect(x.stack.calls).toEqual([]);
      expect(x.store.load()).toBeUndefined();
    }
  });
  it("counts this month's earlier jobs against the budget", async () => {
    const r = rig({ steps: 1, stepsPerLook: 1 });
    const projected = 244.1; // the hybrid preset's month, as the plan prints it
    await expect(
      finetuneStart({ ...r.env, otherJobsMonthUsd: 400 - projected }, { name: "acme-budget", dataset, epochs: 1 }),
    ).rejects.toThrow(/this month's earlier jobs|budgetUsd/);
    const spans: JobRecord["dropletSpans"] = [
      { fromMs: Date.parse("2026-12-01T00:00:00Z"), toMs: Date.parse("2026-12-01T02:00:00Z") },
      { fromMs: Date.parse("2026-11-30T00:00:00Z"), toMs: Date.parse("2026-11-30T01:00:00Z") },
    ];
    // Two hours this month at $1.57/h; last month's hour is not this month's.
    expect(
      monthJobSpendUsd(
        [
          {
            dropletSpans: spans,
            gpu: { slug: "gpu-l40sx1-48gb", pricePerHour: 1.57, image: "", region: "tor1" },
          } as unknown as JobRecord,
        ],
        Date.parse("2026-12-07T00:00:00Z"),
      ),
    ).toBeCloseTo(3.14, 9);
  });
  it("a second job under a name still in use", async () => {
    const r = rig({ steps: 4, stepsPerLook: 2, exit: 1 });
    await start(r);
    await expect(start(r)).rejects.toThrow(HubCommandError);
    await expect(start(r)).rejects.toThrow(/already exists on this stack \(failed, phase training\)/);
  });
});

describe("finetune add: the adapter onto the serving GPU volumes, then into llmLoraAdapters", () => {
  it("copies to each running GPU node by rename, and lists coder-<name> through preview and up", async () => {
    const r = rig(
      { steps: 2, stepsPerLook: 2 },
      { ...SERVING, gpuEnabled: "true", llmLoraAdapters: JSON.stringify(["sql=hf:owner/sql-lora@8"]) },
    );
    const record = await start(r);
    r.serving.deployedNodes = { cpu: { public: "192.0.2.1" }, "gpu-0": { public: "192.0.2.20" } };
    const outputs = r.serving.outputs.bind(r.serving);
    r.serving.outputs = async () => ({
      ...(await outputs()),
      nodeSshOptions: { value: { cpu: ["-o", "BatchMode=yes"], "gpu-0": ["-o", "BatchMode=yes"] }, secret: false },
    });
    await finetuneAdd(r.env, record.name);
    expect(r.nodeLog.filter((l) => l.includes(" upload "))).toEqual([
      `192.0.2.20 upload adapter_config.json -> /mnt/model-cache/adapters/.incoming-${record.name}/adapter_config.json`,
      `192.0.2.20 upload adapter_model.safetensors -> /mnt/model-cache/adapters/.incoming-${record.name}/adapter_model.safetensors`,
    ]);
    expect(r.nodeLog.at(-1)).toMatch(new RegExp(`mv \\.incoming-${record.name} ${record.name}`));
    const set = r.serving.calls.find((c) => c.startsWith("set inference-hub:llmLoraAdapters="))!;
    expect(JSON.parse(set.slice(set.indexOf("=") + 1))).toEqual([
      "sql=hf:owner/sql-lora@8",
      `${record.name}=volume:adapters/${record.name}@8`,
    ]);
    expect(r.serving.calls.slice(-2)).toEqual(["preview", "up"]);
  });
  it("refuses an adapter trained on another model than the one served", async () => {
    const r = rig({ steps: 2, stepsPerLook: 2 });
    const record = await start(r);
    r.serving.config["inference-hub:llmModel"] = { value: "qwen2.5-coder-7b", secret: false };
    await expect(finetuneAdd(r.env, record.name)).rejects.toThrow(
      /trained on qwen2\.5-coder-1\.5b, but the stack serves qwen2\.5-coder-7b/,
    );
  });
});
