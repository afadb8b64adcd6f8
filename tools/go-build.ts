import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";

/**
 * What the builds of real Go programs for the tests share (traefik.ts, prometheus-tools.ts): the
 * cache they build into, the `go` client, and one build of a binary at a time across processes.
 */

/** A build that cannot finish: its message is what the user sees, without a stack trace. */
export class BuildError extends Error {}

/** ~/.cache/inference-hub/tools (or under $XDG_CACHE_HOME): one directory per program and version. */
export const toolsCacheRoot = (): string =>
  path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache"), "inference-hub", "tools");

/** The `go` client: $GO, else `go` on PATH, else the official install's path. */
export function goBinary(needs: string): string {
  if (process.env.GO) return process.env.GO;
  const onPath = spawnSync("sh", ["-c", "command -v go"], { encoding: "utf8" }).stdout.trim();
  if (onPath) return onPath;
  if (existsSync("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
  throw new BuildError(
    `Go is not installed (no \`go\` on PATH, no /usr/local/go/bin/go); ${needs} needs Go 1.26 or newer.`,
  );
}

/** Runs `go <args>` and returns its stdout; a failure ends with the tail of its output. */
export function runGo(go: string, args: readonly string[], cwd: string, env: Readonly<Record<string, string>>): string {
  const result = spawnSync(go, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error)
    throw new BuildError(
      `could not run ${go} (${result.error.message}); set GO to the go client, or install Go 1.26 or newer`,
    );
  if (result.status !== 0)
    throw new BuildError(
      `go ${args.join(" ")} failed (exit ${result.status}) in ${cwd}:\n${(result.stderr || result.stdout).slice(-6000)}`,
    );
  return result.stdout;
}

/**
 * One build of `binary` at a time, across processes (CI steps and test workers may race): a lock
 * directory beside `dir` holding the builder's pid. A lock whose process is gone is broken; a
 * waiter stops waiting once the binary exists. Returns the unlock.
 */
export function buildLock(dir: string, binary: string): () => void {
  const lockDir = `${dir}.lock`;
  mkdirSync(path.dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(path.join(lockDir, "pid"), String(process.pid));
      return () => rmSync(lockDir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      let pid = 0;
      try {
        pid = Number(readFileSync(path.join(lockDir, "pid"), "utf8").trim() || "0");
      } catch {
        // the holder has not written its pid yet
      }
      let alive = pid > 0;
      try {
        if (alive) process.kill(pid, 0);
      } catch {
        alive = false;
      }
      if (!alive && pid > 0) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      process.stderr.write(`another build (pid ${pid}) holds ${lockDir}; waiting\n`);
      spawnSync("sleep", ["10"]);
      if (existsSync(binary)) return () => undefined;
    }
  }
}

/**
 * The last step of a build whose version checked out: build.json beside the binary (what was built,
 * from what, how long it took), then the staged binary moved into place. Returns the binary.
 */
export function installBuilt(
  staged: string,
  binary: string,
  record: Readonly<Record<string, unknown>>,
  startedMs: number,
  log: (line: string) => void,
): string {
  const seconds = Math.round((Date.now() - startedMs) / 1000);
  writeFileSync(
    path.join(path.dirname(binary), "build.json"),
    `${JSON.stringify({ ...record, builtAt: new Date().toISOString(), seconds }, null, 2)}\n`,
  );
  renameSync(staged, binary);
  log(`built ${binary} in ${seconds} s`);
  return binary;
}

/** `tsx tools/<name>.ts build|path`: prints the binaries' paths; a BuildError is one line and exit 1. */
export function toolCli(
  script: string,
  commands: { readonly build: () => readonly string[]; readonly path: () => readonly string[] },
): void {
  const command = process.argv[2];
  try {
    if (command === "build" || command === "path")
      for (const line of commands[command]()) process.stdout.write(`${line}\n`);
    else {
      process.stderr.write(`usage: tsx tools/${script} build|path\n`);
      process.exitCode = 1;
    }
  } catch (error) {
    process.stderr.write(`${error instanceof BuildError ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
