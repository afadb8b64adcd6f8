import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { formatProblem, MAX_KEY_CHARS, MAX_TEXT_CHARS, MAX_VALUE_CHARS, presentableProblem } from "../stacks/problems";
import { loadText, ROOT } from "./helpers/load";

const DIR = path.join(ROOT, "test/fixtures/bad-stacks");
const cases = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("bad stack files are refused with the offending key", () => {
  it("has a corpus of at least 15 kinds of mistake", () => {
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });

  for (const file of cases) {
    it(file, () => {
      const text = readFileSync(path.join(DIR, file), "utf8");
      const expected = /^# expect: (.+)$/m
        .exec(text)?.[1]
        .split(",")
        .map((k) => k.trim());
      expect(expected, `${file} needs a '# expect: <key>' line`).toBeDefined();
      const result = loadText(text);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      const keys = result.problems.flatMap((p) => p.keys);
      for (const key of expected ?? []) expect(keys, JSON.stringify(result.problems, null, 1)).toContain(key);
      for (const p of result.problems) {
        // Each problem says why and what would work, in words, not as a stack trace.
        expect(p.message.length).toBeGreaterThan(10);
        expect(p.fix.length).toBeGreaterThan(5);
        expect(`${p.message} ${p.fix}`).not.toMatch(/\n\s+at /);
      }
    });
  }
});

describe("every problem in a stack is reported at once", () => {
  it("reports a bad tier, a typo'd key and an over-budget GPU together", () => {
    const result = loadText(`config:
  inference-hub:tier: gpu
  inference-hub:gpuCount: many
  inference-hub:llmModle: x
  inference-hub:budgetUsd: 100
  inference-hub:region: nyc3
`);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const keys = result.problems.flatMap((p) => p.keys);
    expect(keys).toEqual(expect.arrayContaining(["gpuCount", "llmModle", "gpuSize", "region"]));
  });

  it("suggests the closest key for a typo", () => {
    const result = loadText("config:\n  inference-hub:llmModle: qwen2.5-coder-7b\n");
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems[0].fix).toContain("Did you mean llmModel?");
  });

  it("ignores other namespaces such as the provider's", () => {
    expect(loadText("config:\n  inference-hub:tier: cpu\n  digitalocean:token:\n    secure: AAABAxyz\n").ok).toBe(true);
  });
});

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuyQ81UZv1fAG2JQpBPA7H1YrqCLHPTl3RuwgPR2Dhb me@laptop";

describe("keys are read the way the Pulumi CLI reads them", () => {
  const accepted = (text: string) => {
    const r = loadText(text);
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    return r;
  };

  it("takes a key without the namespace as the project's (loaders.go stackConfigNamespacedWithProject)", () => {
    expect(accepted("config:\n  tier: hybrid\n  gpuEnabled: true\n").config.gpu?.on).toBe(true);
  });

  it("takes the older <project>:config:<key> form (key.go ParseKey)", () => {
    const r = accepted("config:\n  inference-hub:config:tier: hybrid\n  inference-hub:config:gpuEnabled: true\n");
    expect(r.config.tier).toBe("hybrid");
    expect(r.overrides.gpuEnabled).toBe(true);
  });

  it("takes integers the way strconv.Atoi does: quoted, or with a sign", () => {
    expect(
      accepted('config:\n  inference-hub:tier: gpu\n  inference-hub:gpuCount: "2"\n  inference-hub:budgetUsd: +6000\n')
        .config.gpu?.count,
    ).toBe(2);
  });

  it("warns about, but accepts, one key written twice with the same value", () => {
    const r = accepted("config:\n  tier: cpu\n  inference-hub:tier: cpu\n");
    expect(r.config.warnings.map((w) => w.keys)).toContainEqual(["tier"]);
  });

  it("warns about a namespace nothing reads (pulumi up ignores it), with the key it probably meant", () => {
    const r = accepted("config:\n  inference-hub:tier: cpu\n  inference-hb:gpuSize: gpu-l40sx1-48gb\n");
    const w = r.config.warnings.find((x) => x.keys[0] === "inference-hb:gpuSize");
    expect(w?.message).toContain("Did you mean inference-hub:gpuSize?");
  });

  it("reads a stack file with a byte-order mark (loaders.go readFileStripUTF8BOM)", () => {
    expect(accepted("\uFEFFconfig:\n  inference-hub:tier: cpu\n").config.tier).toBe("cpu");
  });

  it("accepts real SSH keys and IPv6 networks", () => {
    const r = accepted(
      `config:\n  inference-hub:tier: cpu\n  inference-hub:sshPublicKey: ${ED25519}\n  inference-hub:adminCidrs: ["2001:db8::/48", "203.0.113.7/32"]\n`,
    );
    expect(r.config.gateway.adminCidrs).toHaveLength(2);
  });
});

describe("refusals never print what may be a secret, and stay short", () => {
  const refusalText = (text: string) => {
    const r = loadText(text);
    expect(r.ok).toBe(false);
    return r.ok ? "" : r.problems.map(formatProblem).join("\n") + JSON.stringify(r.problems.map(presentableProblem));
  };

  it("hides values of near-misses of secret settings and of every unknown key", () => {
    const text = refusalText(
      "config:\n  inference-hub:hubApiKye: MARK-1\n  inference-hub:sshprivatekey: MARK-2\n  inference-hub:config:auditDatabaseUrl: MARK-3\n  inference-hub:dbPassword: MARK-4\n",
    );
    expect(text).not.toContain("MARK-");
    expect(text).toContain("Did you mean hubApiKey?");
    expect(text).toContain("Did you mean sshPrivateKey?");
  });

  it("hides credentials pasted into an ordinary setting, wherever they sit", () => {
    const pem = "-----BEGIN OPENSSH PRIVATE KEY-----\\nMARK-5\\n-----END OPENSSH PRIVATE KEY-----";
    const text = refusalText(
      `config:\n  inference-hub:sshPublicKey: "${pem}"\n  inference-hub:llmModel: ihk_MARK6abcdefghijklmnop\n  inference-hub:gpuWindows: ["postgres://u:MARK-7@db/x"]\n`,
    );
    expect(text).not.toContain("MARK");
    expect(text).toContain("is a private key");
  });

  it("repeats at most a short prefix of a 1 MiB value, and bounds the did-you-mean work on a 1 MiB key", {
    timeout: 10_000,
  }, () => {
    const huge = "x".repeat(1 << 20);
    const r = loadText(`config:\n  inference-hub:llmModel: ${huge}\n  ? inference-hub:${huge}\n  : y\n`);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    for (const p of r.problems)
      expect(formatProblem(p).length).toBeLessThan(MAX_TEXT_CHARS * 2 + MAX_VALUE_CHARS + MAX_KEY_CHARS * 2);
    expect(JSON.stringify(r.problems.map(presentableProblem)).length).toBeLessThan(5000);
  });

  it("names the key as written when the setting name is empty", () => {
    const r = loadText('config:\n  "inference-hub:": x\n');
    expect(!r.ok && r.problems.map((p) => p.keys)).toEqual([["inference-hub:"]]);
  });
});

describe("settings a tier ignores", () => {
  it("warns about a gpuSize no tier could use on the cpu tier, and refuses it on a GPU tier", () => {
    const cpu = loadText("config:\n  inference-hub:tier: cpu\n  inference-hub:gpuSize: banana\n");
    expect(cpu.ok && cpu.config.warnings.find((w) => w.keys.includes("gpuSize"))?.message).toContain(
      "is not a GPU size",
    );
    expect(loadText("config:\n  inference-hub:tier: gpu\n  inference-hub:gpuSize: banana\n").ok).toBe(false);
  });

  it("warns when adminCidrs admits every address", () => {
    const r = loadText('config:\n  inference-hub:tier: cpu\n  inference-hub:adminCidrs: ["0.0.0.0/0"]\n');
    const ssh = r.ok ? r.config.warnings.filter((w) => w.keys.includes("adminCidrs")) : [];
    // One warning, naming the entry that opens SSH to the world.
    expect(ssh).toHaveLength(1);
    expect(ssh[0].message).toMatch(/open to the whole internet.*0\.0\.0\.0\/0/);
  });
});
