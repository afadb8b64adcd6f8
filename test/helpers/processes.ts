import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";

/**
 * Long-running programs started by tests (Traefik, nginx, the gatekeeper): output kept for
 * assertions and failure messages, stopped with SIGTERM (SIGKILL after a grace period), and
 * killed by pid when the test process exits, so none outlives its test file.
 */

const live = new Set<ManagedProcess>();
process.once("exit", () => {
  for (const p of live) p.killNow();
});

export class ManagedProcess {
  private output = "";
  private readonly lineListeners = new Set<(line: string) => void>();
  private partial = "";
  readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      const text = chunk.toString();
      this.output += text;
      // Keep the buffer bounded: the access log of a long test can grow large.
      if (this.output.length > 32 * 1024 * 1024) this.output = this.output.slice(-16 * 1024 * 1024);
      const lines = (this.partial + text).split("\n");
      this.partial = lines.pop() ?? "";
      for (const line of lines) for (const l of this.lineListeners) l(line);
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    void this.exited.then(() => live.delete(this));
  }

  /**
   * @param options.stdoutFile write stdout to this file instead of keeping it (a benchmark must not
   *   spend the client's CPU reading an access log); stderr is still kept.
   */
  static start(
    name: string,
    file: string,
    args: readonly string[],
    options: { env?: NodeJS.ProcessEnv; cwd?: string; stdoutFile?: string } = {},
  ): ManagedProcess {
    const stdout = options.stdoutFile ? openSync(options.stdoutFile, "a") : "pipe";
    const child = spawn(file, [...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ["ignore", stdout, "pipe"],
    });
    if (typeof stdout === "number") closeSync(stdout);
    const managed = new ManagedProcess(name, child);
    live.add(managed);
    child.once("error", (error) => {
      managed.output += `\n[spawn error] ${error.message}\n`;
    });
    return managed;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the program printed so far (stdout and stderr interleaved). */
  text(): string {
    return this.output;
  }

  /** Output lines from now on. */
  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  tail(chars = 3000): string {
    return this.output.slice(-chars);
  }

  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.killNow(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  killNow(): void {
    if (this.running) this.child.kill("SIGKILL");
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true; a readiness poll instead of a fixed sleep. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs: number,
  options: { intervalMs?: number; context?: () => string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = (error as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ""}${options.context ? `\n${options.context()}` : ""}`,
      );
    await sleep(options.intervalMs ?? 50);
  }
}
