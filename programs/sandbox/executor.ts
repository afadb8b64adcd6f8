import { randomBytes } from "node:crypto";
import type { Logger } from "../gatekeeper/log";
import { errorText } from "../gatekeeper/log";
import type { SandboxConfig } from "./config";
import type { LanguageTable } from "./languages";
import { DEFAULT_LIMITS, MIN_LIMITS, resolveLimits } from "./limits";
import { WarmPool } from "./pool";
import type { ExecutionRequest, ExecutionResult, Limits, PartialLimits, SessionRequest } from "./protocol";
import { LIMIT_NAMES } from "./protocol";
import { type RunOutcome, type Sandbox, type SandboxFile, type SandboxHost } from "./sandbox";
import { ApiRefusal } from "./refusal";
import { Slots } from "./slots";

/**
 * What the API does with a request: checks it, takes a sandbox (a fresh one from the warm pool, or
 * the caller's session), runs the program within its limits, answers, and destroys the sandbox.
 * A refusal is an ApiRefusal: status, OpenAI-style code, and a message naming the field and what
 * would work.
 */

export { ApiRefusal };

/** The node's shape (config.ts documents each): ceiling, slots, queue, warm pool, sessions. */
export interface ExecutorOptions
  extends Pick<
    SandboxConfig,
    "ceiling" | "slots" | "slotsPerKey" | "queueLimit" | "warm" | "maxSessions" | "maxSessionsPerKey"
  > {
  readonly host: SandboxHost;
  readonly languages: LanguageTable;
  /** @default 600 s */
  readonly sessionTtlSeconds?: number;
  /** @default 3600 s */
  readonly maxSessionTtlSeconds?: number;
  readonly log: Logger;
}

interface Session {
  readonly id: string;
  readonly keyId: string;
  readonly sandbox: Sandbox;
  readonly memoryBytes: number;
  readonly scratchBytes: number;
  readonly ttlMs: number;
  expiresAtMs: number;
  busy: boolean;
  timer?: NodeJS.Timeout;
}

export interface SessionInfo {
  readonly id: string;
  readonly ttl_seconds: number;
  readonly expires_at: string;
  readonly limits: { readonly memory_bytes: number; readonly scratch_bytes: number };
}

/** Writes the files of a session run from inside its sandbox: a used /work may hold symlinks out of it. */
const FILE_LOADER = [
  "import base64, json, os, sys",
  "for f in json.load(sys.stdin):",
  "    p = os.path.join('/work', f['name'])",
  "    os.makedirs(os.path.dirname(p), exist_ok=True)",
  "    with open(p, 'wb') as out:",
  "        out.write(base64.b64decode(f['b64']))",
].join("\n");

const LOADER_LIMITS: Limits = { ...MIN_LIMITS, wall_ms: 10_000, cpu_ms: 5_000, processes: 16, output_bytes: 65_536 };

const newId = (prefix: string): string => `${prefix}_${randomBytes(12).toString("hex")}`;

/** Who asks: the key's id, and its own ceiling from the keys file (none: the node's). */
export interface Caller {
  readonly id: string;
  readonly limits?: PartialLimits;
}

/** The node's ceiling, lowered where the key's own is lower. */
const ceilingFor = (node: Limits, key: PartialLimits | undefined): Limits =>
  Object.fromEntries(LIMIT_NAMES.map((n) => [n, Math.min(node[n], key?.[n] ?? node[n])])) as Limits;

export class Executor {
  readonly pool: WarmPool;
  private readonly slots: Slots;
  private readonly sessions = new Map<string, Session>();
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly options: ExecutorOptions) {
    const warmDefaults = resolveLimits(undefined, options.ceiling);
    const sizes = warmDefaults.ok ? warmDefaults.limits : DEFAULT_LIMITS;
    this.pool = new WarmPool({
      host: options.host,
      size: options.warm,
      memoryBytes: sizes.memory_bytes,
      scratchBytes: sizes.scratch_bytes,
      log: options.log,
    });
    this.slots = new Slots(options.slots, options.slotsPerKey, options.queueLimit);
  }

  start(): Promise<void> {
    return this.pool.fill();
  }

  status(): { readonly warm: number; readonly running: number; readonly queued: number; readonly sessions: number } {
    return {
      warm: this.pool.readyCount,
      running: this.slots.inUse,
      queued: this.slots.queued,
      sessions: this.sessions.size,
    };
  }

  async execute(request: ExecutionRequest, caller: Caller): Promise<ExecutionResult> {
    const keyId = caller.id;
    const ceiling = ceilingFor(this.options.ceiling, caller.limits);
    if (this.closed)
      throw new ApiRefusal(503, "sandbox_unavailable", "The sandbox is shutting down; try again in a moment.", 5);
    const found = this.options.languages.find(request.language);
    if (!found)
      throw new ApiRefusal(
        400,
        "unknown_language",
        `language ${JSON.stringify(request.language)} is not available; use one of ${this.options.languages.list.map((l) => `${l.language} (${l.aliases.join(", ")})`).join("; ")}`,
      );
    const { language } = found;
    if (
      request.version !== undefined &&
      request.version !== "*" &&
      !(language.version === request.version || language.version.startsWith(`${request.version}.`))
    ) {
      throw new ApiRefusal(
        400,
        "unknown_version",
        `version ${JSON.stringify(request.version)} of ${language.language} is not available; this sandbox has ${language.version} (send "*" or leave version out)`,
      );
    }
    const session = request.session_id === undefined ? undefined : this.ownSession(request.session_id, keyId);
    const resolved = resolveLimits(
      request.limits,
      session ? { ...ceiling, memory_bytes: session.memoryBytes, scratch_bytes: session.scratchBytes } : ceiling,
    );
    if (!resolved.ok) throw new ApiRefusal(400, "invalid_limits", resolved.problems.join("; "));
    const limits = session
      ? { ...resolved.limits, memory_bytes: session.memoryBytes, scratch_bytes: session.scratchBytes }
      : resolved.limits;
    const files = decodeFiles(request, language.default_file, limits.scratch_bytes);
    const args = found.command(`/work/${files[0].name}`, request.args ?? []);
    const stdin = Buffer.from(request.stdin ?? "", "utf8");

    const release = await this.slots.acquire(keyId);
    const work = (async (): Promise<ExecutionResult> => {
      try {
        const outcome = session
          ? await this.runInSession(session, files, args, stdin, limits)
          : await this.runOnce(files, args, stdin, limits);
        if (outcome.sandboxError) {
          this.options.log.error("sandbox failed during an execution", {
            error: outcome.sandboxError,
            language: language.language,
          });
          throw new ApiRefusal(
            503,
            "sandbox_failed",
            "The sandbox failed while running the program (not the program's fault); try again.",
            1,
          );
        }
        return {
          id: newId("exe"),
          language: language.language,
          version: language.version,
          stdout: outcome.stdout.toString("utf8"),
          stderr: outcome.stderr.toString("utf8"),
          exit_code: outcome.exitCode,
          signal: outcome.signal,
          timed_out: outcome.limitsHit.includes("wall"),
          truncated: outcome.stdoutTruncated || outcome.stderrTruncated,
          stdout_truncated: outcome.stdoutTruncated,
          stderr_truncated: outcome.stderrTruncated,
          limits_hit: outcome.limitsHit,
          wall_ms: outcome.wallMs,
          cpu_ms: outcome.cpuMs,
          memory_bytes: outcome.memoryBytes,
          limits,
          ...(session ? { session_id: session.id } : {}),
        };
      } finally {
        release();
      }
    })();
    this.track(work);
    return work;
  }

  /** A fresh sandbox for one program, destroyed afterwards (in the background: the answer does not wait). */
  private async runOnce(
    files: readonly SandboxFile[],
    args: readonly string[],
    stdin: Buffer,
    limits: Limits,
  ): Promise<RunOutcome> {
    const { sandbox } = await this.pool.take().catch((error: unknown) => {
      throw new ApiRefusal(
        503,
        "sandbox_unavailable",
        `No sandbox could be started (${errorText(error)}); try again shortly.`,
        5,
      );
    });
    try {
      await sandbox.resize(limits.memory_bytes, limits.scratch_bytes);
      await sandbox.writeFreshFiles(files);
      return await sandbox.run({ args, stdin, limits });
    } finally {
      this.track(sandbox.destroy());
    }
  }

  private async runInSession(
    session: Session,
    files: readonly SandboxFile[],
    args: readonly string[],
    stdin: Buffer,
    limits: Limits,
  ): Promise<RunOutcome> {
    if (session.busy)
      throw new ApiRefusal(
        409,
        "session_busy",
        `session ${session.id} is running another execution; send one at a time per session`,
      );
    session.busy = true;
    try {
      if (session.sandbox.used) {
        const payload = JSON.stringify(files.map((f) => ({ name: f.name, b64: f.content.toString("base64") })));
        const loaded = await session.sandbox.run({
          args: ["/usr/bin/python3", "-c", FILE_LOADER],
          stdin: Buffer.from(payload),
          limits: { ...LOADER_LIMITS, memory_bytes: session.memoryBytes, scratch_bytes: session.scratchBytes },
        });
        if (loaded.exitCode !== 0) {
          if (loaded.spent) this.endSession(session);
          throw new ApiRefusal(
            400,
            "files_not_written",
            `the files could not be written into session ${session.id}: ${loaded.stderr.toString("utf8").trim().split("\n").slice(-1)[0] ?? loaded.signal ?? "unknown error"}`,
          );
        }
      } else {
        await session.sandbox.writeFreshFiles(files);
      }
      const outcome = await session.sandbox.run({ args, stdin, limits });
      // A limit ends the whole sandbox (nothing the program started may outlive it), and its session with it.
      if (outcome.spent) this.endSession(session);
      return outcome;
    } finally {
      session.busy = false;
      this.touch(session);
    }
  }

  async createSession(request: SessionRequest, caller: Caller): Promise<SessionInfo> {
    const keyId = caller.id;
    if (this.closed) throw new ApiRefusal(503, "sandbox_unavailable", "The sandbox is shutting down.", 5);
    const mine = [...this.sessions.values()].filter((s) => s.keyId === keyId).length;
    if (mine >= this.options.maxSessionsPerKey)
      throw new ApiRefusal(
        429,
        "too_many_sessions",
        `this key holds ${mine} sessions, the most one key may; delete one (DELETE /v1/sandbox/sessions/{id}) or let it expire`,
      );
    if (this.sessions.size >= this.options.maxSessions)
      throw new ApiRefusal(
        503,
        "sessions_full",
        "The sandbox holds as many sessions as it can; try again later, or run without a session.",
        30,
      );
    const maxTtl = this.options.maxSessionTtlSeconds ?? 3600;
    const ttl = request.ttl_seconds ?? this.options.sessionTtlSeconds ?? 600;
    const problems: string[] = [];
    if (ttl < 10 || ttl > maxTtl)
      problems.push(`ttl_seconds ${ttl} is outside what this sandbox allows; use 10 to ${maxTtl}`);
    const resolved = resolveLimits(
      { memory_bytes: request.limits?.memory_bytes, scratch_bytes: request.limits?.scratch_bytes },
      ceilingFor(this.options.ceiling, caller.limits),
    );
    if (!resolved.ok) problems.push(...resolved.problems);
    if (problems.length || !resolved.ok) throw new ApiRefusal(400, "invalid_session", problems.join("; "));
    const { sandbox } = await this.pool.take().catch((error: unknown) => {
      throw new ApiRefusal(
        503,
        "sandbox_unavailable",
        `No sandbox could be started (${errorText(error)}); try again shortly.`,
        5,
      );
    });
    try {
      await sandbox.resize(resolved.limits.memory_bytes, resolved.limits.scratch_bytes);
    } catch (error) {
      this.track(sandbox.destroy());
      throw error;
    }
    const session: Session = {
      id: newId("ses"),
      keyId,
      sandbox,
      memoryBytes: resolved.limits.memory_bytes,
      scratchBytes: resolved.limits.scratch_bytes,
      ttlMs: ttl * 1000,
      expiresAtMs: 0,
      busy: false,
    };
    this.sessions.set(session.id, session);
    this.touch(session);
    return this.sessionInfo(session);
  }

  deleteSession(id: string, keyId: string): void {
    this.endSession(this.ownSession(id, keyId));
  }

  getSession(id: string, keyId: string): SessionInfo {
    return this.sessionInfo(this.ownSession(id, keyId));
  }

  /** Another key's session is as unknown as one that never existed. */
  private ownSession(id: string, keyId: string): Session {
    const session = this.sessions.get(id);
    if (!session || session.keyId !== keyId)
      throw new ApiRefusal(
        404,
        "unknown_session",
        `session ${JSON.stringify(id.slice(0, 64))} does not exist (it may have expired, or ended when a run hit a limit)`,
      );
    return session;
  }

  private sessionInfo(session: Session): SessionInfo {
    return {
      id: session.id,
      ttl_seconds: session.ttlMs / 1000,
      expires_at: new Date(session.expiresAtMs).toISOString(),
      limits: { memory_bytes: session.memoryBytes, scratch_bytes: session.scratchBytes },
    };
  }

  /** The idle clock restarts after each use. */
  private touch(session: Session): void {
    if (!this.sessions.has(session.id)) return;
    clearTimeout(session.timer);
    session.expiresAtMs = Date.now() + session.ttlMs;
    session.timer = setTimeout(() => {
      if (!session.busy) this.endSession(session);
    }, session.ttlMs);
    session.timer.unref();
  }

  private endSession(session: Session): void {
    clearTimeout(session.timer);
    if (this.sessions.delete(session.id)) this.track(session.sandbox.destroy());
  }

  private track(work: Promise<unknown>): void {
    const settled = work.catch(() => undefined);
    this.running.add(settled);
    void settled.then(() => this.running.delete(settled));
  }

  /** Stops taking work, waits for what runs, destroys every sandbox. */
  async close(): Promise<void> {
    this.closed = true;
    this.slots.close();
    for (const session of [...this.sessions.values()]) this.endSession(session);
    while (this.running.size > 0) await Promise.all([...this.running]);
    await this.pool.close();
  }
}

/** The request's files as bytes with their names (the first one defaults to the language's file name). */
function decodeFiles(request: ExecutionRequest, defaultFile: string, scratchBytes: number): SandboxFile[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  let total = 0;
  const files = request.files.map((file, i): SandboxFile => {
    const name = file.name ?? (i === 0 ? defaultFile : "");
    if (!name) problems.push(`files[${i}].name is required (only the first file may leave it out)`);
    else if (seen.has(name)) problems.push(`files[${i}].name ${JSON.stringify(name)} appears twice`);
    seen.add(name);
    const content =
      file.encoding === "base64" ? Buffer.from(file.content, "base64") : Buffer.from(file.content, "utf8");
    total += content.length;
    return { name, content };
  });
  if (total > scratchBytes)
    problems.push(
      `the files hold ${total} bytes, more than the scratch directory's ${scratchBytes}; raise limits.scratch_bytes or send less`,
    );
  if (problems.length) throw new ApiRefusal(400, "invalid_files", problems.join("; "));
  return files;
}
