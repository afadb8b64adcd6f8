import { describe, expect, it } from "vitest";
import { inboundRules } from "../infra/network";
import { GPU_SIZES } from "../stacks/catalogue/droplets";
import { TIERS } from "../stacks/settings";

/** Tiers that create DigitalOcean resources (local runs on the deployer's Docker). */
const CLOUD_TIERS = TIERS.filter((t) => t !== "local");
import { runProgram, T } from "./helpers/mock-run";

const ANYWHERE = ["0.0.0.0/0", "::/0"];

describe("resources per tier", () => {
  for (const tier of CLOUD_TIERS) {
    it(`${tier}: one region, tags naming stack and tier, protected volumes`, async () => {
      const run = await runProgram({ tier, gpuEnabled: tier !== "cpu" });
      const droplets = run.byType(T.droplet);
      const volumes = run.byType(T.volume);
      const [vpc] = run.byType(T.vpc);
      const region = vpc.inputs.region;
      for (const r of [...droplets, ...volumes, ...run.byType(T.reservedIp)]) expect(r.inputs.region, r.name).toBe(region);
      for (const d of droplets) {
        expect(d.inputs.tags).toEqual(expect.arrayContaining([`ih-stack-${tier}`, `ih-tier-${tier}`]));
        expect(d.inputs.vpcUuid).toBe(`mock-${vpc.name}`);
      }
      for (const v of volumes) {
        expect(v.inputs.tags).toEqual([`ih-stack-${tier}`]);
        expect(v.options.protect).toBe(true);
        expect(v.options.retainOnDelete).toBe(true);
        expect(v.inputs.initialFilesystemType).toBe("ext4");
      }
      // Every droplet proves itself ready after its volume is attached.
      const readiness = run.byType(T.command).filter((c) => c.name.endsWith("-ready"));
      for (const c of readiness) expect(c.options.dependsOn.some((d) => d.includes("VolumeAttachment"))).toBe(true);
      expect(readiness.length).toBe(droplets.length);
    });
  }

  it("cpu: one CPU droplet and no GPU droplet; the model cache is kept, detached", async () => {
    const run = await runProgram({ tier: "cpu" });
    expect(run.byType(T.droplet).map((d) => d.inputs.size)).toEqual(["c-8"]);
    expect(run.byType(T.volume).map((v) => v.name).sort()).toEqual(["storage-cpu-cache", "storage-model-cache-0"]);
    expect(run.byType(T.attachment).length).toBe(1);
  });

  it("gpu: the GPU droplet uses the catalogue's image for its size", async () => {
    const run = await runProgram({ tier: "gpu" });
    const gpu = run.one(T.droplet, "gpu-0-droplet");
    expect(gpu.inputs).toMatchObject({ size: "gpu-h100x1-80gb", image: "gpu-h100x1-base" });
    expect(run.one(T.droplet, "cpu-droplet").inputs.image).toBe("ubuntu-24-04-x64");
  });

  it("multigpu: an 8-GPU droplet on the 8-GPU image, with an 800 GiB cache", async () => {
    const run = await runProgram({ tier: "multigpu" });
    expect(run.one(T.droplet, "gpu-0-droplet").inputs).toMatchObject({ size: "gpu-h200x8-1128gb", image: "gpu-h100x8-base", region: "atl1" });
    expect(run.one(T.volume, "storage-model-cache-0").inputs.size).toBe(800);
  });

  it("AMD sizes boot the AMD image", async () => {
    const mi300 = GPU_SIZES.find((s) => s.slug === "gpu-mi300x1-192gb")!;
    const run = await runProgram({ tier: "gpu", region: "atl1", gpuSize: mi300.slug, ocrEngine: "docling", llmQuantization: "8bit", cpuSize: "c-8" });
    expect(run.one(T.droplet, "gpu-0-droplet").inputs.image).toBe("gpu-amd-base");
  });

  it("gpuCount 3: three GPU droplets, each with its own model-cache volume", async () => {
    const run = await runProgram({ tier: "gpu", gpuCount: 3, budgetUsd: 9000 });
    const attachments = run.byType(T.attachment).filter((a) => a.name.startsWith("gpu-"));
    expect(attachments.map((a) => a.inputs.volumeId).sort()).toEqual(["mock-storage-model-cache-0", "mock-storage-model-cache-1", "mock-storage-model-cache-2"]);
  });

  it("the gateway node keeps a reserved IP and ignores first-boot-only changes", async () => {
    const run = await runProgram({ tier: "hybrid" });
    expect(run.byType(T.reservedIp).length).toBe(1);
    expect(run.one(T.droplet, "cpu-droplet").options.ignoreChanges).toEqual(["userData", "sshKeys"]);
    expect(String(run.outputs.baseUrl)).toMatch(/^http:\/\/203\.0\.113\.\d+\/v1$/);
  });

  it("a domain gives an https base URL", async () => {
    const run = await runProgram({ tier: "cpu", domain: "hub.example.com", acmeEmail: "ops@example.com" });
    expect(run.outputs.baseUrl).toBe("https://hub.example.com/v1");
  });

  it("registers the SSH public key and installs it on every droplet", async () => {
    const run = await runProgram({ tier: "gpu", sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOuyQ81UZv1fAG2JQpBPA7H1YrqCLHPTl3RuwgPR2Dhb deployer", sshKeyFingerprints: ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"] });
    expect(run.byType(T.sshKey).length).toBe(1);
    for (const d of run.byType(T.droplet)) expect(d.inputs.sshKeys).toEqual(["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", "mock:fingerprint"]);
  });

  it("groups droplets, volumes and the reserved IP in a DigitalOcean project", async () => {
    const run = await runProgram({ tier: "gpu" });
    const [project] = run.byType(T.project);
    expect((project.inputs.resources as string[]).length).toBe(2 + 2 + 1);
  });
});

describe("network posture", () => {
  for (const tier of CLOUD_TIERS) {
    it(`${tier}: only 80/443/8100 public on the gateway; SSH only from admin CIDRs; nothing public on GPU nodes`, async () => {
      const run = await runProgram({ tier, gpuEnabled: tier !== "cpu", adminCidrs: ["203.0.113.7/32"] });
      const firewalls = run.byType(T.firewall);
      expect(firewalls.length).toBe(2);
      for (const fw of firewalls) {
        const role = String(fw.inputs.name).endsWith("-gpu") ? "gpu" : "gateway";
        const rules = fw.inputs.inboundRules as { protocol: string; portRange?: string; sourceAddresses: string[] }[];
        const publicPorts = rules.filter((r) => JSON.stringify(r.sourceAddresses) === JSON.stringify(ANYWHERE)).map((r) => r.portRange);
        expect(publicPorts.sort(), `${role} public ports`).toEqual(role === "gateway" ? ["443", "80", "8100"] : []);
        expect(rules.find((r) => r.portRange === "22")?.sourceAddresses).toEqual(["203.0.113.7/32"]);
        for (const r of rules.filter((r) => !["22", "80", "443", "8100"].includes(r.portRange ?? ""))) expect(r.sourceAddresses, `${role} ${r.protocol}/${r.portRange}`).toEqual(["10.110.0.0/20"]);
        expect(fw.inputs.tags).toEqual([role === "gateway" ? `ih-${tier}-gateway` : `ih-${tier}-gpu`]);
      }
    });
  }

  it("opens SSH to the internet only when no admin CIDRs are set, and the plan warns", async () => {
    const run = await runProgram({ tier: "cpu" });
    const gateway = run.byType(T.firewall).find((f) => String(f.inputs.name).endsWith("-gateway"))!;
    expect((gateway.inputs.inboundRules as { portRange?: string; sourceAddresses: string[] }[]).find((r) => r.portRange === "22")?.sourceAddresses).toEqual(ANYWHERE);
  });

  it("lists every rule's reason", () => {
    for (const role of ["gateway", "gpu"] as const) for (const rule of inboundRules(role)) expect(rule.why.length).toBeGreaterThan(5);
  });
});
