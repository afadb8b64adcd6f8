import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { buildGpuImage, BuildLimits } from "../cli/hub/gpu-image";
import {
  bakeCloudConfig,
  gpuBootImage,
  gpuImageInputs,
  gpuImageName,
  gpuNodeImages,
  renderBakeCloudConfig,
} from "../services/gpu-image";
import { renderCloudInit } from "../services/node-setup";
import { vllmImage } from "../services/images";
import { imageName } from "../services/spec";
import { cloudInitProblems } from "./helpers/cloud-init-validate";
import { mustLoad } from "./helpers/load";
import { runProgram, T } from "./helpers/mock-run";
import { cfg, io, RecordingOps } from "./helpers/recording-ops";
import { RecordingImageOps } from "./helpers/recording-image-ops";

/**
 * The baked GPU image: its name from what defines it, the cloud-config that builds it and the one
 * a node from it keeps, the plan's choice of image, and the build's lifecycle against recording
 * stand-ins of DigitalOcean (test/helpers/recording-image-ops.ts) and Pulumi (recording-ops.ts).
 */
const LIMITS: BuildLimits = { setupMs: 60_000, snapshotMs: 60_000, pollMs: 1_000 };
const hybrid = () => mustLoad({ tier: "hybrid" });

describe("what the baked image holds and what it is called", () => {
  it("pulls every image a GPU node runs, whether the GPU is on or off, and names itself after them", () => {
    const off = mustLoad({ tier: "hybrid", gpuEnabled: false });
    const images = gpuNodeImages(off);
    expect(images).toContain(imageName(vllmImage("nvidia")));
    expect(images.some((i) => i.includes("dcgm-exporter"))).toBe(true);
    expect(images).toEqual(gpuNodeImages(mustLoad({ tier: "hybrid", gpuEnabled: true })));
    const name = gpuImageName(gpuImageInputs(off)!);
    expect(name).toMatch(/^ih-gpu-h100x1-80gb-[0-9a-f]{12}$/);
    // Same inputs, same name (two stacks share one snapshot); a different image set, another name.
    expect(gpuImageName(gpuImageInputs(hybrid())!)).toBe(name);
    expect(gpuImageName(gpuImageInputs(mustLoad({ tier: "hybrid", monitoring: false }))!)).not.toBe(name);
    expect(
      gpuImageName({ ...gpuImageInputs(off)!, images: images.map((i) => i.replace(/v0\.24\.0$/, "v0.24.1")) }),
    ).not.toBe(name);
  });

  it("the build's cloud-config passes cloud-init's schema, pulls each image with retries and powers off only when complete", () => {
    const text = renderBakeCloudConfig("nvidia", gpuNodeImages(hybrid()));
    expect(cloudInitProblems(text)).toEqual([]);
    const doc = bakeCloudConfig("nvidia", ["vllm/vllm-openai:v0.24.0"]);
    expect(doc.packages).toEqual(["docker.io", "unattended-upgrades"]);
    expect(JSON.stringify(doc.runcmd)).toContain("nvidia-ctk");
    expect(JSON.stringify(doc.runcmd)).toContain("docker pull 'vllm/vllm-openai:v0.24.0'");
    expect(doc.power_state).toMatchObject({ mode: "poweroff", condition: "test -f /var/lib/inference-hub/baked" });
  });

  it("a node booting it keeps only its own part of cloud-init: host key, volume unit and mount; no install, no NVIDIA set-up", () => {
    const input = {
      nodeName: "gpu-0",
      role: "gpu" as const,
      gpuVendor: "nvidia" as const,
      gpuCount: 1,
      volume: { name: "ih-hybrid-model-cache-0", mountPath: "/mnt/model-cache" },
      dataDirs: ["huggingface", "vllm"],
      hostKey: {
        privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----",
        publicKey: "ssh-ed25519 AAAA",
      },
    };
    const baked = renderCloudInit({ ...input, baked: true });
    expect(cloudInitProblems(baked)).toEqual([]);
    const doc = parse(baked) as Record<string, unknown>;
    expect(doc.packages).toBeUndefined();
    expect(doc.package_update).toBeUndefined();
    expect(baked).not.toContain("nvidia-ctk");
    expect(baked).not.toContain("/etc/docker/daemon.json");
    expect(baked).toContain("inference-hub-volume.service");
    expect(doc.ssh_keys).toBeDefined();
    const full = parse(renderCloudInit(input)) as Record<string, unknown>;
    expect(full.packages).toEqual(["docker.io", "unattended-upgrades"]);
  });
});

describe("which image a GPU node boots", () => {
  it("the base image without a snapshot; the snapshot when its name matches the pins; the base image and a warning when stale", async () => {
    const hub = hybrid();
    const name = gpuImageName(gpuImageInputs(hub)!);
    expect(gpuBootImage(hub)).toMatchObject({ kind: "base", image: "gpu-h100x1-base", expectedName: name });
    const fresh = mustLoad({ tier: "hybrid", gpuSnapshotId: "123456", gpuSnapshotName: name });
    expect(gpuBootImage(fresh)).toEqual({ kind: "baked", image: "123456", name });
    const stale = mustLoad({
      tier: "hybrid",
      gpuSnapshotId: "123455",
      gpuSnapshotName: "ih-gpu-h100x1-80gb-000000000000",
    });
    expect(gpuBootImage(stale)).toMatchObject({ kind: "stale", image: "gpu-h100x1-base", expectedName: name });
    // The program boots what it says: the snapshot id as the droplet's image, the short cloud-init.
    const run = await runProgram({
      tier: "hybrid",
      gpuEnabled: true,
      gpuSnapshotId: "123456",
      gpuSnapshotName: name,
      sshPublicKey: undefined,
    });
    const gpu = run.byType(T.droplet).find((d) => String(d.inputs.name).endsWith("gpu-0"))!;
    expect(gpu.inputs.image).toBe("123456");
    const cloudInit = run.artifacts.find((a) => a.kind === "cloud-init" && a.node === "gpu-0")!.content;
    expect(cloudInit).not.toContain("nvidia-ctk");
    const staleRun = await runProgram({
      tier: "hybrid",
      gpuEnabled: true,
      gpuSnapshotId: "123455",
      gpuSnapshotName: "ih-gpu-h100x1-80gb-000000000000",
    });
    expect(staleRun.byType(T.droplet).find((d) => String(d.inputs.name).endsWith("gpu-0"))!.inputs.image).toBe(
      "gpu-h100x1-base",
    );
    expect(staleRun.engineLog.join("\n")).toMatch(/ih-gpu-h100x1-80gb-000000000000 was built for other pins/);
  }, 60_000);

  it("prices the kept snapshot in the plan, and refuses half a snapshot setting", () => {
    const hub = mustLoad({ tier: "hybrid", gpuSnapshotId: "1", gpuSnapshotName: "ih-gpu-h100x1-80gb-000000000000" });
    // 15 GB base image + 28.6 GB of vLLM unpacked = 43.6 GB = 40.6 GiB at $0.06.
    expect(hub.cost.lines.find((l) => l.item === "GPU image snapshot")?.monthlyUsd).toBeCloseTo(2.44, 2);
    expect(hybrid().cost.lines.find((l) => l.item === "GPU image snapshot")).toBeUndefined();
    expect(() => mustLoad({ tier: "hybrid", gpuSnapshotId: "1" })).toThrow(/needs both its snapshot id and its name/);
  });
});

describe("npm run hub -- gpu image build, against recording stand-ins of DigitalOcean and Pulumi", () => {
  const stack = (extra: Record<string, string> = {}) => new RecordingOps(cfg({ tier: "hybrid", ...extra }));

  it("builds: a droplet from the base image sets itself up and powers off, is snapshotted and destroyed; the stack then names the snapshot", async () => {
    const ops = new RecordingImageOps();
    const s = stack();
    const { lines, io: o } = io();
    const snap = await buildGpuImage(s, ops, o, { limits: LIMITS });
    const name = gpuImageName(gpuImageInputs(hybrid())!);
    expect(ops.calls).toEqual([
      `findSnapshot ${name}`,
      `createDroplet ${name}-build gpu-h100x1-80gb gpu-h100x1-base`,
      `snapshot 100 ${name}`,
      `findSnapshot ${name}`,
      "destroyDroplet 100",
    ]);
    expect(ops.droplets.get(100)!.spec.userData).toBe(renderBakeCloudConfig("nvidia", gpuNodeImages(hybrid())));
    expect(ops.droplets.get(100)!.spec.tags).toEqual(["inference-hub-image-build"]);
    expect(ops.alive).toEqual([]);
    expect(s.config["inference-hub:gpuSnapshotId"]?.value).toBe(snap.id);
    expect(s.config["inference-hub:gpuSnapshotName"]?.value).toBe(name);
    expect(lines.join("\n")).toMatch(/44\.1 GB, \$2\.46\/month/);
  });

  it("reuses a snapshot of the same name: nothing is created; a second build changes nothing", async () => {
    const ops = new RecordingImageOps();
    const name = gpuImageName(gpuImageInputs(hybrid())!);
    ops.snapshots.push({ id: "777", name, regions: ["tor1"], sizeGB: 40 });
    const s = stack();
    await buildGpuImage(s, ops, io().io, { limits: LIMITS });
    expect(ops.calls).toEqual([`findSnapshot ${name}`]);
    expect(s.config["inference-hub:gpuSnapshotId"]?.value).toBe("777");
    const again = io();
    await buildGpuImage(s, ops, again.io, { limits: LIMITS });
    expect(again.lines.join("\n")).toMatch(/nothing to change/);
    expect(s.calls.filter((c) => c.startsWith("set "))).toHaveLength(2);
  });

  it("rebuilds when a pin changed: the old name is stale, a new one is built and named, the old one reported", async () => {
    const ops = new RecordingImageOps();
    ops.snapshots.push({ id: "555", name: "ih-gpu-h100x1-80gb-000000000000", regions: ["tor1"], sizeGB: 40 });
    const s = stack({ gpuSnapshotId: "555", gpuSnapshotName: "ih-gpu-h100x1-80gb-000000000000" });
    const { lines, io: o } = io();
    await buildGpuImage(s, ops, o, { limits: LIMITS });
    expect(ops.calls.filter((c) => c.startsWith("createDroplet"))).toHaveLength(1);
    expect(s.config["inference-hub:gpuSnapshotName"]?.value).toBe(gpuImageName(gpuImageInputs(hybrid())!));
    expect(lines.join("\n")).toMatch(/previous image ih-gpu-h100x1-80gb-000000000000 is no longer used/);
  });

  it("destroys the build droplet whatever happens: a set-up that never finishes, a failed snapshot, a network error; retries a failed delete", async () => {
    for (const fail of ["setup", "snapshot", "network"] as const) {
      const ops = new RecordingImageOps();
      if (fail === "setup") ops.dropletStates = ["new", "active"];
      if (fail === "snapshot") ops.actionStates = ["in-progress", "errored"];
      if (fail === "network") ops.stateError = new Error("connect ETIMEDOUT");
      ops.destroyFailures = fail === "snapshot" ? 2 : 0;
      const s = stack();
      const { io: o } = io();
      await expect(buildGpuImage(s, ops, o, { limits: LIMITS })).rejects.toThrow(
        fail === "setup"
          ? /did not finish its set-up within 1 min/
          : fail === "snapshot"
            ? /snapshot action \d+ errored/
            : /ETIMEDOUT/,
      );
      expect(ops.alive, fail).toEqual([]);
      expect(
        ops.calls.filter((c) => c.startsWith("destroyDroplet")),
        fail,
      ).toHaveLength(fail === "snapshot" ? 3 : 1);
      // Nothing half-built is named by the stack.
      expect(s.config["inference-hub:gpuSnapshotId"]).toBeUndefined();
    }
  });

  it("--keep-on-failure leaves the failed droplet for inspection and says how to delete it", async () => {
    const ops = new RecordingImageOps();
    ops.dropletStates = ["active"];
    const { lines, io: o } = io();
    await expect(buildGpuImage(stack(), ops, o, { limits: LIMITS, keepOnFailure: true })).rejects.toThrow(/set-up/);
    expect(ops.alive).toEqual([100]);
    expect(lines.join("\n")).toMatch(/doctl compute droplet delete 100/);
  });
});
