import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { z } from "zod";
import type { KeySourceStatus } from "./key-source";
import { KeyFileSource } from "./key-source";
import { type Limits, LIMIT_FIELDS, type MergedKeys, mergeKeys, type RuntimeRecord } from "./key-merge";
import type { RuntimeKeyStore } from "./key-store";
import { parseRecords, writeFileDurably } from "./key-store";
import { type KeyEntry, keyEntrySchema, type KeysFile, KeyStore, newApiKey } from "./keys";
import type { Logger } from "./log";
import { errorText } from "./log";

/**
 * The keys in force: the declared file (watched, as before) merged with the runtime store
 * (key-merge.ts says who wins). Every change to either builds a new KeyStore and swaps one
 * reference, so requests in flight finish with the store they started with. With PostgreSQL, the
 * last runtime set read is cached in the state directory: a gatekeeper that starts while the
 * database is down still knows the runtime keys, and their revocations.
 */

export interface KeyRegistryStatus extends KeySourceStatus {
  readonly declared: number;
  /** Keys not revoked. */
  readonly active: number;
  readonly runtime: {
    readonly store: "postgresql" | "file" | "none";
    readonly loaded: boolean;
    readonly count: number;
    readonly error: string | null;
  };
}

/** What a caller may set on a new key: a keys-file entry without its identity. */
export const newKeySchema = keyEntrySchema.omit({ id: true, sha256: true, created: true, revoked: true });
export type NewKey = z.infer<typeof newKeySchema>;

export class KeyAdminError extends Error {
  constructor(
    readonly status: 400 | 404 | 409 | 503,
    message: string,
  ) {
    super(message);
  }
}

export class KeyRegistry {
  readonly declared: KeyFileSource;
  private runtime: RuntimeRecord[] = [];
  private runtimeLoaded = false;
  private runtimeError: string | null = null;
  private merged: MergedKeys | undefined;
  private store: KeyStore | undefined;
  private queue: Promise<void> = Promise.resolve();
  private reportedConflicts = new Set<string>();

  constructor(
    keysFile: string,
    private readonly runtimeStore: RuntimeKeyStore | undefined,
    private readonly log: Logger,
    private readonly onChanged: (store: KeyStore) => void,
    /** Where the PostgreSQL set is cached; undefined: not cached. */
    private readonly cacheFile?: string,
  ) {
    this.declared = new KeyFileSource(keysFile, log, () => this.rebuild());
  }

  get current(): KeyStore | undefined {
    return this.store;
  }

  get mergedKeys(): MergedKeys | undefined {
    return this.merged;
  }

  get storeKind(): "postgresql" | "file" | "none" {
    return this.runtimeStore?.kind ?? "none";
  }

  async start(pollMs?: number): Promise<void> {
    await this.declared.reload();
    await this.reloadRuntime();
    if (!this.runtimeLoaded) await this.loadCache();
    this.declared.watch(pollMs);
    this.runtimeStore?.watch(() => void this.reloadRuntime());
  }

  /** Reads both sets again (SIGHUP). */
  async reload(): Promise<void> {
    await this.declared.reload();
    await this.reloadRuntime();
  }

  /** Reads the runtime store again; reads run one at a time, in order. */
  reloadRuntime(): Promise<void> {
    this.queue = this.queue.then(() => this.reloadRuntimeNow());
    return this.queue;
  }

  private async reloadRuntimeNow(): Promise<void> {
    if (!this.runtimeStore) return;
    try {
      const records = await this.runtimeStore.load();
      if (this.runtimeError) this.log.info("runtime keys readable again", { store: this.runtimeStore.kind });
      this.runtimeError = null;
      const changed = !this.runtimeLoaded || JSON.stringify(records) !== JSON.stringify(this.runtime);
      this.runtime = records;
      this.runtimeLoaded = true;
      if (changed) {
        this.rebuild();
        if (this.cacheFile)
          await writeFileDurably(this.cacheFile, `${JSON.stringify({ version: 1, records })}\n`).catch(
            (error: unknown) => this.log.warn("runtime key cache not written", { error: errorText(error) }),
          );
      }
    } catch (error) {
      // The keys in force stay as they are: a store that cannot be read never empties them.
      if (this.runtimeError === null)
        this.log.error("runtime keys cannot be read; the last set read stays in force", {
          store: this.runtimeStore.kind,
          error: errorText(error),
        });
      this.runtimeError = errorText(error);
    }
  }

  private async loadCache(): Promise<void> {
    if (!this.cacheFile) return;
    try {
      const doc = JSON.parse(await fsp.readFile(this.cacheFile, "utf8")) as { records?: unknown[] };
      this.runtime = parseRecords(doc.records ?? [], this.log, this.cacheFile);
      this.rebuild();
      this.log.warn("runtime keys taken from the cache until the database answers", {
        file: this.cacheFile,
        records: this.runtime.length,
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT")
        this.log.warn("runtime key cache unreadable", { file: this.cacheFile, error: errorText(error) });
    }
  }

  private rebuild(): void {
    const declared: KeysFile = this.declared.parsed ?? { version: 1, keys: [] };
    // No key at all until one of the two sets was read: every request is refused with 503, as before.
    if (!this.declared.parsed && !this.runtimeLoaded && this.runtime.length === 0) return;
    const merged = mergeKeys(declared, this.runtime);
    for (const conflict of merged.conflicts) {
      if (this.reportedConflicts.has(conflict)) continue;
      this.reportedConflicts.add(conflict);
      this.log.warn("runtime key ignored", { reason: conflict });
    }
    this.merged = merged;
    this.store = new KeyStore(merged.file);
    this.onChanged(this.store);
  }

  status(): KeyRegistryStatus {
    const base = this.declared.status();
    return {
      ...base,
      loaded: this.store !== undefined,
      count: this.store?.size ?? 0,
      declared: this.declared.parsed?.keys.length ?? 0,
      active: this.merged?.file.keys.filter((k) => !k.revoked).length ?? 0,
      runtime: {
        store: this.storeKind,
        loaded: this.runtimeLoaded,
        count: this.runtime.length,
        error: this.runtimeError,
      },
    };
  }

  private requireStore(): RuntimeKeyStore {
    if (!this.runtimeStore)
      throw new KeyAdminError(
        503,
        "This gatekeeper has no runtime key store (neither DATABASE_URL nor GATEKEEPER_STATE_DIR is set); keys can only be declared in the stack's apiKeys.",
      );
    return this.runtimeStore;
  }

  private entryOf(id: string): { entry: KeyEntry; origin: "declared" | "runtime" } {
    const entry = this.merged?.file.keys.find((k) => k.id === id);
    if (!entry) throw new KeyAdminError(404, `No key with id ${id}.`);
    return { entry, origin: this.merged!.origin.get(id) ?? "runtime" };
  }

  /** Writes through the store, then reads it back here at once (other replicas hear it by NOTIFY or the file watch). */
  private async write(
    id: string,
    change: (current: RuntimeRecord | undefined) => RuntimeRecord | undefined,
  ): Promise<RuntimeRecord | undefined> {
    const store = this.requireStore();
    let written: RuntimeRecord | undefined;
    try {
      written = await store.modify(id, change);
    } catch (error) {
      if (error instanceof KeyAdminError) throw error;
      throw new KeyAdminError(
        503,
        `The key store (${store.kind}) cannot be written right now: ${errorText(error)}. Nothing was changed; try again shortly.`,
      );
    }
    await this.reloadRuntime();
    return written;
  }

  async create(
    request: NewKey,
    by: string | null,
    nowMs: number,
    rotatedFrom?: string,
  ): Promise<{ key: string; entry: KeyEntry }> {
    const fresh = newApiKey();
    const entry = keyEntrySchema.parse({
      ...request,
      id: fresh.id,
      sha256: fresh.sha256,
      created: new Date(nowMs).toISOString(),
    });
    await this.write(entry.id, (current) => {
      if (current) throw new KeyAdminError(409, `Key id ${entry.id} exists already; try again.`);
      return { kind: "key", entry, meta: { createdBy: by, ...(rotatedFrom ? { rotatedFrom } : {}) } };
    });
    return { key: fresh.key, entry };
  }

  async revoke(id: string, by: string | null, nowMs: number, rotatedTo?: string): Promise<{ alreadyRevoked: boolean }> {
    const { entry, origin } = this.entryOf(id);
    if (entry.revoked) return { alreadyRevoked: true };
    const at = new Date(nowMs).toISOString();
    await this.write(id, (current) => {
      const meta = { ...(current?.meta ?? {}), revokedAt: at, revokedBy: by, ...(rotatedTo ? { rotatedTo } : {}) };
      if (origin === "declared")
        return {
          kind: "override",
          id,
          revoked: true,
          limits: current?.kind === "override" ? current.limits : {},
          meta,
        };
      if (current?.kind !== "key") throw new KeyAdminError(404, `No runtime key with id ${id}.`);
      return { kind: "key", entry: { ...current.entry, revoked: true }, meta };
    });
    return { alreadyRevoked: false };
  }

  /** A successor with the same name, scopes and limits; the old key is revoked once the new one is stored. */
  async rotate(id: string, by: string | null, nowMs: number): Promise<{ key: string; entry: KeyEntry }> {
    const { entry } = this.entryOf(id);
    if (entry.revoked) throw new KeyAdminError(409, `Key ${id} is revoked; create a new key instead.`);
    const { id: _id, sha256: _sha, created: _created, revoked: _revoked, ...rest } = entry;
    const successor = await this.create(rest, by, nowMs, id);
    await this.revoke(id, by, nowMs, successor.entry.id);
    return successor;
  }

  async setLimits(id: string, limits: Limits, by: string | null): Promise<KeyEntry> {
    const { origin } = this.entryOf(id);
    await this.write(id, (current) => {
      if (origin === "declared") {
        const previous = current?.kind === "override" ? current : undefined;
        return {
          kind: "override",
          id,
          ...(previous?.revoked ? { revoked: true } : {}),
          limits: { ...(previous?.limits ?? {}), ...limits },
          meta: { ...(current?.meta ?? {}) },
        };
      }
      if (current?.kind !== "key") throw new KeyAdminError(404, `No runtime key with id ${id}.`);
      const entry: Record<string, unknown> = { ...current.entry };
      for (const field of LIMIT_FIELDS) {
        if (limits[field] === null) delete entry[field];
        else if (limits[field] !== undefined) entry[field] = limits[field];
      }
      return { kind: "key", entry: keyEntrySchema.parse(entry), meta: current.meta };
    });
    void by;
    return this.entryOf(id).entry;
  }

  /** When each key was last used, as the store knows it (every replica's syncs). */
  async lastUsedFromStore(): Promise<Map<string, number>> {
    return (await this.runtimeStore?.lastUsed()) ?? new Map();
  }

  async close(): Promise<void> {
    this.declared.close();
    await this.queue;
    await this.runtimeStore?.close();
  }
}

/** The runtime-store cache beside the other state. */
export const cacheFileIn = (stateDir: string): string => path.join(stateDir, "runtime-keys-cache.json");
