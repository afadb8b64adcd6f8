import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseStagesFile, renderStagesFile, StagesFileError } from "../simulator/stages";
import { runScript } from "./helpers/cli";

/** The measured-stages file the smoke test and `hub gpu on` write and the simulator reads back; the stage comparison. */
const dir = mkdtempSync(path.join(tmpdir(), "hub-stages-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("measured wake stages", () => {
  it("round-trips what the writers produce", () => {
    const text = renderStagesFile(
      "npm run smoke -- --wake",
      new Date("2026-12-07T10:00:00Z"),
      [
        { covers: ["pipeline"], seconds: 95.26, modelSeconds: 80 },
        { covers: ["droplet create", "cloud-init", "image pull"], seconds: 211.04 },
      ],
      "hybrid",
    );
    const file = parseStagesFile(text, "wake.json");
    expect(file.stages).toEqual([
      { covers: ["pipeline"], seconds: 95.3, modelSeconds: 80 },
      { covers: ["droplet create", "cloud-init", "image pull"], seconds: 211 },
    ]);
    expect(file.stack).toBe("hybrid");
  });

  it("refuses a file whose stages the model does not have, out of order or overlapping, every problem at once", () => {
    const bad = JSON.stringify({
      version: 1,
      source: "x",
      measuredAt: "2026-12-07T10:00:00Z",
      stages: [
        { covers: ["cloud-init", "pipeline"], seconds: 5 },
        { covers: ["droplet create"], seconds: 3 },
        { covers: ["warp drive"], seconds: 1 },
      ],
    });
    let error: StagesFileError | undefined;
    try {
      parseStagesFile(bad, "bad.json");
    } catch (err) {
      error = err as StagesFileError;
    }
    expect(error).toBeInstanceOf(StagesFileError);
    expect(error!.problems.join("\n")).toMatch(/stages\.2\.covers\.0: .*stages: pipeline, droplet create/);
    const order = JSON.stringify({
      version: 1,
      source: "x",
      measuredAt: "2026-12-07T10:00:00Z",
      stages: [
        { covers: ["cloud-init", "pipeline"], seconds: 5 },
        { covers: ["droplet create"], seconds: 3 },
      ],
    });
    expect(() => parseStagesFile(order, "order.json")).toThrow(
      /not consecutive stages[\s\S]*comes before or inside an earlier entry/,
    );
  });

  it("npm run simulate -- --compare-stages: today's wake beside the base, the baked image and Pulumi Deployments, and a measured one read back", () => {
    const file = path.join(dir, "wake.json");
    writeFileSync(
      file,
      renderStagesFile("test", new Date(), [
        { covers: ["pipeline", "droplet create"], seconds: 260 },
        { covers: ["cloud-init"], seconds: 30 },
      ]),
    );
    const r = runScript("simulate", ["--compare-stages", "--stack", "hybrid", "--stages", file]);
    expect(r.status).toBe(0);
    const total = r.stdout.split("\n").find((l) => l.startsWith("total"))!;
    // 872 s as modelled before; the base image now (683), baked (389), baked through Pulumi Deployments (389); measured:
    // 260 + 30 + 194 (pull) + 84 + 60 + 10 = 638 s.
    expect(total.split(/\s{2,}/).slice(1)).toEqual(["872 s", "683 s", "389 s", "389 s", "638 s"]);
    expect(r.stdout).toMatch(/pipeline .*260 s \(with the next\)/);
    const bad = runScript("simulate", [
      "--compare-stages",
      "--stack",
      "hybrid",
      "--stages",
      path.join(dir, "missing.json"),
      "--hold-share",
      "2",
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--stages .*missing\.json: no such file/);
    expect(bad.stderr).toMatch(/--hold-share "2" is not a share from 0 to 1/);
  });
});
