import * as fs from "node:fs";
import * as path from "node:path";

/**
 * JSON files that survive a crash at any instant: the new content goes to a temporary file, is
 * fsynced, the current file becomes `.prev`, the temporary one is renamed over it, and the
 * directory is fsynced. A reader takes the current file, or `.prev` if the current one is missing
 * or unreadable (a crash between the two renames, a damaged disk block).
 */

export type ReadOutcome<T> =
  | { readonly kind: "missing" }
  | { readonly kind: "ok"; readonly value: T; readonly from: "current" | "previous"; readonly problem?: string }
  | { readonly kind: "corrupt"; readonly problem: string };

export class JsonStore {
  constructor(readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  write(name: string, value: unknown): void {
    fs.mkdirSync(this.dir, { recursive: true });
    const target = this.file(name);
    const tmp = `${target}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, "w", 0o600);
    try {
      fs.writeSync(fd, `${JSON.stringify(value)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (fs.existsSync(target)) fs.renameSync(target, `${target}.prev`);
    fs.renameSync(tmp, target);
    const dirFd = fs.openSync(this.dir, "r");
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  }

  /** Reads `name` and checks it with `check` (undefined: not the expected shape). */
  read<T>(name: string, check: (v: unknown) => T | undefined): ReadOutcome<T> {
    const attempt = (file: string): { value?: T; problem?: string; missing?: boolean } => {
      let text: string;
      try {
        text = fs.readFileSync(file, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return { missing: true };
        return { problem: `${path.basename(file)}: ${(err as Error).message}` };
      }
      try {
        const value = check(JSON.parse(text));
        return value === undefined ? { problem: `${path.basename(file)} is not in the expected shape` } : { value };
      } catch (err) {
        return { problem: `${path.basename(file)} is not JSON (${(err as Error).message})` };
      }
    };
    const current = attempt(this.file(name));
    if (current.value !== undefined) return { kind: "ok", value: current.value, from: "current" };
    const previous = attempt(`${this.file(name)}.prev`);
    if (previous.value !== undefined)
      return { kind: "ok", value: previous.value, from: "previous", problem: current.problem ?? `${name} is missing` };
    if (current.missing && previous.missing) return { kind: "missing" };
    return { kind: "corrupt", problem: [current.problem, previous.problem].filter(Boolean).join("; ") };
  }

  /** Whether the directory holds any file (a previous run's state, copies, or files moved aside): not a first start. */
  hasAnyFile(): boolean {
    try {
      return fs.readdirSync(this.dir).some((f) => !f.includes(".tmp-"));
    } catch {
      return false;
    }
  }

  /** Moves an unreadable file aside (kept for a post-mortem), so the next write starts clean. */
  quarantine(name: string, nowMs: number): void {
    for (const suffix of ["", ".prev"]) {
      const file = `${this.file(name)}${suffix}`;
      if (fs.existsSync(file)) fs.renameSync(file, `${file}.corrupt-${nowMs}`);
    }
  }
}
