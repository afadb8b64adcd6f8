import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { LIMIT_MAXIMUMS, SCOPES, type Scope } from "./protocol";
import { partialLimitsSchema } from "../sandbox/protocol";

/**
 * The hub's API keys: the keys file format, key generation, and the in-memory store the
 * gatekeeper looks presented keys up in. Only SHA-256 digests of keys are ever stored.
 */

/** The routes' scopes; `admin` is a scope of its own and implies no other. */
export { SCOPES };
export type { Scope };
export const isScope = (value: string): value is Scope => (SCOPES as readonly string[]).includes(value);

/** Recognisable in logs, shells and secret scanners. */
export const KEY_PREFIX = "ihk_";
/** 32 random bytes in base64url are 43 characters; longer keys (other generators) are accepted. */
export const KEY_PATTERN = /^ihk_[A-Za-z0-9_-]{32,256}$/;
const KEY_RANDOM_BYTES = 32;
const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LENGTH = 8;

export const keyEntrySchema = z.strictObject({
  id: z.string().regex(/^k_[A-Za-z0-9]{4,32}$/, "must look like k_abc12345 (k_ and 4 to 32 letters or digits)"),
  name: z.string().trim().min(1, "must not be empty").max(200),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be the 64 hex digits of sha256(key)"),
  scopes: z.array(z.enum(SCOPES)).min(1, "must list at least one scope"),
  ratePerMinute: z.number().positive().max(LIMIT_MAXIMUMS.keyRatePerMinute).optional(),
  burst: z.number().int().positive().max(LIMIT_MAXIMUMS.keyBurst).optional(),
  /** Allowed requests per UTC day, across every service (usage.ts counts them). */
  dailyQuota: z.number().int().positive().max(LIMIT_MAXIMUMS.keyDailyQuota).optional(),
  /** Seconds a coder request with this key waits for a waking GPU when it does not say (X-Hub-Wait); the stack caps it. */
  waitSeconds: z.number().int().min(0).max(840).optional(),
  /** The most this key's requests may wait, whatever they ask (below the stack's gpuHoldMaxSeconds). */
  maxWaitSeconds: z.number().int().min(0).max(840).optional(),
  revoked: z.boolean().optional(),
  /** This key's ceiling for sandbox executions (docs/sandbox.md), under the sandbox node's own. */
  sandboxLimits: partialLimitsSchema.optional(),
  created: z.iso.datetime({ offset: true }),
});

const keysFileSchema = z.strictObject({
  version: z.literal(1),
  keys: z.array(keyEntrySchema),
});

export type KeyEntry = z.infer<typeof keyEntrySchema>;
export type KeysFile = z.infer<typeof keysFileSchema>;

/** Every problem in a keys file, so one edit can fix them all. */
export class KeysFileError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(
      `Keys file is invalid (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    this.name = "KeysFileError";
  }
}

const pathText = (path: readonly PropertyKey[]): string =>
  path.reduce<string>(
    (text, part) => (typeof part === "number" ? `${text}[${part}]` : `${text}${text ? "." : ""}${String(part)}`),
    "",
  ) || "(file)";

/** Parses and validates a keys file's text; throws KeysFileError listing every problem at once. */
export function parseKeysFile(text: string): KeysFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new KeysFileError([`not valid JSON: ${(error as Error).message}`]);
  }
  const result = keysFileSchema.safeParse(json);
  const problems = result.success
    ? []
    : result.error.issues.map((issue) => `${pathText(issue.path)}: ${issue.message}`);
  // Checked on the raw input too, so duplicates are reported alongside schema problems.
  problems.push(...duplicateProblems(json));
  if (problems.length > 0 || !result.success) throw new KeysFileError(problems);
  return result.data;
}

function duplicateProblems(json: unknown): string[] {
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) return [];
  const problems: string[] = [];
  for (const field of ["id", "sha256"] as const) {
    const firstIndex = new Map<string, number>();
    keys.forEach((entry: unknown, index) => {
      const raw = (entry as Record<string, unknown> | null)?.[field];
      if (typeof raw !== "string") return;
      const value = field === "sha256" ? raw.toLowerCase() : raw;
      const first = firstIndex.get(value);
      if (first === undefined) firstIndex.set(value, index);
      else
        problems.push(
          `keys[${index}].${field}: duplicates keys[${first}].${field}; each key needs its own ${field === "id" ? "id" : "key"}`,
        );
    });
  }
  return problems;
}

export const sha256Hex = (key: string): string => createHash("sha256").update(key, "utf8").digest("hex");

function randomId(): string {
  // Rejection sampling keeps the 36 characters equally likely.
  let id = "";
  while (id.length < ID_LENGTH) {
    for (const byte of randomBytes(ID_LENGTH * 2)) {
      if (byte < 252 && id.length < ID_LENGTH) id += ID_ALPHABET[byte % ID_ALPHABET.length];
    }
  }
  return id;
}

export interface NewApiKey {
  /** The secret, shown once to its owner; never stored. */
  readonly key: string;
  /** Public handle for logs, audit rows and revocation; unrelated to the secret. */
  readonly id: string;
  readonly sha256: string;
}

export function newApiKey(): NewApiKey {
  const key = `${KEY_PREFIX}${randomBytes(KEY_RANDOM_BYTES).toString("base64url")}`;
  return { key, id: `k_${randomId()}`, sha256: sha256Hex(key) };
}

/** A key as the gatekeeper uses it. */
export interface ApiKey {
  readonly id: string;
  readonly name: string;
  readonly scopes: ReadonlySet<Scope>;
  readonly ratePerMinute?: number;
  readonly burst?: number;
  readonly dailyQuota?: number;
  readonly waitSeconds?: number;
  readonly maxWaitSeconds?: number;
  readonly revoked: boolean;
  readonly digest: Buffer;
  /** Sent to the sandbox (X-Hub-Sandbox-Limits) on its allowed requests: this key's ceiling, as compact JSON. */
  readonly sandboxLimits: string;
}

/** Immutable snapshot of one keys file: a reload builds a new store and swaps the reference. */
export class KeyStore {
  private readonly byDigestHex: ReadonlyMap<string, ApiKey>;
  private readonly keyIds: ReadonlySet<string>;

  constructor(file: KeysFile) {
    const map = new Map<string, ApiKey>();
    for (const entry of file.keys) {
      const hex = entry.sha256.toLowerCase();
      map.set(hex, {
        id: entry.id,
        name: entry.name,
        scopes: new Set(entry.scopes),
        ratePerMinute: entry.ratePerMinute,
        burst: entry.burst,
        dailyQuota: entry.dailyQuota,
        waitSeconds: entry.waitSeconds,
        maxWaitSeconds: entry.maxWaitSeconds,
        revoked: entry.revoked === true,
        digest: Buffer.from(hex, "hex"),
        sandboxLimits: JSON.stringify(entry.sandboxLimits ?? {}),
      });
    }
    this.byDigestHex = map;
    this.keyIds = new Set(file.keys.map((entry) => entry.id));
  }

  /** Whether `id` is the public id of a key in this file (revoked ones included). */
  hasId(id: string): boolean {
    return this.keyIds.has(id);
  }

  get size(): number {
    return this.byDigestHex.size;
  }

  ids(): string[] {
    return [...this.keyIds];
  }

  /** The key whose digest matches the presented key's, or undefined. */
  find(presentedKey: string): ApiKey | undefined {
    const digest = createHash("sha256").update(presentedKey, "utf8").digest();
    const candidate = this.byDigestHex.get(digest.toString("hex"));
    // The map lookup is on a digest, which tells an attacker nothing about the key; the final
    // comparison is constant-time anyway, so no code path compares secrets byte by byte.
    return candidate && timingSafeEqual(candidate.digest, digest) ? candidate : undefined;
  }
}
