import { z } from "zod";
import { type KeyEntry, keyEntrySchema, type KeysFile } from "./keys";
import { LIMIT_MAXIMUMS } from "./protocol";

/**
 * The keys in force are two sets merged: the declared (bootstrap) set, the stack's `apiKeys`
 * written by every deploy, and the runtime set, created through the admin API and kept where a
 * deploy never writes (PostgreSQL, or the gatekeeper's state on the CPU cache volume).
 *
 * On a conflict:
 * - what a key IS (its hash, name, scopes) comes from the declaration: a deploy can never lose or
 *   alter a declared key, and a runtime entry with a declared id or hash is ignored;
 * - a revocation from either side holds: a revoked key stays revoked whatever a deploy writes,
 *   until the operator removes the declaration itself;
 * - limits set at runtime (rate, burst, daily quota) win over the declared ones: the admin API is
 *   where they are tuned live, and a deploy does not undo that.
 */

/** Limits the admin API may change on any key, declared or not. */
export const limitsSchema = z.strictObject({
  ratePerMinute: z.number().positive().max(LIMIT_MAXIMUMS.keyRatePerMinute).nullable().optional(),
  burst: z.number().int().positive().max(LIMIT_MAXIMUMS.keyBurst).nullable().optional(),
  dailyQuota: z.number().int().positive().max(LIMIT_MAXIMUMS.keyDailyQuota).nullable().optional(),
});
export type Limits = z.infer<typeof limitsSchema>;
export const LIMIT_FIELDS = ["ratePerMinute", "burst", "dailyQuota"] as const;

/** Who did what when: kept beside each runtime entry, never a key. */
const changeSchema = z.strictObject({
  revokedAt: z.iso.datetime({ offset: true }).optional(),
  revokedBy: z.string().max(40).nullable().optional(),
  createdBy: z.string().max(40).nullable().optional(),
  /** A rotation names the key it replaced, and the replaced one its successor. */
  rotatedFrom: z.string().max(40).optional(),
  rotatedTo: z.string().max(40).optional(),
});

/** A key created at runtime: a keys-file entry (the same schema) and its history. */
export const runtimeKeySchema = z.strictObject({ kind: z.literal("key"), entry: keyEntrySchema, meta: changeSchema });
/** A change to a declared key: its revocation and its limits. `null` limit: back to the declared one. */
export const overrideSchema = z.strictObject({
  kind: z.literal("override"),
  id: z.string().max(40),
  revoked: z.boolean().optional(),
  limits: limitsSchema,
  meta: changeSchema,
});

export const runtimeRecordSchema = z.discriminatedUnion("kind", [runtimeKeySchema, overrideSchema]);
export type RuntimeRecord = z.infer<typeof runtimeRecordSchema>;
export type RuntimeKey = z.infer<typeof runtimeKeySchema>;
export type Override = z.infer<typeof overrideSchema>;

/** Where a key in force came from, for the list and the status. */
export type KeyOrigin = "declared" | "runtime";

export interface MergedKeys {
  readonly file: KeysFile;
  readonly origin: ReadonlyMap<string, KeyOrigin>;
  readonly meta: ReadonlyMap<string, z.infer<typeof changeSchema>>;
  /** Runtime entries that clash with a declaration (logged; the declaration wins). */
  readonly conflicts: readonly string[];
}

const recordId = (r: RuntimeRecord): string => (r.kind === "key" ? r.entry.id : r.id);

function applyLimits(entry: KeyEntry, limits: Limits | undefined): KeyEntry {
  if (!limits) return entry;
  const out: Record<string, unknown> = { ...entry };
  for (const field of LIMIT_FIELDS) {
    const value = limits[field];
    if (value === null) delete out[field];
    else if (value !== undefined) out[field] = value;
  }
  return out as KeyEntry;
}

export function mergeKeys(declared: KeysFile, runtime: readonly RuntimeRecord[]): MergedKeys {
  const byId = new Map(runtime.map((r) => [recordId(r), r]));
  const declaredIds = new Set(declared.keys.map((k) => k.id));
  const declaredHashes = new Set(declared.keys.map((k) => k.sha256.toLowerCase()));
  const origin = new Map<string, KeyOrigin>();
  const meta = new Map<string, z.infer<typeof changeSchema>>();
  const conflicts: string[] = [];
  const keys: KeyEntry[] = [];
  for (const entry of declared.keys) {
    const change = byId.get(entry.id);
    let merged = entry;
    if (change?.kind === "override") {
      merged = applyLimits(entry, change.limits);
      if (change.revoked) merged = { ...merged, revoked: true };
      meta.set(entry.id, change.meta);
    } else if (change?.kind === "key") {
      // The same id created at runtime (or the entry copied into apiKeys): the declaration is the key; a revocation still holds.
      if (change.entry.revoked) merged = { ...merged, revoked: true };
      meta.set(entry.id, change.meta);
    }
    keys.push(merged);
    origin.set(entry.id, "declared");
  }
  for (const record of runtime) {
    if (record.kind !== "key") continue;
    const { entry } = record;
    if (declaredIds.has(entry.id)) continue;
    if (declaredHashes.has(entry.sha256.toLowerCase())) {
      conflicts.push(`runtime key ${entry.id} has the hash of a declared key; the declared one is in force`);
      continue;
    }
    keys.push(entry);
    origin.set(entry.id, "runtime");
    meta.set(entry.id, record.meta);
  }
  return { file: { version: 1, keys }, origin, meta, conflicts };
}
