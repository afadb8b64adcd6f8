import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DeployerAddressError } from "../infra/deployer-address";
import { inboundRules } from "../infra/network";
import { GPU_SIZES } from "../stacks/catalogue/droplets";
import { TIERS } from "../stacks/settings";

/** Tiers that create DigitalOcean resources (local runs on the deployer's Docker). */
// Droplet tiers: the k8s tier has no droplet or firewall (test/k8s-tier.test.ts checks its exposure).
const CLOUD_TIERS = TIERS.filter((t) => t !== "local" && t !== "k8s");
import { RecordingAddressSource, testEnvironment } from "./helpers/deploy-env";
import { runProgram, T } from "./helpers/mock-run";
import { sshKeygenMd5 } from "./helpers/ssh";
import { testKeyPair } from "./helpers/keys";

const ANYWHERE = ["0.0.0.0/0", "::/0"];

describe("resources per tier", () => {
  for (const tier of CLOUD_TIERS) {
    it(`${tier}: one region, tags naming stack and tier, protected volumes`, async () => {
      const run = await runProgram({ tier, gpuEnabled: tier !== "cpu" });
      const droplets = run.byType(T.droplet);
      const volumes = run.byType(T.volume);
      const [vpc] = run.byType(T.vpc);
      const region = vpc.inputs.region;
      for (const r of [...droplets, ...volumes, ...run.byType(T.reservedIp)])
        expect(r.inputs.region, r.name).toBe(region);
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
    expect(run.byType(T.droplet).map((d) => d.inputs.size)).toEqual(["c-16"]);
    expect(
      run
        .byType(T.volume)
        .map((v) => v.name)
        .sort(),
    ).toEqual(["storage-cpu-cache", "storage-model-cache-0"]);
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
    expect(run.one(T.droplet, "gpu-0-droplet").inputs).toMatchObject({
      size: "gpu-h200x8-1128gb",
      image: "gpu-h100x8-base",
      region: "atl1",
    });
    expect(run.one(T.volume, "storage-model-cache-0").inputs.size).toBe(800);
  });

  it("AMD sizes boot the AMD image", async () => {
    const mi300 = GPU_SIZES.find((s) => s.slug === "gpu-mi300x1-192gb")!;
    const run = await runProgram({
      tier: "gpu",
      region: "atl1",
      gpuSize: mi300.slug,
      ocrEngine: "docling",
      llmQuantization: "8bit",
      cpuSize: "c-8",
    });
    expect(run.one(T.droplet, "gpu-0-droplet").inputs.image).toBe("gpu-amd-base");
  });

  it("gpuCount 3: three GPU droplets, each with its own model-cache volume", async () => {
    const run = await runProgram({ tier: "gpu", gpuCount: 3, budgetUsd: 9000 });
    const attachments = run.byType(T.attachment).filter((a) => a.name.startsWith("gpu-"));
    expect(attachments.map((a) => a.inputs.volumeId).sort()).toEqual([
      "mock-storage-model-cache-0",
      "mock-storage-model-cache-1",
      "mock-storage-model-cache-2",
    ]);
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

  it("registers the SSH public key, keeps it on destroy, and installs it on every droplet by fingerprint", async () => {
    const deployer = testKeyPair("deployer");
    const run = await runProgram({
      tier: "gpu",
      sshPublicKey: deployer.publicKey,
      sshKeyFingerprints: ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"],
    });
    const [key] = run.byType(T.sshKey);
    expect(run.byType(T.sshKey).length).toBe(1);
    expect(key.inputs).toMatchObject({ name: "ih-gpu-deployer", publicKey: deployer.publicKey });
    expect(key.options.retainOnDelete).toBe(true);
    expect(key.options.import).toBeUndefined();
    // ssh-keygen's MD5 of the same key, the format DigitalOcean answers with.
    const md5 = sshKeygenMd5(deployer.publicKey);
    for (const d of run.byType(T.droplet)) {
      expect(d.inputs.sshKeys).toEqual(["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa", md5]);
      // The droplet names the key by fingerprint, so DigitalOcean must hold it first.
      expect(d.options.dependsOn).toContain(key.urn);
    }
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
        const publicPorts = rules
          .filter((r) => JSON.stringify(r.sourceAddresses) === JSON.stringify(ANYWHERE))
          .map((r) => r.portRange);
        expect(publicPorts.sort(), `${role} public ports`).toEqual(role === "gateway" ? ["443", "80", "8100"] : []);
        expect(rules.find((r) => r.portRange === "22")?.sourceAddresses).toEqual(["203.0.113.7/32"]);
        for (const r of rules.filter((r) => !["22", "80", "443", "8100"].includes(r.portRange ?? "")))
          expect(r.sourceAddresses, `${role} ${r.protocol}/${r.portRange}`).toEqual(["10.110.0.0/20"]);
        expect(fw.inputs.tags).toEqual([role === "gateway" ? `ih-${tier}-gateway` : `ih-${tier}-gpu`]);
      }
    });
  }

  const sshRule = (run: Awaited<ReturnType<typeof runProgram>>, role: "gateway" | "gpu") => {
    const fw = run.byType(T.firewall).find((f) => String(f.inputs.name).endsWith(`-${role}`))!;
    return (fw.inputs.inboundRules as { portRange?: string; sourceAddresses: string[] }[]).find(
      (r) => r.portRange === "22",
    )?.sourceAddresses;
  };

  it("no adminCidrs: SSH opens only to the address this deploy runs from, looked up at deploy time", async () => {
    const address = new RecordingAddressSource(["198.51.100.77"]);
    const run = await runProgram({ tier: "gpu" }, { env: testEnvironment({ address }) });
    expect(address.calls).toBe(1);
    expect(sshRule(run, "gateway")).toEqual(["198.51.100.77/32"]);
    expect(sshRule(run, "gpu")).toEqual(["198.51.100.77/32"]);
  });

  it("no adminCidrs behind a NAT with two exits: both addresses, each a /32", async () => {
    const run = await runProgram(
      { tier: "cpu" },
      { env: testEnvironment({ address: new RecordingAddressSource(["198.51.100.77", "203.0.113.9"]) }) },
    );
    expect(sshRule(run, "gateway")).toEqual(["198.51.100.77/32", "203.0.113.9/32"]);
  });

  it("adminCidrs: exactly those ranges, and the explicit 0.0.0.0/0 is the only way to open SSH to everyone", async () => {
    const ranges = await runProgram({ tier: "cpu", adminCidrs: ["203.0.113.0/24", "2001:db8::/32"] });
    expect(sshRule(ranges, "gateway")).toEqual(["203.0.113.0/24", "2001:db8::/32"]);
    const open = await runProgram({ tier: "cpu", adminCidrs: ["0.0.0.0/0"] });
    expect(sshRule(open, "gateway")).toEqual(["0.0.0.0/0"]);
    const both = await runProgram({ tier: "cpu", adminCidrs: ["0.0.0.0/0", "::/0"] });
    expect(sshRule(both, "gateway")).toEqual(["0.0.0.0/0", "::/0"]);
  });

  it("no adminCidrs and the address cannot be found: the deploy is refused before anything exists, naming adminCidrs", async () => {
    const failing = new RecordingAddressSource(
      new DeployerAddressError([
        { service: "api.ipify.org", reason: "no answer within 10 s" },
        { service: "checkip.amazonaws.com", reason: "HTTP 503" },
      ]),
    );
    const refused = runProgram({ tier: "hybrid" }, { env: testEnvironment({ address: failing }) });
    await expect(refused).rejects.toThrow(
      /adminCidrs: is empty, so SSH \(port 22\) opens only to the public IPv4 address this deploy runs from, and that address could not be found \(api\.ipify\.org: no answer within 10 s; checkip\.amazonaws\.com: HTTP 503\)\. Nothing was opened\. Set adminCidrs/,
    );
  });

  it("every SSH step waits for both firewalls (their SSH rule may just have moved to this machine)", async () => {
    const run = await runProgram({ tier: "gpu" });
    const firewalls = run.byType(T.firewall).map((f) => f.urn);
    const byUrn = new Map(run.resources.map((r) => [r.urn, r]));
    const closure = (urn: string, seen = new Set<string>()): Set<string> => {
      for (const d of byUrn.get(urn)?.options.dependsOn ?? []) if (!seen.has(d)) closure(d, seen.add(d));
      return seen;
    };
    const sshUsers = [...run.byType(T.command), ...run.byType("pulumi:providers:docker")];
    expect(sshUsers.length).toBeGreaterThan(4);
    for (const r of sshUsers) expect([...closure(r.urn)], r.name).toEqual(expect.arrayContaining(firewalls));
  });

  it("lists every rule's reason", () => {
    for (const role of ["gateway", "gpu"] as const)
      for (const rule of inboundRules(role)) expect(rule.why.length).toBeGreaterThan(5);
  });
});

describe("the deployer's SSH settings under the mock engine", () => {
  const deployer = testKeyPair("infra-deployer");
  const opts = (p: { rawInputs: Record<string, unknown> }) => {
    const v = p.rawInputs.sshOpts;
    return (typeof v === "string" ? JSON.parse(v) : v) as string[];
  };
  const hostKeyOf = (run: Awaited<ReturnType<typeof runProgram>>, node: string) =>
    (
      parse(String(run.one(T.droplet, `${node}-droplet`).rawInputs.userData)) as {
        ssh_keys: { ed25519_public: string };
      }
    ).ssh_keys.ed25519_public;

  it("every remote Command pins the host key of the node it connects to", async () => {
    const run = await runProgram({ tier: "gpu" });
    const commands = run.byType(T.command);
    expect(commands.length).toBeGreaterThan(5);
    for (const c of commands) {
      // A GPU node's serving wait runs on the gateway node, which probes the replica over the VPC.
      const node = c.name.startsWith("gpu-0") && !c.name.endsWith("-serving") ? "gpu-0" : "cpu";
      const connection = c.rawInputs.connection as { hostKey?: string; host?: string; agentSocketPath?: string };
      expect(connection.hostKey, c.name).toBe(hostKeyOf(run, node));
      expect(connection.hostKey).toMatch(/^ssh-ed25519 AAAA[0-9A-Za-z+/=]+$/);
      // The provider finds the agent itself; a per-session socket path here would change every run.
      expect(connection.agentSocketPath).toBeUndefined();
    }
    expect(hostKeyOf(run, "cpu")).not.toBe(hostKeyOf(run, "gpu-0"));
  });

  it("Docker over SSH: the configured key file, the node's own known_hosts, strict checking; the agent when no key is set", async () => {
    const withKey = await runProgram(
      { tier: "gpu", sshPublicKey: deployer.publicKey },
      { secrets: { sshPrivateKey: deployer.privateKey } },
    );
    for (const node of ["cpu", "gpu-0"]) {
      const o = opts(withKey.one("pulumi:providers:docker", `${node}-containers-docker`));
      const value = (name: string) =>
        o.filter((x, i) => o[i - 1] === "-o" && x.startsWith(`${name}=`)).map((x) => x.slice(name.length + 1));
      expect(value("IdentityFile")).toEqual([
        expect.stringMatching(/^~\/\.inference-hub\/ssh\/gpu-[0-9a-f]{10}\/deployer_key$/),
      ]);
      expect(value("IdentitiesOnly")).toEqual(["yes"]);
      expect(value("UserKnownHostsFile")).toEqual([
        expect.stringMatching(new RegExp(`^~/\\.inference-hub/ssh/gpu-[0-9a-f]{10}/${node}\\.known_hosts$`)),
      ]);
      expect(value("HostKeyAlias")).toEqual([`ih-gpu-${node}`]);
      expect(value("StrictHostKeyChecking")).toEqual(["yes"]);
      expect(value("GlobalKnownHostsFile")).toEqual(["/dev/null"]);
      expect(value("BatchMode")).toEqual(["yes"]);
      expect(o.join(" ")).not.toMatch(/accept-new|StrictHostKeyChecking=no/);
    }
    const agent = await runProgram({ tier: "gpu", sshPublicKey: deployer.publicKey });
    for (const p of agent.byType("pulumi:providers:docker")) {
      expect(opts(p).some((x) => x.startsWith("IdentityFile="))).toBe(false);
      expect(opts(p)).toContain("StrictHostKeyChecking=yes");
    }
  });

  it("the same stack gets the same Docker provider options on every run (no provider diff)", async () => {
    const a = await runProgram({ tier: "hybrid", gpuEnabled: true }, { stack: "prod" });
    const b = await runProgram({ tier: "hybrid", gpuEnabled: true }, { stack: "prod" });
    for (const p of a.byType("pulumi:providers:docker"))
      expect(b.one("pulumi:providers:docker", p.name).rawInputs).toEqual(p.rawInputs);
  });

  it("warns when this machine is outside adminCidrs, whose SSH steps would otherwise only time out", async () => {
    const run = await runProgram(
      { tier: "cpu", adminCidrs: ["203.0.113.0/24"] },
      { env: testEnvironment({ address: new RecordingAddressSource(["198.51.100.77"]) }) },
    );
    expect(run.engineLog.join("\n")).toContain(
      "adminCidrs: this machine reaches the internet from 198.51.100.77, outside 203.0.113.0/24: the SSH steps of this deploy will time out. Deploy from inside adminCidrs, or add 198.51.100.77/32.",
    );
    const inside = await runProgram(
      { tier: "cpu", adminCidrs: ["198.51.100.0/24"] },
      { env: testEnvironment({ address: new RecordingAddressSource(["198.51.100.77"]) }) },
    );
    expect(inside.engineLog.join("\n")).not.toContain("outside");
  });
});
