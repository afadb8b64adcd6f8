import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import type {
  CommandResult,
  JobConnection,
  JobOps,
  JobStackOps,
  JobStackSettings,
  RemoteShell,
} from "../../cli/hub/finetune/job-ops";
import { ALL_PROJECTIONS, loraTensors, peftConfig, safetensors } from "./peft-writer";

// Recording stand-ins for the job's Pulumi stack and for the GPU droplet behind SSH. They run no
// program: they record what the job asks and answer the way the real pieces are documented to
// (the trainer writes its log, its exit status and its adapter onto the job's volume).

/** The job's Pulumi stack: which resources exist, and every call in order. */
export class RecordingJobStack implements JobStackOps {
  readonly calls: string[] = [];
  droplet = false;
  volume = false;
  /** Throws from the next up() with droplet true/false, when set. */
  failUp: { droplet?: Error; noDroplet?: Error } = {};
  constructor(readonly stackName = "hybrid-ft-acme") {}
  async up(settings: JobStackSettings, onOutput: (line: string) => void): Promise<JobConnection | undefined> {
    this.calls.push(`up droplet=${settings.droplet}`);
    const failure = settings.droplet ? this.failUp.droplet : this.failUp.noDroplet;
    if (failure) throw failure;
    onOutput(
      settings.droplet
        ? "+ digitalocean:index/droplet:Droplet job-droplet created"
        : "- digitalocean:index/droplet:Droplet job-droplet deleted",
    );
    this.volume = true;
    this.droplet = settings.droplet;
    return settings.droplet ? { host: "192.0.2.10", sshOptions: ["-o", "BatchMode=yes"] } : undefined;
  }
  async destroy(_onOutput: (line: string) => void): Promise<void> {
    this.calls.push("destroy");
    this.droplet = false;
    this.volume = false;
  }
  async resources() {
    return { droplet: this.droplet, volume: this.volume };
  }
}

export interface TrainerScript {
  readonly steps: number;
  /** Steps the trainer advances between two looks. */
  readonly stepsPerLook: number;
  /** Exit status when it finishes. @default 0 */
  readonly exit?: number;
  /** The adapter it writes: rank and tensors (Qwen2.5-Coder-1.5B's shapes unless changed). */
  readonly adapterRank?: number;
  readonly adapterTensors?: Buffer;
}

/**
 * The droplet's files (the job's volume survives the droplet: the same map across droplets) and a
 * trainer that advances a few steps each time the job looks at it, as a checkpointed trainer
 * resumes from where it was.
 */
export class FakeVolume {
  readonly files = new Map<string, Buffer>();
  step = 0;
  running = false;
  readonly scripts: string[] = [];
  uploads: string[] = [];
  constructor(public trainer: TrainerScript) {}

  shell(): RemoteShell {
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    return {
      run: async (script) => {
        this.scripts.push(script);
        if (script.includes("docker image inspect")) return ok();
        if (script.startsWith("sha256sum")) {
          const file = script.split(" ")[1];
          const bytes = this.files.get(file);
          return bytes ? ok(`${createHash("sha256").update(bytes).digest("hex")}  ${file}\n`) : ok();
        }
        if (script.includes("docker run -d")) {
          if (this.files.has("/mnt/job/exit-status")) return ok(`exited ${this.files.get("/mnt/job/exit-status")}\n`);
          if (this.running) return ok("running\n");
          this.running = true;
          return ok("started\n");
        }
        if (script.includes("tail -c +")) {
          const offset = Number(/tail -c \+(\d+)/.exec(script)![1]) - 1;
          this.advance();
          const log = this.files.get("/mnt/job/train.log") ?? Buffer.alloc(0);
          const status = this.files.get("/mnt/job/exit-status")?.toString().trim() ?? "";
          return ok(`exit=${status}\n---\n${log.subarray(offset).toString()}`);
        }
        if (script.startsWith("ls /mnt/job/out"))
          return ok(
            [...this.files.keys()]
              .filter((k) => k.startsWith("/mnt/job/out/"))
              .map((k) => path.basename(k))
              .join("\n"),
          );
        if (script.startsWith("tail -n 20"))
          return ok((this.files.get("/mnt/job/train.log") ?? "").toString().split("\n").slice(-20).join("\n"));
        return { code: 127, stdout: "", stderr: `stand-in: no answer scripted for ${script.split("\n")[0]}` };
      },
      upload: async (local, remote) => {
        this.uploads.push(remote);
        this.files.set(remote, readFileSync(local));
      },
      download: async (remote, local) => {
        const bytes = this.files.get(remote);
        if (!bytes) throw new Error(`stand-in: no ${remote}`);
        writeFileSync(local, bytes);
      },
    };
  }

  /** The droplet went away: the container with it; the volume's files stay. */
  dropletGone(): void {
    this.running = false;
  }

  private advance(): void {
    if (!this.running || this.files.has("/mnt/job/exit-status")) return;
    const lines: string[] = [];
    const until = Math.min(this.trainer.steps, this.step + this.trainer.stepsPerLook);
    for (let s = this.step + 1; s <= until; s++) {
      lines.push(
        `{'loss': ${(2 / s).toFixed(4)}, 'grad_norm': 0.5, 'learning_rate': 0.0002, 'epoch': ${(s / this.trainer.steps).toFixed(2)}}`,
      );
      lines.push(
        ` ${Math.round((100 * s) / this.trainer.steps)}%|#| ${s}/${this.trainer.steps} [00:${String(s).padStart(2, "0")}<00:10,  1.00s/it]`,
      );
    }
    this.step = until;
    const log = this.files.get("/mnt/job/train.log") ?? Buffer.alloc(0);
    this.files.set("/mnt/job/train.log", Buffer.concat([log, Buffer.from(lines.map((l) => `${l}\n`).join(""))]));
    if (this.step >= this.trainer.steps) {
      const exit = this.trainer.exit ?? 0;
      if (exit === 0) {
        const r = this.trainer.adapterRank ?? 8;
        this.files.set(
          "/mnt/job/out/adapter_config.json",
          Buffer.from(JSON.stringify(peftConfig({ r, lora_alpha: 2 * r }))),
        );
        this.files.set(
          "/mnt/job/out/adapter_model.safetensors",
          this.trainer.adapterTensors ?? safetensors(loraTensors(r, ALL_PROJECTIONS)),
        );
      } else {
        this.files.set(
          "/mnt/job/train.log",
          Buffer.concat([
            this.files.get("/mnt/job/train.log")!,
            Buffer.from("torch.OutOfMemoryError: CUDA out of memory.\n"),
          ]),
        );
      }
      this.files.set("/mnt/job/exit-status", Buffer.from(`${exit}\n`));
      this.running = false;
    }
  }
}

export function recordingJobOps(
  stack: RecordingJobStack,
  volume: FakeVolume,
): JobOps & { readonly connections: JobConnection[] } {
  const connections: JobConnection[] = [];
  const original = stack.up.bind(stack);
  stack.up = async (settings, onOutput) => {
    const result = await original(settings, onOutput);
    if (!settings.droplet) volume.dropletGone();
    return result;
  };
  const originalDestroy = stack.destroy.bind(stack);
  stack.destroy = async (onOutput) => {
    await originalDestroy(onOutput);
    volume.dropletGone();
    volume.files.clear();
  };
  return {
    stack,
    connections,
    connect: (c) => {
      connections.push(c);
      return volume.shell();
    },
  };
}

/** A serving node's shell (finetune add, the spend file): records scripts and uploads, keeps what was uploaded. */
export function recordingNodeShell(
  log: string[],
  files: Map<string, Buffer> = new Map(),
): (host: string, sshOptions: readonly string[]) => RemoteShell {
  return (host) => ({
    run: async (script) => {
      log.push(`${host} run ${script}`);
      const cat = /^cat (\S+) 2>\/dev\/null/.exec(script);
      return { code: 0, stdout: cat ? (files.get(`${host}:${cat[1]}`)?.toString() ?? "") : "", stderr: "" };
    },
    upload: async (local, remote) => {
      log.push(`${host} upload ${path.basename(local)} -> ${remote}`);
      files.set(`${host}:${remote}`, readFileSync(local));
    },
    download: async () => {
      throw new Error("not used");
    },
  });
}
