import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { escCli } from "../cli/plan/esc";
import { planFromText } from "../cli/plan/runner";
import { readStackFile } from "../stacks";
import { SECRET_SETTINGS, SETTING_NAMES } from "../stacks/settings";
import { runScriptToEnd } from "./helpers/cli";

const dir = mkdtempSync(path.join(tmpdir(), "hub-esc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = "esc-secret-value-7f3a9c";
const STACK = `environment:
  - inference-hub/common
  - inference-hub/prod
config:
  inference-hub:tier: cpu
  inference-hub:budgetUsd: 2000
`;

/**
 * STAND-IN for Pulumi's `esc` CLI (not the real program: that needs a Pulumi Cloud account).
 * It appends its argv to calls.jsonl and answers like `esc env open NAME pulumiConfig --format
 * detailed` (values as { value, secret, trace }), or, in mode "logged-out", with the error real esc
 * prints without credentials (pulumi/esc cmd/esc/cli/login.go).
 */
function standInEsc(name: string, mode: "open" | "logged-out"): { bin: string; calls: () => string[][] } {
  const home = path.join(dir, name);
  rmSync(home, { recursive: true, force: true });
  const bin = path.join(home, "bin");
  const log = path.join(home, "calls.jsonl");
  const answers = {
    "inference-hub/common": {
      value: {
        region: { value: "ams3", trace: {} },
        tier: { value: "gpu", trace: {} },
        budgetUsd: { value: 9999, trace: {} },
      },
      trace: {},
    },
    "inference-hub/prod": {
      value: {
        "inference-hub:cpuSize": { value: "c-8", trace: {} },
        embeddingModel: { value: "none", trace: {} },
        hubApiKey: { value: SECRET, secret: true, trace: {} },
        region: { value: "fra1", trace: {} },
      },
      trace: {},
    },
  };
  const script = `#!${process.execPath}
// STAND-IN for Pulumi's esc CLI, written by test/esc.test.ts: records argv, answers canned detailed JSON.
const fs = require("node:fs");
const argv = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify(argv) + "\\n");
if (${JSON.stringify(mode)} === "logged-out") { process.stderr.write("error: no credentials, please run \`esc login\` to log in\\n"); process.exit(1); }
const answer = ${JSON.stringify(answers)}[argv[2]];
if (!answer) { process.stderr.write("error: environment not found\\n"); process.exit(1); }
process.stdout.write(JSON.stringify(answer, null, 2) + "\\n");
`;
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, "esc"), script);
  chmodSync(path.join(bin, "esc"), 0o755);
  return {
    bin,
    calls: () =>
      readFileSync(log, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as string[]),
  };
}

/** The settings this stack file leaves open, from the settings table (the file sets tier and budgetUsd). */
const leftOpen = [...SETTING_NAMES, ...Object.keys(SECRET_SETTINGS)].filter((n) => n !== "tier" && n !== "budgetUsd");

describe("stack files that import ESC environments", () => {
  it("reads environment: as a list, or as a definition with imports:", () => {
    const list = readStackFile(STACK, "t.yaml");
    expect(list.ok && list.file.environment).toEqual({
      imports: ["inference-hub/common", "inference-hub/prod"],
      inlineValues: false,
    });
    const def = readStackFile(
      "environment:\n  imports:\n    - a/b\n    - c/d: {merge: false}\n  values:\n    pulumiConfig:\n      region: ams3\n",
      "t.yaml",
    );
    expect(def.ok && def.file.environment).toEqual({ imports: ["a/b", "c/d"], inlineValues: true });
    const empty = readStackFile("environment: []\nconfig: {}\n", "t.yaml");
    expect(empty.ok && empty.file.environment).toBeUndefined();
    const bad = readStackFile("environment: 42\n", "t.yaml");
    expect(bad.ok && bad.file.problems.map((p) => p.keys[0])).toEqual(["environment"]);
  });

  it("without esc on PATH: planned with a warning naming the environments and every setting it could not see", async () => {
    const result = await planFromText("esc", "Pulumi.esc.yaml", STACK, {
      esc: escCli({ PATH: path.join(dir, "nothing-here") }),
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.document.region).toBe("tor1");
    const w = result.document.warnings.find((x) => x.keys.includes("environment"));
    expect(w?.message).toContain("inference-hub/common, inference-hub/prod");
    expect(w?.message).toContain("esc CLI is not installed");
    const named = w!.keys;
    for (const setting of leftOpen) expect(named, setting).toContain(setting);
    expect(named).not.toContain("tier");
    expect(named).not.toContain("budgetUsd");
  });

  it("an inline definition with values: is planned with the warning, without asking esc (it opens only named environments)", async () => {
    const asked: string[] = [];
    const result = await planFromText(
      "esc",
      "Pulumi.esc.yaml",
      "environment:\n  imports: [inference-hub/common]\n  values:\n    pulumiConfig:\n      region: ams3\nconfig:\n  inference-hub:tier: cpu\n",
      {
        esc: async (name) => (asked.push(name), { ok: true, values: [] }),
      },
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(asked).toEqual([]);
    const w = result.document.warnings.find((x) => x.keys.includes("environment"));
    expect(w?.message).toContain("inference-hub/common and the inline values:");
    expect(w?.keys).toContain("region");
  });

  it("esc present but not logged in: the same warning, saying so", async () => {
    const esc = standInEsc("logged-out", "logged-out");
    const result = await planFromText("esc", "Pulumi.esc.yaml", STACK, {
      esc: escCli({ PATH: `${esc.bin}:${process.env.PATH}` }),
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const w = result.document.warnings.find((x) => x.keys.includes("environment"));
    expect(w?.message).toContain("not logged in");
    expect(w?.message).toContain("inference-hub/common, inference-hub/prod");
    expect(esc.calls()[0]).toEqual(["env", "open", "inference-hub/common", "pulumiConfig", "--format", "detailed"]);
  });

  it("esc logged in: the environments' settings are planned (later over earlier, the file over both), secrets unread and never printed", async () => {
    const esc = standInEsc("open", "open");
    const configFile = path.join(dir, "Pulumi.esc.yaml");
    writeFileSync(configFile, STACK);
    const run = await runScriptToEnd("plan", ["--config-file", configFile, "--json"], {
      env: { ...process.env, PATH: `${esc.bin}:${process.env.PATH}` },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(esc.calls()).toEqual([
      ["env", "open", "inference-hub/common", "pulumiConfig", "--format", "detailed"],
      ["env", "open", "inference-hub/prod", "pulumiConfig", "--format", "detailed"],
    ]);
    const document = JSON.parse(run.stdout) as {
      tier: string;
      region: string;
      warnings: { keys: string[]; message: string }[];
      resources: { type: string; inputs: Record<string, unknown> }[];
    };
    // tier and budgetUsd from the file; region from the later environment; cpuSize (and no embeddings, to fit it) from prod.
    expect(document.tier).toBe("cpu");
    expect(document.region).toBe("fra1");
    const droplet = document.resources.find((r) => r.type === "digitalocean:index/droplet:Droplet");
    expect(droplet?.inputs.size).toBe("c-8");
    const note = document.warnings.find((w) => w.keys.includes("environment"));
    expect(note?.message).toContain("hubApiKey (secret, not read)");
    expect(`${run.stdout}${run.stderr}`).not.toContain(SECRET);
    // The human view too.
    const human = await runScriptToEnd("plan", ["--config-file", configFile], {
      env: { ...process.env, PATH: `${esc.bin}:${process.env.PATH}` },
    });
    expect(human.status, human.stderr).toBe(0);
    expect(`${human.stdout}${human.stderr}`).not.toContain(SECRET);
    expect(human.stdout).toContain("inference-hub/common, inference-hub/prod");
  }, 180_000);
});
