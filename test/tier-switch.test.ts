import { describe, expect, it } from "vitest";
import type { RecordedResource } from "../cli/plan/mock-engine";
import { runProgram, T } from "./helpers/mock-run";

/** Inputs whose change makes DigitalOcean replace a volume (size only grows in place). */
const REPLACING_INPUTS = [
  "name",
  "region",
  "initialFilesystemType",
  "initialFilesystemLabel",
  "filesystemType",
  "snapshotId",
  "description",
];

const volumeView = (v: RecordedResource) => ({
  urn: v.urn,
  replacing: Object.fromEntries(REPLACING_INPUTS.map((k) => [k, v.inputs[k]])),
  size: v.inputs.size as number,
  protect: v.options.protect,
  retainOnDelete: v.options.retainOnDelete,
});

describe("switching tiers and the GPU never replaces or deletes a volume", () => {
  const steps = [
    { tier: "cpu" },
    { tier: "gpu" },
    { tier: "hybrid", gpuEnabled: false },
    { tier: "hybrid", gpuEnabled: true },
    { tier: "cpu" },
  ];

  it("cpu → gpu → hybrid (GPU off) → hybrid (GPU on) → cpu", async () => {
    const runs = [];
    for (const step of steps) runs.push(await runProgram(step, { stack: "prod" }));
    const first = runs[0].byType(T.volume).map(volumeView);
    expect(first.length).toBe(2);
    for (const [i, run] of runs.entries()) {
      const volumes = run.byType(T.volume).map(volumeView);
      expect(volumes.map((v) => v.urn).sort(), `step ${i} ${JSON.stringify(steps[i])}`).toEqual(
        first.map((v) => v.urn).sort(),
      );
      for (const v of volumes) {
        const before = first.find((f) => f.urn === v.urn)!;
        expect(v.replacing, `step ${i} ${v.urn}`).toEqual(before.replacing);
        expect(v.size).toBeGreaterThanOrEqual(before.size);
        expect(v.protect).toBe(true);
        expect(v.retainOnDelete).toBe(true);
      }
    }
    // The GPU droplet comes and goes; the volumes stay.
    expect(runs.map((r) => r.byType(T.droplet).length)).toEqual([1, 2, 1, 2, 1]);
    // Tier tags move with the switch, on droplets only.
    expect(runs[1].byType(T.droplet)[0].inputs.tags).toContain("ih-tier-gpu");
    expect(runs[2].byType(T.droplet)[0].inputs.tags).toContain("ih-tier-hybrid");
  });

  it("attaches the model cache to the GPU node only while it exists", async () => {
    const off = await runProgram({ tier: "hybrid" });
    const on = await runProgram({ tier: "hybrid", gpuEnabled: true });
    expect(off.byType(T.attachment).map((a) => a.name)).toEqual(["cpu-volume"]);
    expect(
      on
        .byType(T.attachment)
        .map((a) => a.name)
        .sort(),
    ).toEqual(["cpu-volume", "gpu-0-volume"]);
    const modelCache = on.one(T.volume, "storage-model-cache-0");
    // The attachment takes the model-cache volume's id; under mocks ids are mock-<name>.
    expect(on.one(T.attachment, "gpu-0-volume").inputs.volumeId).toBe(`mock-${modelCache.name}`);
  });
});
