import type { Logger } from "../gatekeeper/log";
import { errorText } from "../gatekeeper/log";
import { Sandbox, type SandboxHost } from "./sandbox";

/**
 * Sandboxes started ahead of demand, so a request pays for `runsc exec` (about 140 ms) rather than
 * a whole `runsc run` (about 500 ms; FACTS.md "Sandbox"). Every sandbox in the pool is fresh: no
 * program has run in it, so it belongs to no key yet; the one a request takes serves that request
 * (or that key's session) only and is destroyed after it. Used sandboxes never return here.
 */
export interface WarmPoolOptions {
  readonly host: SandboxHost;
  /** Sandboxes kept ready. */
  readonly size: number;
  /** Sizes a warm sandbox is made with (a request resizes the one it takes). */
  readonly memoryBytes: number;
  readonly scratchBytes: number;
  readonly log: Logger;
}

export class WarmPool {
  private readonly ready: Sandbox[] = [];
  private filling: Promise<void> | undefined;
  private closed = false;
  private failures = 0;

  constructor(private readonly options: WarmPoolOptions) {}

  get readyCount(): number {
    return this.ready.length;
  }

  /** Starts filling; resolves once the pool is full (or a start failed). */
  fill(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.filling ??= (async () => {
      try {
        while (!this.closed && this.ready.length < this.options.size) {
          const sandbox = await this.make();
          if (this.closed) {
            await sandbox.destroy();
            return;
          }
          this.ready.push(sandbox);
          this.failures = 0;
        }
      } catch (error) {
        this.failures += 1;
        this.options.log.error("sandbox pool: starting a sandbox failed", {
          error: errorText(error),
          failures: this.failures,
        });
        // Back off, then try again: a node that cannot start sandboxes answers 503s meanwhile.
        setTimeout(() => void this.fill(), Math.min(30_000, 250 * 2 ** this.failures)).unref();
      } finally {
        this.filling = undefined;
      }
    })();
    return this.filling;
  }

  /** A fresh sandbox: a warm one when there is one, else one started now. The pool refills behind it. */
  async take(): Promise<{ readonly sandbox: Sandbox; readonly warm: boolean }> {
    const warm = this.ready.shift();
    void this.fill();
    if (warm) return { sandbox: warm, warm: true };
    return { sandbox: await this.make(), warm: false };
  }

  private make(): Promise<Sandbox> {
    return Sandbox.create(this.options.host, {
      memoryBytes: this.options.memoryBytes,
      scratchBytes: this.options.scratchBytes,
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.filling?.catch(() => undefined);
    await Promise.all(this.ready.splice(0).map((s) => s.destroy()));
  }
}
