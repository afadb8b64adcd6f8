import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { volumeDevicePath } from "../services/node-setup";
import { cloudInitProblems } from "./helpers/cloud-init-validate";
import { runProgram, T } from "./helpers/mock-run";

const cases = [
  { tier: "cpu" },
  { tier: "gpu" },
  { tier: "hybrid", gpuEnabled: true },
  { tier: "multigpu" },
  { tier: "gpu", region: "atl1", gpuSize: "gpu-mi300x1-192gb", ocrEngine: "docling", cpuSize: "c-8" },
];

describe("every cloud-init the program renders passes cloud-init's own validator and schema", () => {
  for (const settings of cases) {
    it(JSON.stringify(settings), async () => {
      const run = await runProgram(settings);
      const docs = run.artifacts.filter((a) => a.kind === "cloud-init");
      expect(docs.map((d) => d.node).sort()).toEqual(run.byType(T.droplet).map((d) => d.name.replace(/-droplet$/, "")).sort());
      for (const doc of docs) {
        expect(cloudInitProblems(doc.content), doc.path).toEqual([]);
        // The droplet boots with exactly this user data.
        const droplet = run.one(T.droplet, `${doc.node}-droplet`);
        expect(droplet.inputs.userData).toBe(doc.content);
        // ... and mounts the volume its node is attached to.
        const attachment = run.one(T.attachment, `${doc.node}-volume`);
        const volume = run.byType(T.volume).find((v) => `mock-${v.name}` === attachment.inputs.volumeId)!;
        const mounts = (parse(doc.content) as { mounts: string[][] }).mounts;
        expect(mounts[0][0]).toBe(volumeDevicePath(String(volume.inputs.name)));
      }
    });
  }
});
