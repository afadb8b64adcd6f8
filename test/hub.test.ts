import { describe, expect, it } from "vitest";
import { parseStagesFile, renderStagesFile } from "../simulator/stages";
import { gpuCommand, tierCommand } from "../cli/hub/commands";
import { checkPreview, decideGpu, decideGpuSync, decideTier } from "../cli/hub/decisions";
import { checkPrerequisites, HubCommandError } from "../cli/hub/ops";

import { cfg, io, RecordingOps, step } from "./helpers/recording-ops";

describe("decisions", () => {
  it("gpu on sets gpuEnabled on a hybrid stack", () => {
    const d = decideGpu(cfg({ tier: "hybrid" }), true);
    expect(d.ok && d.changes).toEqual({ "inference-hub:gpuEnabled": "true" });
  });
  it("gpu on is refused on the always-on and CPU tiers, naming the fix", () => {
    const gpu = decideGpu(cfg({ tier: "gpu" }), false);
    expect(!gpu.ok && gpu.reason).toContain("always on");
    const cpu = decideGpu(cfg({ tier: "cpu" }), true);
    expect(!cpu.ok && cpu.reason).toContain("tier hybrid");
  });
  it("a toggle that is already in place changes nothing", () => {
    const d = decideGpu(cfg({ tier: "hybrid", gpuEnabled: "false" }), false);
    expect(d.ok && d.changes).toEqual({});
  });
  it("a tier switch pins the region and drops the old tier's on-demand settings", () => {
    const d = decideTier(cfg({ tier: "hybrid", gpuEnabled: "true", gpuHoursPerMonth: "60" }), "gpu");
    expect(d.ok && d.changes).toEqual({
      "inference-hub:tier": "gpu",
      "inference-hub:region": "tor1",
      "inference-hub:gpuEnabled": null,
      "inference-hub:gpuHoursPerMonth": null,
    });
  });
  it("a tier switch never shrinks the model cache", () => {
    const d = decideTier(cfg({ tier: "hybrid", modelCacheGiB: "300" }), "cpu");
    expect(d.ok && d.after.modelCache.sizeGiB).toBe(300);
  });
  it("a tier switch the target cannot satisfy is refused with the checks' reasons", () => {
    // multigpu needs 8xH200, which tor1 does not offer; the region stays.
    const d = decideTier(cfg({ tier: "hybrid" }), "multigpu");
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.reason).toContain("not offered in tor1");
    expect(decideTier(cfg({ tier: "hybrid" }), "turbo")).toMatchObject({ ok: false });
  });
  it("over budget is refused before anything is set", () => {
    const d = decideTier(cfg({ tier: "hybrid", budgetUsd: "400" }), "gpu");
    expect(!d.ok && d.reason).toContain("budgetUsd");
  });
  it("gpu sync follows the windows in their time zone", () => {
    const config = cfg({ tier: "hybrid", gpuWindows: JSON.stringify(["mon-fri 09:00-17:00 UTC"]), budgetUsd: "1000" });
    // Wednesday 2026-11-25 10:00 UTC is inside; 20:00 is outside.
    const inside = decideGpuSync(config, new Date("2026-11-25T10:00:00Z"));
    expect(inside.ok && inside.changes).toEqual({ "inference-hub:gpuEnabled": "true" });
    const outside = decideGpuSync(
      { ...config, "inference-hub:gpuEnabled": { value: "true", secret: false } },
      new Date("2026-11-25T20:00:00Z"),
    );
    expect(outside.ok && outside.changes).toEqual({ "inference-hub:gpuEnabled": "false" });
    expect(decideGpuSync(cfg({ tier: "hybrid" }), new Date())).toMatchObject({ ok: false });
  });
  it("a preview that deletes or replaces a volume is refused", () => {
    expect(checkPreview([step("replace", "digitalocean:index/volume:Volume", "storage-model-cache-0")]).ok).toBe(false);
    expect(checkPreview([step("delete", "digitalocean:index/volume:Volume", "storage-cpu-cache")]).ok).toBe(false);
    expect(
      checkPreview([
        step("update", "digitalocean:index/volume:Volume", "storage-model-cache-0"),
        step("delete", "digitalocean:index/droplet:Droplet", "gpu-0-droplet"),
      ]).ok,
    ).toBe(true);
  });
});

describe("the hub command against a recording Pulumi", () => {
  it("gpu on: sets the config, previews, applies, reports burn and phases", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid" }), [
      step("create", "digitalocean:index/droplet:Droplet", "gpu-0-droplet"),
      step("create", "command:remote:Command", "gpu-0-ready"),
      step("create", "docker:index/remoteImage:RemoteImage", "gpu-0-containers-image-coder"),
      step("create", "docker:index/container:Container", "gpu-0-containers-coder"),
    ]);
    const { lines, io: out } = io();
    let probes = 0;
    const stages = await gpuCommand(ops, "on", out, async () => (++probes < 2 ? "fallback" : "gpu"));
    expect(ops.calls).toEqual(["getConfig", "set inference-hub:gpuEnabled=true", "preview", "up"]);
    // The phases as the model's stages, timed from the up's start (the preview is not the wake's), for --stages-out.
    expect(stages!.map((s) => s.covers.join(" + "))).toEqual([
      "droplet create",
      "cloud-init",
      "image pull",
      "weights from volume + engine start + first health check",
    ]);
    for (const s of stages!) expect(s.seconds).toBeGreaterThan(0);
    expect(parseStagesFile(renderStagesFile("npm run hub -- gpu on", new Date(), stages!), "x").stages).toHaveLength(4);
    expect(lines.join("\n")).toMatch(/burn: \$0\.16\/h → \$3\.55\/h/);
    for (const phase of ["droplet", "readiness", "image pull", "model load"])
      expect(
        lines.some((l) => l.trim().startsWith(`${phase}:`)),
        phase,
      ).toBe(true);
  }, 30_000);

  it("a volume-replacing preview stops the command and restores the config", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "false" }), [
      step("replace", "digitalocean:index/volume:Volume", "storage-model-cache-0"),
    ]);
    await expect(gpuCommand(ops, "on", io().io)).rejects.toThrow(/volume/);
    expect(ops.calls).not.toContain("up");
    expect(ops.config["inference-hub:gpuEnabled"].value).toBe("false");
  });

  it("a refused tier switch touches nothing", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    await expect(tierCommand(ops, "multigpu", io().io)).rejects.toBeInstanceOf(HubCommandError);
    expect(ops.calls).toEqual(["getConfig"]);
  });

  it("gpu off on a hybrid stack whose GPU is on", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "true" }), [
      step("delete", "digitalocean:index/droplet:Droplet", "gpu-0-droplet"),
    ]);
    const { lines, io: out } = io();
    await gpuCommand(ops, "off", out);
    expect(ops.calls).toEqual(["getConfig", "set inference-hub:gpuEnabled=false", "preview", "up"]);
    expect(lines.join("\n")).toContain("1 delete");
  });

  it("gpu sync does nothing when the deployed stack already matches the window", async () => {
    const windows = { tier: "hybrid", gpuWindows: JSON.stringify(["mon-fri 09:00-17:00 UTC"]), budgetUsd: "1000" };
    const inside = new Date("2026-11-25T10:00:00Z");
    const already = new RecordingOps(cfg(windows));
    already.deployedNodes = { cpu: {}, "gpu-0": {} };
    await gpuCommand(already, "sync", io().io, undefined, inside);
    // The config records the state for a later `pulumi up`; nothing is previewed or applied.
    expect(already.calls).toEqual(["getConfig", "set inference-hub:gpuEnabled=true"]);
    const off = new RecordingOps(cfg(windows));
    await gpuCommand(off, "sync", io().io, undefined, inside);
    expect(off.calls).toEqual(["getConfig", "set inference-hub:gpuEnabled=true", "preview", "up"]);
  });

  it("status reports without changing anything", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    const { lines, io: out } = io();
    await gpuCommand(ops, "status", out);
    expect(ops.calls).toEqual(["getConfig"]);
    expect(lines[0]).toContain("GPU off");
  });
});

describe("prerequisites", () => {
  it("says how to fix a missing Pulumi CLI or token", () => {
    expect(() => checkPrerequisites({ DIGITALOCEAN_TOKEN: "x" }, () => false)).toThrow(/Pulumi CLI is not installed/);
    expect(() => checkPrerequisites({}, () => true)).toThrow(/DIGITALOCEAN_TOKEN/);
    expect(() => checkPrerequisites({ DIGITALOCEAN_TOKEN: "x" }, () => true)).not.toThrow();
  });
});

describe("keys create --bootstrap", () => {
  it("declares only the hash, as a secret, deploys nothing, and shows the key once", async () => {
    const { keysBootstrap } = await import("../cli/hub/keys");
    const { sha256Hex, parseKeysFile } = await import("../programs/gatekeeper/keys");
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    const { lines, io: out } = io();
    await keysBootstrap(ops, { name: "alice laptop", scopes: "llm,stt", rate: "30" }, out);
    const stored = ops.config["inference-hub:apiKeys"];
    expect(stored.secret).toBe(true);
    const keyLine = lines.find((l) => l.startsWith("API key"))!;
    const key = keyLine.split(": ").pop()!;
    expect(key).toMatch(/^ihk_/);
    expect(lines.filter((l) => l.includes(key))).toHaveLength(1);
    expect(stored.value).not.toContain(key);
    const file = parseKeysFile(stored.value);
    expect(file.keys[0]).toMatchObject({
      name: "alice laptop",
      scopes: ["llm", "stt"],
      ratePerMinute: 30,
      sha256: sha256Hex(key),
    });
    // The declared set changes only; the next deploy brings it.
    expect(ops.calls.filter((c) => c === "preview" || c === "up")).toEqual([]);
  });

  it("bad input is refused, every problem at once, before anything is set", async () => {
    const { keysBootstrap } = await import("../cli/hub/keys");
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    await expect(keysBootstrap(ops, { name: "", scopes: "llm,root", rate: "2x" }, io().io)).rejects.toThrow(
      /--name is required.*unknown scope\(s\) root.*--rate "2x"/,
    );
    expect(ops.calls.filter((c) => c.startsWith("set"))).toEqual([]);
  });

  it("keys create --wait/--max-wait: the key's own wait for a waking GPU, in the keys file the gatekeeper reads; bad values refused", async () => {
    const { keysBootstrap, keyLine, newKeyRequest } = await import("../cli/hub/keys");
    const { parseKeysFile } = await import("../programs/gatekeeper/keys");
    const ops = new RecordingOps(cfg({ tier: "hybrid" }));
    await keysBootstrap(ops, { name: "ide", scopes: "llm", wait: "300", maxWait: "600" }, io().io);
    const entry = parseKeysFile(ops.config["inference-hub:apiKeys"].value).keys[0];
    expect(entry).toMatchObject({ waitSeconds: 300, maxWaitSeconds: 600 });
    // At runtime the admin API takes the same fields (the gatekeeper's keys-file schema).
    expect(newKeyRequest({ name: "ide", scopes: "llm", wait: "300" })).toMatchObject({ waitSeconds: 300 });
    expect(keyLine({ ...entry, origin: "declared", revoked: false, lastUsed: null, usedToday: 0 })).toMatch(
      /wait=300s max-wait=600s/,
    );
    expect(() => newKeyRequest({ name: "x", scopes: "stt", wait: "9000" })).toThrow(
      /--wait 9000 is not a whole number of seconds from 0 to 840; --wait and --max-wait are for keys with the llm scope/,
    );
  });
});
