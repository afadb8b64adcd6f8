import fc from "fast-check";
import { parseDocument, stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { planFromText, PlanResult } from "../cli/plan/runner";
import { renderFailure } from "../cli/plan/view";
import { GPU_SIZES, REGIONS } from "../stacks/catalogue/droplets";
import { MODELS } from "../stacks/catalogue/models";
import { loadStackFile } from "../stacks";
import { parseStackKey, readStackFile } from "../stacks/load";
import { MAX_KEY_CHARS, MAX_TEXT_CHARS, MAX_VALUE_CHARS, presentableProblem } from "../stacks/problems";
import { OCR_ENGINES, PROJECT, QUANTIZATIONS, SECRET_SETTINGS, SETTING_NAMES, TIERS } from "../stacks/settings";

/**
 * Property-based fuzzing of the config path (issue 10): random stack files, hostile and careless,
 * through the same code `npm run plan` runs. Seeded and bounded; FUZZ_SEED / FUZZ_RUNS explore
 * further locally (e.g. FUZZ_RUNS=20000).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const RUNS = Number(process.env.FUZZ_RUNS ?? 2500);
/** Accepted stacks planned end to end (about a second each). */
const FULL_PLANS = Number(process.env.FUZZ_FULL_PLANS ?? 10);

/** Put only where a value may be a secret; a refusal must never show it. */
const MARK = "FUZZSECRET";
const SECRET_NAMES = Object.keys(SECRET_SETTINGS);
const FILE_MARKERS = new Set(["(file)", "config"]);

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuyQ81UZv1fAG2JQpBPA7H1YrqCLHPTl3RuwgPR2Dhb fuzz@inference-hub";
const ECDSA =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGLD1TaXWJ4ItbQQ2EluiqWc+aX0+K7MjaLpl+Izf/8y90jw1tOZ5coBadsHnxxQthhy7zY/DpL80uq577Zj7jg= ec@hub";
const RSA_768 =
  "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAYQDWop/TGn5U4KzD2Vkqbdw3zYTfTvwayk66ucEV3hSl8wB/b7g+cVEd7eWfekrJ3k7kg/Zg/zQiZ/HyzIh1Dd4bZjlgxnh2ofYhBPiJ3oIpXM0c2oE1udaGi4BubeVS3S8= small@hub";

/** Credentials in every shape the refusal code knows, each carrying the marker. */
const credential = fc.constantFrom(
  `-----BEGIN OPENSSH PRIVATE KEY-----\n${MARK}-pem\n-----END OPENSSH PRIVATE KEY-----`,
  `ihk_${MARK}abcdefghijklmnopqrstuvwxyz0123456789`,
  `postgres://audit:${MARK}-pw@db.example.com:5432/audit`,
);
const ciphertext = fc.string({ maxLength: 12 }).map((s) => ({ secure: `v1:${MARK}${s}` }));

/** Values that pass or nearly pass each setting's checks. */
const coders = MODELS.filter((m) => m.role === "coder").map((m) => m.id);
const VALID: Record<string, fc.Arbitrary<unknown>> = {
  tier: fc.constantFrom(...TIERS),
  region: fc.constantFrom("tor1", "nyc2", "atl1", "ams3"),
  cpuSize: fc.constantFrom("c-4", "c-8", "c-16", "s-8vcpu-16gb"),
  cpuCacheGiB: fc.constantFrom(25, 50, "40"),
  gpuSize: fc.constantFrom(...GPU_SIZES.map((g) => g.slug)),
  gpuCount: fc.constantFrom(1, 2, "1"),
  gpuEnabled: fc.constantFrom(true, false, "true"),
  gpuHoursPerMonth: fc.constantFrom(20, 40, 100),
  gpuWindows: fc.constantFrom(
    ["mon-fri 08:00-18:00 Europe/Berlin"],
    ["sun-sat 00:00-24:00 UTC", "sun-sat 00:00-24:00 Etc/UTC"],
    ["sat,sun 10:00-14:00 America/New_York", "sat 12:00-13:00 utc"],
  ),
  modelCacheGiB: fc.constantFrom(100, 200, 900),
  llmModel: fc.constantFrom(...coders),
  llmQuantization: fc.constantFrom(...QUANTIZATIONS),
  llmMaxContext: fc.constantFrom(4096, 8192, 16384, 32768),
  llmGpuMemoryPercent: fc.constantFrom(60, 70, 90),
  ocrEngine: fc.constantFrom(...OCR_ENGINES),
  ocrCpuFallback: fc.boolean(),
  sttModel: fc.constantFrom("base", "small", "tiny"),
  fallbackModel: fc.constantFrom("none", "qwen2.5-coder-1.5b"),
  adminCidrs: fc.constantFrom(["203.0.113.7/32"], ["2001:db8::/48", "198.51.100.0/24"]),
  rateLimitPerMinute: fc.constantFrom(60, 600),
  budgetUsd: fc.constantFrom(1000, 5000, 30000),
  sshPublicKey: fc.constantFrom(ED25519, ECDSA),
  sshKeyFingerprints: fc.constantFrom(["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"], ["12345"]),
};
const validSettings = Object.keys(VALID);

/** A known setting's name as a stack file may spell it: bare, namespaced, or the older config: form. */
const spelled = (name: string) => fc.constantFrom(name, `${PROJECT}:${name}`, `${PROJECT}:config:${name}`);

/** Near misses: one edit, or a case change. */
const nearMiss = (names: readonly string[]) =>
  fc
    .tuple(fc.constantFrom(...names), fc.nat(), fc.constantFrom("drop", "swap", "case", "add"))
    .map(([n, i, how]) => {
      const at = i % n.length;
      if (how === "drop") return n.slice(0, at) + n.slice(at + 1);
      if (how === "swap" && at + 1 < n.length) return n.slice(0, at) + n[at + 1] + n[at] + n.slice(at + 2);
      if (how === "case") return n.toLowerCase() === n ? n.toUpperCase() : n.toLowerCase();
      return `${n.slice(0, at)}x${n.slice(at)}`;
    })
    // Swapping "tt" in ttsModel changes nothing: a near miss must not be a real name.
    .filter((n) => !(SETTING_NAMES as readonly string[]).includes(n) && !SECRET_NAMES.includes(n));

const JS_NAMES = [
  "toString",
  "constructor",
  "__proto__",
  "valueOf",
  "hasOwnProperty",
  "isPrototypeOf",
  "__defineGetter__",
  "propertyIsEnumerable",
];

/** Every kind of key, with the kind deciding whether its value may be a secret. */
type Entry = { key: string; value: unknown };
const secretish = fc.oneof(fc.constant(MARK), credential, fc.constant(`${MARK}-plain-${"z".repeat(20)}`));
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null)), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
  fc.constant("x".repeat(200_000)),
  fc.constantFrom(
    "10.0.0.0/99",
    "fffff::/128",
    "010.0.0.0/8",
    "ssh-rsa AAAA",
    `${ED25519}\nssh-rsa AAAA`,
    RSA_768,
    "banana",
    "mon-tue-wed 08:00-09:00 UTC",
    "+7",
    " 7",
    "0x10",
    "constructor",
    "toString",
  ),
);
const hostileEntry: fc.Arbitrary<Entry> = fc.oneof(
  // Known settings: their values are not secret, but credentials pasted into them are.
  fc.record({
    key: fc.constantFrom(...SETTING_NAMES).chain(spelled),
    value: fc.oneof(anyValue, credential, ...validSettings.map((n) => VALID[n])),
  }),
  // Secret settings, in the clear or encrypted, well-formed or not.
  fc.record({
    key: fc.constantFrom(...SECRET_NAMES).chain(spelled),
    value: fc.oneof(
      secretish,
      ciphertext,
      fc.array(ciphertext, { maxLength: 2 }),
      fc.constant({ secure: `v1:${MARK}`, other: 1 }),
    ),
  }),
  // Unknown keys of every kind: a value under one may be anything, a password included.
  fc.record({
    key: fc.oneof(nearMiss(SECRET_NAMES), nearMiss(SETTING_NAMES), fc.constantFrom(...JS_NAMES)).chain(spelled),
    value: fc.oneof(secretish, ciphertext),
  }),
  fc.record({
    key: fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom(
        "",
        `${PROJECT}:`,
        ":tier",
        `${PROJECT}:a:b`,
        "a:config:b",
        "x:y:z:w",
        "config:tier",
        "inference-hb:tier",
        "pulumi:tags",
        `${PROJECT}:${"k".repeat(100_000)}`,
      ),
    ),
    value: fc.oneof(secretish, ciphertext),
  }),
  // Provider config: passed through, never shown.
  fc.record({
    key: fc.constantFrom("digitalocean:token", "docker:host", "random:x"),
    value: fc.oneof(ciphertext, secretish),
  }),
);

/** A stack file built from entries, as YAML (long keys come out as explicit `? key`). */
const toYaml = (entries: readonly Entry[]) =>
  stringify({ config: new Map(entries.map((e) => [e.key, e.value])) }, { lineWidth: 0 });

const hostileFile = fc.oneof(
  { weight: 12, arbitrary: fc.array(hostileEntry, { maxLength: 8 }).map(toYaml) },
  // Files that are not stack files at all.
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom(
        "config: [1, 2]",
        "config: x",
        "- a\n- b",
        "config:\n  a: [",
        "config:\n  1: x\n",
        "a: &x [*x]",
        "\uFEFFconfig:\n  tier: cpu\n",
        "config:\n  tier: cpu\n---\nconfig: {}\n",
      ),
    ),
  },
);

/** Mostly valid stacks: a tier and a few overrides, keys in any spelling, secrets encrypted. */
const carefulFile = fc
  .tuple(
    fc.constantFrom(...TIERS),
    fc
      .uniqueArray(fc.constantFrom(...validSettings.filter((n) => n !== "tier")), { maxLength: 4 })
      .chain((names) => fc.tuple(...names.map((n) => fc.tuple(spelled(n), VALID[n])))),
    fc.subarray(SECRET_NAMES),
    fc.constantFrom(...REGIONS),
  )
  .map(([tier, overrides, secrets, region]) => {
    const entries: Entry[] = [{ key: `${PROJECT}:tier`, value: tier }];
    for (const [key, value] of overrides) entries.push({ key, value: key.endsWith("region") ? region : value });
    for (const s of secrets) entries.push({ key: `${PROJECT}:${s}`, value: { secure: `v1:${MARK}-${s}` } });
    return toYaml(entries);
  });

/** The keys a problem may name: settings, the file itself, or keys as the file wrote them (capped like refusals cap them). */
function allowedKeys(text: string): Set<string> {
  const allowed = new Set<string>([...SETTING_NAMES, ...SECRET_NAMES, ...FILE_MARKERS]);
  let config: unknown;
  try {
    config = (
      parseDocument(text.replace(/^\uFEFF/, ""), { merge: true }).toJS({ mapAsMap: true }) as Map<
        unknown,
        unknown
      > | null
    )?.get?.("config");
  } catch {
    return allowed;
  }
  if (!(config instanceof Map)) return allowed;
  for (const rawKey of config.keys()) {
    const key = String(rawKey);
    const parsed = parseStackKey(key);
    for (const k of [key, parsed?.name ?? key])
      allowed.add(presentableProblem({ keys: [k], message: "", fix: "" }).keys[0]);
  }
  return allowed;
}

/** The longest line a refusal may print: key list + capped value + capped message and fix. */
const MAX_LINE = 4 * MAX_KEY_CHARS + MAX_VALUE_CHARS + 2 * MAX_TEXT_CHARS + 64;

function checkRefusal(text: string, result: Extract<PlanResult, { ok: false }>): void {
  const doc = result.document;
  expect(doc.problems.length).toBeGreaterThan(0);
  const allowed = allowedKeys(text);
  for (const p of doc.problems) {
    expect(p.keys.length, JSON.stringify(p)).toBeGreaterThan(0);
    for (const k of p.keys)
      expect(
        allowed.has(k),
        `problem key ${JSON.stringify(k)} is neither a setting nor a key of the file:\n${text.slice(0, 2000)}`,
      ).toBe(true);
    expect(p.message.length).toBeGreaterThan(5);
  }
  const rendered = renderFailure(doc);
  const json = JSON.stringify(doc);
  expect(rendered).not.toContain(MARK);
  expect(json).not.toContain(MARK);
  expect(rendered).not.toMatch(/refused: 0 problems/);
  for (const line of rendered.split("\n")) expect(line.length).toBeLessThan(MAX_LINE);
}

describe("config fuzz (fast-check, seeded)", () => {
  const accepted: string[] = [];

  it(`${RUNS} hostile and careless stack files: no exception, refusals name real keys, never print a secret, stay bounded`, {
    timeout: 600_000,
  }, async () => {
    let refusedCount = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(hostileFile, carefulFile), async (text) => {
        // The checks alone, as planFromText runs them first; accepted files are planned below.
        const file = readStackFile(text, "Pulumi.fuzz.yaml");
        const loaded = file.ok ? loadStackFile(file.file) : undefined;
        if (loaded?.ok) {
          accepted.push(text);
          expect(JSON.stringify(loaded.config.warnings)).not.toContain(MARK);
          return;
        }
        refusedCount++;
        // A refusal never reaches the program, so this is the document `npm run plan` prints.
        const result = await planFromText("fuzz", "Pulumi.fuzz.yaml", text);
        expect(result.ok).toBe(false);
        if (!result.ok) checkRefusal(text, result);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    // The generators must reach both sides, or the properties say little.
    expect(refusedCount).toBeGreaterThan(RUNS / 4);
    expect(accepted.length).toBeGreaterThan(FULL_PLANS);
  });

  it(`a bounded sample of the accepted stack files plans end to end (${FULL_PLANS}, spread over the run)`, {
    timeout: 600_000,
  }, async () => {
    expect(accepted.length).toBeGreaterThan(0);
    const step = Math.max(1, Math.floor(accepted.length / FULL_PLANS));
    const sample = accepted.filter((_, i) => i % step === 0).slice(0, FULL_PLANS);
    for (const text of sample) {
      const result = await planFromText("fuzz", "Pulumi.fuzz.yaml", text);
      expect(result.ok, result.ok ? "" : renderFailure(result.document)).toBe(true);
      if (!result.ok) continue;
      expect(result.document.resources.length).toBeGreaterThan(0);
      expect(JSON.stringify(result.document)).not.toContain(MARK);
    }
  });
});
