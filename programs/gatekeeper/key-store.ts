import { watch, type FSWatcher } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { z } from "zod";
import { type RuntimeRecord, runtimeRecordSchema } from "./key-merge";
import type { Logger } from "./log";
import { errorText } from "./log";

/**
 * Where runtime keys live: an interface with two implementations, PostgreSQL (key-store-pg.ts,
 * shared by every gatekeeper that uses the audit database) and a file in the gatekeeper's state
 * directory on the CPU cache volume (below), which survives a node rebuild and that no deploy
 * writes. Usage (the daily quota's counts and "last used") is kept beside the keys.
 */

/** Allowed requests of one key on one UTC day, and when it was last used. */
export interface KeyUsage {
  readonly requests: number;
  readonly lastUsedMs: number;
}

export interface RuntimeKeyStore {
  readonly kind: "postgresql" | "file";
  /** Every runtime record; throws when the store cannot be read. */
  load(): Promise<RuntimeRecord[]>;
  /**
   * Reads the record of `id`, lets `change` decide (undefined: no change), and writes the result
   * durably and atomically against other writers; resolves with what was written.
   */
  modify(
    id: string,
    change: (current: RuntimeRecord | undefined) => RuntimeRecord | undefined,
  ): Promise<RuntimeRecord | undefined>;
  /** Adds this replica's counts for `day` and returns every key's totals for that day. */
  addUsage(day: string, deltas: ReadonlyMap<string, KeyUsage>): Promise<Map<string, KeyUsage>>;
  /** When each key was last used, any day. */
  lastUsed(): Promise<Map<string, number>>;
  /** Calls back when another writer may have changed the keys. */
  watch(onChange: () => void): void;
  close(): Promise<void>;
}

/** Write, fsync, rename, fsync the directory: a reader sees the old file or the new one, and a power cut keeps the new one once this resolves. */
export async function writeFileDurably(file: string, text: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  const handle = await fsp.open(temporary, "w", 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(temporary, file);
  const dir = await fsp.open(path.dirname(file), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** A lock file created exclusively; a holder that died leaves one older than `staleMs`, which is broken. */
export async function withLockFile<T>(
  lockPath: string,
  run: () => Promise<T>,
  { timeoutMs = 5000, staleMs = 10_000 } = {},
): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      const handle = await fsp.open(lockPath, "wx", 0o600);
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const stat = await fsp.stat(lockPath).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > staleMs) await fsp.rm(lockPath, { force: true });
      else if (Date.now() - started > timeoutMs)
        throw new Error(`the key store is locked by another writer (${lockPath}) for over ${timeoutMs} ms`);
      else await new Promise((r) => setTimeout(r, 10));
    }
  }
  try {
    return await run();
  } finally {
    await fsp.rm(lockPath, { force: true });
  }
}

const keysDocumentSchema = z.strictObject({ version: z.literal(1), records: z.array(z.unknown()) });
const usageDocumentSchema = z.strictObject({
  version: z.literal(1),
  day: z.string(),
  requests: z.record(z.string(), z.number()),
  lastUsed: z.record(z.string(), z.number()),
});
type UsageDocument = z.infer<typeof usageDocumentSchema>;

/** Parses records one by one: a record this version cannot read is skipped (and logged), never fatal. */
export function parseRecords(values: readonly unknown[], log: Logger, where: string): RuntimeRecord[] {
  const records: RuntimeRecord[] = [];
  for (const value of values) {
    const parsed = runtimeRecordSchema.safeParse(value);
    if (parsed.success) records.push(parsed.data);
    else
      log.warn("runtime key record skipped: it does not parse", {
        where,
        problems: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).slice(0, 5),
      });
  }
  return records;
}

/** The runtime keys in the gatekeeper's state directory: keys.json and usage.json, each replaced atomically under one lock. */
export class FileKeyStore implements RuntimeKeyStore {
  readonly kind = "file" as const;
  private readonly keysFile: string;
  private readonly usageFile: string;
  private readonly lockFile: string;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private lastSeen = "";

  constructor(
    readonly dir: string,
    private readonly log: Logger,
    /** The fallback poll, for mounts where inotify events do not arrive. @default 250 */
    private readonly pollMs = 250,
  ) {
    this.keysFile = path.join(dir, "keys.json");
    this.usageFile = path.join(dir, "usage.json");
    this.lockFile = path.join(dir, ".lock");
  }

  static async open(dir: string, log: Logger, pollMs?: number): Promise<FileKeyStore> {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return new FileKeyStore(dir, log, pollMs);
  }

  private async readRecords(): Promise<RuntimeRecord[]> {
    let text: string;
    try {
      text = await fsp.readFile(this.keysFile, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    const doc = keysDocumentSchema.parse(JSON.parse(text));
    return parseRecords(doc.records, this.log, this.keysFile);
  }

  load(): Promise<RuntimeRecord[]> {
    return this.readRecords();
  }

  modify(
    id: string,
    change: (current: RuntimeRecord | undefined) => RuntimeRecord | undefined,
  ): Promise<RuntimeRecord | undefined> {
    return withLockFile(this.lockFile, async () => {
      const records = await this.readRecords();
      const index = records.findIndex((r) => (r.kind === "key" ? r.entry.id : r.id) === id);
      const next = change(index < 0 ? undefined : records[index]);
      if (!next) return undefined;
      if (index < 0) records.push(next);
      else records[index] = next;
      await writeFileDurably(this.keysFile, `${JSON.stringify({ version: 1, records }, null, 1)}\n`);
      return next;
    });
  }

  private async readUsage(day: string): Promise<UsageDocument> {
    try {
      const doc = usageDocumentSchema.parse(JSON.parse(await fsp.readFile(this.usageFile, "utf8")));
      // A new day starts its counts at zero; when each key was last used carries over.
      return doc.day === day ? doc : { ...doc, day, requests: {} };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT")
        this.log.warn("usage file unreadable; counting from zero", { file: this.usageFile, error: errorText(error) });
      return { version: 1, day, requests: {}, lastUsed: {} };
    }
  }

  addUsage(day: string, deltas: ReadonlyMap<string, KeyUsage>): Promise<Map<string, KeyUsage>> {
    const totals = (doc: UsageDocument) =>
      new Map(Object.entries(doc.requests).map(([id, n]) => [id, { requests: n, lastUsedMs: doc.lastUsed[id] ?? 0 }]));
    if (deltas.size === 0) return this.readUsage(day).then(totals);
    return withLockFile(this.lockFile, async () => {
      const doc = await this.readUsage(day);
      for (const [id, delta] of deltas) {
        doc.requests[id] = (doc.requests[id] ?? 0) + delta.requests;
        doc.lastUsed[id] = Math.max(doc.lastUsed[id] ?? 0, delta.lastUsedMs);
      }
      await writeFileDurably(this.usageFile, `${JSON.stringify(doc)}\n`);
      return totals(doc);
    });
  }

  async lastUsed(): Promise<Map<string, number>> {
    const doc = await this.readUsage("");
    return new Map(Object.entries(doc.lastUsed));
  }

  watch(onChange: () => void): void {
    const check = async () => {
      const stat = await fsp.stat(this.keysFile).catch(() => undefined);
      const seen = stat ? `${stat.ino}:${stat.mtimeMs}:${stat.size}` : "none";
      if (seen !== this.lastSeen) {
        this.lastSeen = seen;
        onChange();
      }
    };
    void check();
    try {
      this.watcher = watch(this.dir, (_event, name) => {
        if (!name || name === "keys.json") void check();
      });
      this.watcher.on("error", () => undefined);
    } catch (error) {
      this.log.warn("key state directory cannot be watched; polling only", { error: errorText(error) });
    }
    this.poll = setInterval(() => void check(), this.pollMs);
    this.poll.unref();
  }

  async close(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poll);
  }
}
