import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { mergeKeys, type RuntimeRecord } from "../programs/gatekeeper/key-merge";
import { FileKeyStore } from "../programs/gatekeeper/key-store";
import { type KeyEntry, newApiKey } from "../programs/gatekeeper/keys";
import { silentLogger } from "../programs/gatekeeper/log";
import { secondsToNextUtcDay, UsageCounter } from "../programs/gatekeeper/usage";

/** The merge of declared and runtime keys (who wins on a conflict), the file store, and the daily counts. */

const entry = (name: string, extra: Partial<KeyEntry> = {}): KeyEntry => {
  const k = newApiKey();
  return { id: k.id, name, sha256: k.sha256, scopes: ["llm"], created: "2026-12-01T00:00:00Z", ...extra };
};

describe("declared and runtime keys merged", () => {
  it("a runtime key joins the declared ones; a runtime entry with a declared id or hash is ignored and reported", () => {
    const declared = entry("declared");
    const runtime = entry("runtime");
    const sameHash = { ...entry("copy"), sha256: declared.sha256 };
    const sameId = { ...entry("impostor", { scopes: ["admin"] }), id: declared.id };
    const merged = mergeKeys({ version: 1, keys: [declared] }, [
      { kind: "key", entry: runtime, meta: {} },
      { kind: "key", entry: sameHash, meta: {} },
      { kind: "key", entry: sameId, meta: {} },
    ]);
    expect(merged.file.keys.map((k) => k.name)).toEqual(["declared", "runtime"]);
    // The declaration decides what the key is: not the admin scope the runtime copy claimed.
    expect(merged.file.keys[0].scopes).toEqual(["llm"]);
    expect(merged.origin.get(runtime.id)).toBe("runtime");
    expect(merged.conflicts).toEqual([
      `runtime key ${sameHash.id} has the hash of a declared key; the declared one is in force`,
    ]);
  });

  it("a revocation from either side holds; runtime limits win over declared ones, and null goes back to the declared value", () => {
    const declared = entry("declared", { ratePerMinute: 10, dailyQuota: 100 });
    const revokedByDeploy = entry("revoked in apiKeys", { revoked: true });
    const records: RuntimeRecord[] = [
      {
        kind: "override",
        id: declared.id,
        revoked: true,
        limits: { ratePerMinute: 60, dailyQuota: null },
        meta: { revokedAt: "2026-12-07T10:00:00Z" },
      },
      // A runtime record cannot un-revoke what the declaration revoked.
      { kind: "override", id: revokedByDeploy.id, revoked: false, limits: {}, meta: {} },
    ];
    const merged = mergeKeys({ version: 1, keys: [declared, revokedByDeploy] }, records);
    expect(merged.file.keys[0]).toMatchObject({ revoked: true, ratePerMinute: 60 });
    expect(merged.file.keys[0].dailyQuota).toBeUndefined();
    expect(merged.file.keys[1].revoked).toBe(true);
    // The deploy drops the declaration: the override has nothing to apply to, and no key appears.
    expect(mergeKeys({ version: 1, keys: [] }, records).file.keys).toEqual([]);
  });
});

describe("the state directory store", () => {
  it("writes atomically, mode 600, keeps records across instances, and refuses nothing it can read back", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "keys-state-"));
    const a = await FileKeyStore.open(dir, silentLogger);
    const b = await FileKeyStore.open(dir, silentLogger);
    const one = entry("one");
    const two = entry("two");
    // Two writers at once: the lock file serialises them, neither write is lost.
    await Promise.all([
      a.modify(one.id, () => ({ kind: "key", entry: one, meta: {} })),
      b.modify(two.id, () => ({ kind: "key", entry: two, meta: {} })),
    ]);
    expect((await a.load()).map((r) => (r.kind === "key" ? r.entry.name : "")).sort()).toEqual(["one", "two"]);
    expect(statSync(path.join(dir, "keys.json")).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dir, "keys.json"), "utf8")).not.toMatch(/ihk_/);
    const totals = await a.addUsage("2026-12-07", new Map([[one.id, { requests: 3, lastUsedMs: 1000 }]]));
    const again = await b.addUsage("2026-12-07", new Map([[one.id, { requests: 2, lastUsedMs: 2000 }]]));
    expect(totals.get(one.id)?.requests).toBe(3);
    expect(again.get(one.id)).toEqual({ requests: 5, lastUsedMs: 2000 });
    // A new day starts from zero; when the key was last used carries over.
    expect((await a.addUsage("2026-12-08", new Map())).get(one.id)).toBeUndefined();
    expect((await a.lastUsed()).get(one.id)).toBe(2000);
  });
});

describe("daily counts", () => {
  it("count this replica's requests at once and everyone's after a sync; a failed sync keeps its counts", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "keys-usage-"));
    const store = await FileKeyStore.open(dir, silentLogger);
    const now = Date.parse("2026-12-07T23:59:58Z");
    const mine = new UsageCounter(store, silentLogger, now);
    const other = new UsageCounter(store, silentLogger, now);
    mine.record("k_aaaa1111", now);
    other.record("k_aaaa1111", now);
    other.record("k_aaaa1111", now);
    expect(mine.used("k_aaaa1111", now)).toBe(1);
    await other.sync(now);
    await mine.sync(now);
    expect(mine.used("k_aaaa1111", now)).toBe(3);
    const broken = new UsageCounter(
      { ...store, addUsage: async () => Promise.reject(new Error("down")) } as unknown as FileKeyStore,
      silentLogger,
      now,
    );
    broken.record("k_bbbb2222", now);
    await broken.sync(now);
    expect(broken.used("k_bbbb2222", now)).toBe(1);
    // Midnight UTC: a new day, a fresh quota.
    expect(mine.used("k_aaaa1111", now + 3000)).toBe(0);
    expect(secondsToNextUtcDay(now)).toBe(2);
  });
});
