import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AnyPlan,
  COMMENT_MARKER,
  diffInputs,
  diffPlans,
  hasVolumeRisk,
  renderComment,
  StackDiff,
} from "../cli/plan/diff";
import type { FailedPlanDocument, PlanDocument } from "../cli/plan/document";
import { planFromText } from "../cli/plan/runner";
import { runScript } from "./helpers/cli";

/** The real plan of a stack file's text, as `npm run plan -- --json` prints it. */
async function plan(
  stack: string,
  settings: Record<string, string | number | boolean | { secure: string }>,
): Promise<AnyPlan> {
  const lines = Object.entries(settings).map(
    ([k, v]) => `  inference-hub:${k}: ${typeof v === "object" ? `\n    secure: ${v.secure}` : JSON.stringify(v)}`,
  );
  const result = await planFromText(stack, `Pulumi.${stack}.yaml`, `config:\n${lines.join("\n")}\n`);
  // Through JSON, exactly as the CLI reads a document from a file.
  return JSON.parse(JSON.stringify(result.document)) as AnyPlan;
}

const ok = (p: AnyPlan): PlanDocument => {
  if (!p.ok) throw new Error(`expected a plan, got problems: ${JSON.stringify(p.problems)}`);
  return p;
};
/** A hand-edited copy, for changes no stack file can make. */
const edit = (
  p: PlanDocument,
  change: (doc: { -readonly [K in keyof PlanDocument]: PlanDocument[K] }) => void,
): PlanDocument => {
  const copy = structuredClone(p) as { -readonly [K in keyof PlanDocument]: PlanDocument[K] };
  change(copy);
  return copy;
};
const names = (refs: readonly { name: string }[]) => refs.map((r) => r.name).sort();
const MODEL_CACHE = "storage-model-cache-0";
const CPU_CACHE = "storage-cpu-cache";

let hybridOff: PlanDocument;
let hybridOn: PlanDocument;
let gpu: PlanDocument;
let gpuCoder14b: PlanDocument;
let gpuBiggerCache: PlanDocument;
let gpuNyc2: PlanDocument;
let gpuWithKey: PlanDocument;
let refused: FailedPlanDocument;

beforeAll(async () => {
  // Sequential: Pulumi's mock engine is process-global.
  hybridOff = ok(await plan("hybrid", { tier: "hybrid", gpuEnabled: false }));
  hybridOn = ok(await plan("hybrid", { tier: "hybrid", gpuEnabled: true }));
  gpu = ok(await plan("gpu", { tier: "gpu" }));
  gpuCoder14b = ok(await plan("gpu", { tier: "gpu", llmModel: "qwen2.5-coder-14b" }));
  gpuBiggerCache = ok(await plan("gpu", { tier: "gpu", modelCacheGiB: 150 }));
  gpuNyc2 = ok(await plan("gpu", { tier: "gpu", region: "nyc2" }));
  gpuWithKey = ok(await plan("gpu", { tier: "gpu", sshPrivateKey: { secure: "v1:AAAAbm90LWEtcmVhbC1rZXk=" } }));
  const bad = await plan("gpu", { tier: "gpu", region: "nyc3" });
  if (bad.ok) throw new Error("nyc3 should be refused: it offers no GPU sizes");
  refused = bad;
}, 120_000);

describe("resources", () => {
  it("turning the hybrid GPU on adds the GPU node's resources, keeps the month, raises the burn", () => {
    const d = diffPlans("hybrid", hybridOff, hybridOn);
    expect(d.resources!.removed).toEqual([]);
    expect(names(d.resources!.added)).toEqual(
      expect.arrayContaining([
        "gpu-0-droplet",
        "gpu-0-volume",
        "gpu-0-ready",
        "gpu-0-containers-coder",
        "gpu-0-containers-ocr",
      ]),
    );
    expect(d.resources!.added.find((r) => r.name === "gpu-0-droplet")!.type).toBe("digitalocean:index/droplet:Droplet");
    // The month assumes gpuHoursPerMonth either way; what moves is the burn right now.
    expect(d.cost!.monthlyAfter).toBe(d.cost!.monthlyBefore);
    expect(d.cost!.lines).toEqual([]);
    expect(d.cost!.hourlyGpuOnAfter).toBe(d.cost!.hourlyGpuOnBefore);
    expect(d.cost!.hourlyNowAfter).toBeGreaterThan(d.cost!.hourlyNowBefore! + 3);
    expect(d.volumeRisks).toEqual([]);

    const md = renderComment([d]);
    expect(md).toContain(`**Resources:** ${d.resources!.added.length} added, 0 removed`);
    expect(md).toContain("- ➕ `do:Droplet` `gpu-0-droplet`");
    expect(md).toContain("- **Per month:** $244.10 (unchanged)");
    expect(md).toContain("- **Burn as deployed now:** $0.16/h → $3.55/h (+$3.39/h)");
    expect(md).not.toContain("CAUTION");
  });

  it("turning it off again removes them, and lists the resources that point at them as changed", () => {
    const d = diffPlans("hybrid", hybridOn, hybridOff);
    expect(d.resources!.added).toEqual([]);
    expect(names(d.resources!.removed)).toContain("gpu-0-droplet");
    // The gateway's routes and the project's resource list follow the GPU node.
    const changed = new Map(d.resources!.changed.map((c) => [c.name, c.inputs.map((i) => i.key)]));
    expect(changed.get("project")).toEqual(["resources"]);
    expect(changed.get("cpu-containers-file-dynamic-routes.yml")).toContain("stdin");
    expect(renderComment([d])).toContain("- ➖ `do:Droplet` `gpu-0-droplet`");
    // The GPU node's volume attachment goes; the volume itself stays.
    expect(d.volumeRisks).toEqual([]);
  });

  it("stand-in addresses and droplet ids are not changes; key order is not a change", () => {
    expect(
      diffInputs(
        { host: "192.0.2.10", dropletId: 99900001, rules: { a: 1, b: 2 } },
        { host: "192.0.2.14", dropletId: 99900003, rules: { b: 2, a: 1 } },
      ),
    ).toEqual([]);
    expect(diffInputs({ size: 100 }, { size: 150 })).toEqual([
      { key: "size", before: "100", after: "150", secret: false },
    ]);
    expect(diffInputs({}, { tags: ["a"] })).toEqual([{ key: "tags", secret: false }]);
  });

  it("a secret input is named as changed, never shown", () => {
    // A secret is masked on both sides; setting the deployer key shows only where Docker's ssh finds it.
    const withKey = diffPlans("gpu", gpu, gpuWithKey);
    expect(withKey.resources!.changed.map((c) => [c.name, c.inputs.map((i) => i.key)])).toEqual([
      ["cpu-containers-docker", ["sshOpts"]],
      ["gpu-0-containers-docker", ["sshOpts"]],
    ]);
    const real = renderComment([withKey]);
    expect(real).not.toContain("[secret]");
    expect(real).not.toContain("v1:AAAA");

    // Hand-edited: a scalar that turns secret keeps both of its values out of the comment.
    const before = edit(gpu, (doc) => {
      doc.resources = doc.resources.map((r) =>
        r.name === "hub-api-key" ? { ...r, inputs: { ...r.inputs, length: "[secret]" } } : r,
      );
    });
    const after = edit(gpu, (doc) => {
      doc.resources = doc.resources.map((r) =>
        r.name === "hub-api-key" ? { ...r, inputs: { ...r.inputs, length: 4242 } } : r,
      );
    });
    const md = renderComment([diffPlans("gpu", before, after)]);
    expect(md).toContain("`length` (secret)");
    expect(md).not.toContain("4242");
  });
});

describe("cost", () => {
  it("per-line changes: a bigger model cache costs more block storage and grows the volume in place", () => {
    const d = diffPlans("gpu", gpu, gpuBiggerCache);
    expect(d.cost!.monthlyAfter - d.cost!.monthlyBefore!).toBeCloseTo(5, 2);
    expect(d.cost!.lines.map((l) => l.item)).toEqual(["Block storage"]);
    expect(d.cost!.lines[0].before!.monthlyUsd).toBe(12.5);
    expect(d.cost!.lines[0].after!.monthlyUsd).toBe(17.5);
    const volume = d.resources!.changed.find((c) => c.name === MODEL_CACHE)!;
    expect(volume.inputs).toEqual([{ key: "size", before: "100", after: "150", secret: false }]);
    expect(d.volumeRisks).toEqual([]);

    const md = renderComment([d]);
    expect(md).toContain("### `gpu`: $2,571.20/month → $2,576.20/month (+$5.00/month)");
    expect(md).toMatch(/\| Block storage \| \$12\.50 — 1 x 100 GiB .* \| \$17\.50 — 1 x 150 GiB .* \| \+\$5\.00 \|/);
    expect(md).toContain("- ✏️ `do:Volume` `storage-model-cache-0`: `size` `100` → `150`");
    expect(md).toContain("| `gpu` | $2,571.20 → $2,576.20 | +$5.00 |");
  });

  it("the same plan on both sides is 'no changes'", () => {
    const md = renderComment([diffPlans("gpu", gpu, gpu)]);
    expect(md).toContain("No changes: same cost, resources and containers.");
    expect(md.startsWith(COMMENT_MARKER)).toBe(true);
  });
});

describe("containers", () => {
  it("another coder model: the same image, the container recreated, the model named", () => {
    const d = diffPlans("gpu", gpu, gpuCoder14b);
    expect(d.containers!.imageChanged).toEqual([]);
    expect(d.containers!.modelChanged).toEqual([
      {
        node: "gpu-0",
        role: "coder",
        before: "RedHatAI/Qwen2.5-Coder-32B-Instruct-FP8-dynamic",
        after: "Qwen/Qwen2.5-Coder-14B-Instruct",
      },
    ]);
    expect(d.containers!.reconfigured.map((c) => `${c.node}/${c.name}`)).toEqual(["gpu-0/coder"]);
    expect(d.containers!.reconfigured[0].inputs.map((i) => i.key)).toContain("command");
    expect(d.resources!.added).toEqual([]);
    expect(d.resources!.changed.map((c) => c.name)).toContain("gpu-0-containers-coder");

    const md = renderComment([d]);
    expect(md).toContain(
      "- 🧠 `gpu-0/coder` model `RedHatAI/Qwen2.5-Coder-32B-Instruct-FP8-dynamic` → `Qwen/Qwen2.5-Coder-14B-Instruct`",
    );
    expect(md).toMatch(/- 🔧 `gpu-0\/coder` recreated: .*`command`/);
  });

  it("containers added and removed with the GPU node", () => {
    const on = diffPlans("hybrid", hybridOff, hybridOn);
    expect(on.containers!.added.map((c) => `${c.node}/${c.name}`).sort()).toEqual([
      "gpu-0/coder",
      "gpu-0/gpu-exporter",
      "gpu-0/node-exporter",
      "gpu-0/ocr",
    ]);
    expect(renderComment([on])).toContain("- ➕ `gpu-0/coder` `vllm/vllm-openai:v0.24.0`");
    const off = diffPlans("hybrid", hybridOn, hybridOff);
    expect(off.containers!.removed.map((c) => `${c.node}/${c.name}`).sort()).toEqual([
      "gpu-0/coder",
      "gpu-0/gpu-exporter",
      "gpu-0/node-exporter",
      "gpu-0/ocr",
    ]);
  });

  it("an image change (hand-edited: a new Traefik pin)", () => {
    const head = edit(gpu, (doc) => {
      doc.containers = doc.containers.map((c) => (c.name === "gateway" ? { ...c, image: "traefik:v3.8.0" } : c));
    });
    const d = diffPlans("gpu", gpu, head);
    expect(d.containers!.imageChanged).toEqual([
      { node: "cpu", name: "gateway", before: "traefik:v3.7.13", after: "traefik:v3.8.0" },
    ]);
    expect(renderComment([d])).toContain("- 🔁 `cpu/gateway` `traefik:v3.7.13` → `traefik:v3.8.0`");
  });
});

describe("volume risk", () => {
  const withoutVolume = (p: PlanDocument, name: string) =>
    edit(p, (doc) => {
      doc.resources = doc.resources.filter((r) => r.name !== name);
    });
  const withVolume = (
    p: PlanDocument,
    name: string,
    change: (r: PlanDocument["resources"][number]) => PlanDocument["resources"][number],
  ) =>
    edit(p, (doc) => {
      doc.resources = doc.resources.map((r) => (r.name === name ? change(r) : r));
    });

  it("a volume that disappears is flagged loudly", () => {
    const d = diffPlans("hybrid", hybridOff, withoutVolume(hybridOff, MODEL_CACHE));
    expect(d.volumeRisks).toHaveLength(1);
    expect(d.volumeRisks[0]).toMatchObject({ kind: "removed", name: "ih-hybrid-model-cache-0" });
    expect(d.volumeRisks[0].detail).toContain("retainOnDelete");
    expect(hasVolumeRisk([d])).toBe(true);
    const md = renderComment([d]);
    expect(md).toContain("🛑 **VOLUME AT RISK in `hybrid`**");
    expect(md).toContain("> - `ih-hybrid-model-cache-0` is no longer in the program");
    expect(md).toContain("| `hybrid` | $244.10 → $244.10 | ±$0.00 | $3.55 → $3.55 | +0 −1 ~0 | 🛑 1 |");
  });

  it("a volume that shrinks is flagged: DigitalOcean volumes only grow", () => {
    const d = diffPlans("gpu", gpuBiggerCache, gpu);
    expect(d.volumeRisks).toEqual([expect.objectContaining({ kind: "shrunk", name: "ih-gpu-model-cache-0" })]);
    expect(renderComment([d])).toContain("shrinks from 150 to 100 GiB");
  });

  it("a replacing input change is flagged: a region move replaces both volumes", () => {
    const d = diffPlans("gpu", gpu, gpuNyc2);
    expect(d.volumeRisks.map((r) => [r.name, r.kind]).sort()).toEqual([
      ["ih-gpu-cpu-cache", "replaced"],
      ["ih-gpu-model-cache-0", "replaced"],
    ]);
    expect(d.volumeRisks[0].detail).toContain("`region`");
  });

  it("each create-only input counts, and so does losing protect", () => {
    for (const key of ["name", "initialFilesystemType", "snapshotId", "description"]) {
      const d = diffPlans(
        "gpu",
        gpu,
        withVolume(gpu, CPU_CACHE, (r) => ({ ...r, inputs: { ...r.inputs, [key]: "changed" } })),
      );
      expect(
        d.volumeRisks.map((v) => v.kind),
        key,
      ).toEqual(["replaced"]);
    }
    const unprotected = diffPlans(
      "gpu",
      gpu,
      withVolume(gpu, CPU_CACHE, (r) => ({ ...r, options: { ...r.options, protect: false } })),
    );
    expect(unprotected.volumeRisks.map((v) => v.kind)).toEqual(["unprotected"]);
    // Tags change in place: not a risk.
    const retagged = diffPlans(
      "gpu",
      gpu,
      withVolume(gpu, CPU_CACHE, (r) => ({ ...r, inputs: { ...r.inputs, tags: ["other"] } })),
    );
    expect(retagged.volumeRisks).toEqual([]);
  });
});

describe("failed and missing plans", () => {
  it("a refused PR plan lists its problems and has no diff", () => {
    const d = diffPlans("gpu", gpu, refused);
    expect(d).toMatchObject({ base: "ok", head: "failed", volumeRisks: [] });
    expect(d.cost).toBeUndefined();
    const md = renderComment([d]);
    expect(md).toContain("⛔ **This PR's plan is refused**");
    expect(md).toContain("`gpuSize`, `region`: ");
    expect(md).toContain("| `gpu` | ⛔ refused |");
  });

  it("a refused base shows the PR's cost and no resource list", () => {
    const d = diffPlans("gpu", refused, gpu);
    expect(d).toMatchObject({ base: "failed", head: "ok" });
    expect(d.resources).toBeUndefined();
    expect(d.cost!.monthlyBefore).toBeUndefined();
    expect(renderComment([d])).toContain("The base branch's plan was refused");
  });

  it("a stack with no base plan is new: everything is added", () => {
    const d = diffPlans("hybrid", undefined, hybridOff);
    expect(d.resources!.added).toHaveLength(hybridOff.resources.length);
    expect(d.volumeRisks).toEqual([]);
    const md = renderComment([d]);
    expect(md).toContain("_New stack:");
    expect(md).toContain("| `hybrid` | — → $244.10 | new |");
  });

  it("a stack file removed in the PR", () => {
    const d: StackDiff = diffPlans("gpu", gpu, undefined);
    expect(d.head).toBe("missing");
    expect(renderComment([d])).toContain("The stack file is gone in this PR");
  });
});

describe("npm run plan-diff", () => {
  const run = (...args: string[]) => runScript("plan-diff", args);
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "plan-diff-"));
    for (const side of ["base", "head"]) mkdirSync(path.join(dir, side));
    const write = (file: string, doc: unknown) =>
      writeFileSync(path.join(dir, file), typeof doc === "string" ? doc : JSON.stringify(doc));
    write("base/gpu.json", gpu);
    write("head/gpu.json", gpuBiggerCache);
    write("base/hybrid.json", hybridOff);
    write(
      "head/hybrid.json",
      edit(hybridOff, (doc) => void (doc.resources = doc.resources.filter((r) => r.name !== MODEL_CACHE))),
    );
    // multigpu: new in the PR; cpu: the PR's plan crashed and printed nothing.
    write("head/multigpu.json", refused);
    write("base/cpu.json", gpu);
    write("head/cpu.json", "");
  });

  it("directories: one comment for every stack, exit 0 even with a volume at risk", () => {
    const r = run("--base-dir", path.join(dir, "base"), "--head-dir", path.join(dir, "head"));
    expect(r.status, r.stderr).toBe(0);
    for (const stack of ["cpu", "gpu", "hybrid", "multigpu"]) expect(r.stdout).toContain(`### \`${stack}\``);
    expect(r.stdout).toContain("VOLUME AT RISK in `hybrid`");
    expect(r.stdout).toContain("is empty: the plan printed no document");
  });

  it("--fail-on-volume-risk exits 1 when a volume is at risk, 0 when none is", () => {
    const risky = run(
      "--base-dir",
      path.join(dir, "base"),
      "--head-dir",
      path.join(dir, "head"),
      "--fail-on-volume-risk",
    );
    expect(risky.status).toBe(1);
    expect(risky.stderr).toContain("volume at risk in hybrid");
    const safe = run(
      "--base",
      path.join(dir, "base/gpu.json"),
      "--head",
      path.join(dir, "head/gpu.json"),
      "--fail-on-volume-risk",
    );
    expect(safe.status, safe.stderr).toBe(0);
    expect(safe.stdout).toContain("### `gpu`: $2,571.20/month → $2,576.20/month");
  });

  it("--stack picks one stack; a missing base directory means every stack is new", () => {
    const r = run("--base-dir", path.join(dir, "nowhere"), "--head-dir", path.join(dir, "head"), "--stack", "gpu");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("_New stack:");
    expect(r.stdout).not.toContain("`hybrid`");
  });

  it("bad usage exits 2", () => {
    expect(run("--base", "x.json").status).toBe(2);
    expect(run("--base", "a", "--head", "b", "--base-dir", "c").status).toBe(2);
    expect(run("--bsae", "a").status).toBe(2);
    expect(run("--base", path.join(dir, "missing.json"), "--head", path.join(dir, "head/gpu.json")).status).toBe(2);
  });
});
