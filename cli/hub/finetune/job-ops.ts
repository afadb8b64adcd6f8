import { spawn } from "node:child_process";
import { createReadStream, createWriteStream, renameSync } from "node:fs";
import * as path from "node:path";
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

// ---- the real shell: the system ssh with the stack's pinned options ----

/** Single-quoted for the remote shell: paths here are the job's own, but never trust that. */
const quote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

function spawnSsh(
  args: readonly string[],
  stdin: { text?: string; file?: string },
  stdoutFile?: string,
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("ssh", [...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const sink = stdoutFile ? createWriteStream(stdoutFile, { mode: 0o600 }) : undefined;
    if (sink) child.stdout.pipe(sink);
    else child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => {
      const done = () => resolve({ code: code ?? 1, stdout, stderr });
      if (sink) sink.end(done);
      else done();
    });
    if (stdin.file) createReadStream(stdin.file).on("error", reject).pipe(child.stdin);
    else child.stdin.end(stdin.text ?? "");
  });
}

/**
 * The system ssh, as the deploy's Docker connections use it. Files travel through `cat` over the
 * same connection (no SFTP subsystem needed), into a temporary name and then renamed.
 */
export class SshShell implements RemoteShell {
  constructor(
    private readonly connection: JobConnection,
    private readonly user = "root",
    private readonly port?: number,
  ) {}

  private args(command: string): string[] {
    return [
      ...this.connection.sshOptions,
      ...(this.port ? ["-p", String(this.port)] : []),
      "-T",
      `${this.user}@${this.connection.host}`,
      command,
    ];
  }

  async run(script: string): Promise<CommandResult> {
    // The script goes on stdin: nothing of it lands in a process list or a shell's quoting.
    return spawnSsh(this.args("bash -s"), { text: script });
  }

  async upload(localPath: string, remotePath: string): Promise<void> {
    const tmp = `${remotePath}.uploading`;
    const r = await spawnSsh(
      this.args(
        `mkdir -p ${quote(path.posix.dirname(remotePath))} && cat > ${quote(tmp)} && mv ${quote(tmp)} ${quote(remotePath)}`,
      ),
      { file: localPath },
    );
    if (r.code !== 0)
      throw new HubCommandError(
        `copying ${localPath} to the droplet failed: ${r.stderr.trim().split("\n").pop() || `ssh exit ${r.code}`}`,
      );
  }

  async download(remotePath: string, localPath: string): Promise<void> {
    const tmp = `${localPath}.downloading`;
    const r = await spawnSsh(this.args(`cat ${quote(remotePath)}`), {}, tmp);
    if (r.code !== 0)
      throw new HubCommandError(
        `copying ${remotePath} from the droplet failed: ${r.stderr.trim().split("\n").pop() || `ssh exit ${r.code}`}`,
      );
    renameSync(tmp, localPath);
  }
}
