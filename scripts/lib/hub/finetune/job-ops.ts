import { spawn } from "node:child_process";
import { HubCommandError } from "../ops";

/**
 * The Pulumi and SSH operations a fine-tuning job needs, behind one small interface (as StackOps
 * is for the serving stack): the real implementation runs the job's own Pulumi stack through the
 * Automation API and the system ssh/scp; tests record the calls and script the answers.
 */
export interface JobStackSettings {
  readonly droplet: boolean;
}

export interface JobConnection {
  readonly host: string;
  readonly sshOptions: readonly string[];
}

export interface JobStackOps {
  /** The job stack's name, e.g. hybrid-ft-myteam. */
  readonly stackName: string;
  /** Creates or updates the job's stack; with a droplet, answers once it passed its readiness check. */
  up(settings: JobStackSettings, onOutput: (line: string) => void): Promise<JobConnection | undefined>;
  /** Destroys every resource of the job's stack (droplet, volume, firewall, VPC) and removes the stack. */
  destroy(onOutput: (line: string) => void): Promise<void>;
  /** What the stack holds now, from its state: nothing when the stack does not exist. */
  resources(): Promise<{ readonly droplet: boolean; readonly volume: boolean }>;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A shell on one droplet, as root. */
export interface RemoteShell {
  run(script: string): Promise<CommandResult>;
  upload(localPath: string, remotePath: string): Promise<void>;
  download(remotePath: string, localPath: string): Promise<void>;
}

export interface JobOps {
  readonly stack: JobStackOps;
  connect(connection: JobConnection): RemoteShell;
}

// ---- the real shell: the system ssh and scp with the stack's pinned options ----

function spawnCollect(command: string, args: readonly string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

/** ssh/scp read `~` in option values from the passwd entry, as the deploy wrote them. */
export class SshShell implements RemoteShell {
  constructor(
    private readonly connection: JobConnection,
    private readonly user = "root",
    private readonly port?: number,
  ) {}

  private get target(): string {
    return `${this.user}@${this.connection.host}`;
  }

  async run(script: string): Promise<CommandResult> {
    // The script goes on stdin: nothing of it lands in a process list or a shell's quoting.
    return spawnCollect("ssh", [...this.connection.sshOptions, ...(this.port ? ["-p", String(this.port)] : []), "-T", this.target, "bash -s"], script);
  }

  async upload(localPath: string, remotePath: string): Promise<void> {
    const r = await spawnCollect("scp", ["-q", ...this.connection.sshOptions, ...(this.port ? ["-P", String(this.port)] : []), localPath, `${this.target}:${remotePath}`]);
    if (r.code !== 0) throw new HubCommandError(`copying ${localPath} to the droplet failed: ${r.stderr.trim().split("\n").pop() ?? `scp exit ${r.code}`}`);
  }

  async download(remotePath: string, localPath: string): Promise<void> {
    const r = await spawnCollect("scp", ["-q", ...this.connection.sshOptions, ...(this.port ? ["-P", String(this.port)] : []), `${this.target}:${remotePath}`, localPath]);
    if (r.code !== 0) throw new HubCommandError(`copying ${remotePath} from the droplet failed: ${r.stderr.trim().split("\n").pop() ?? `scp exit ${r.code}`}`);
  }
}
