import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { finetuneJobProgram, FinetuneJobArgs } from "../infra/finetune-job";
import { DirectorySshFileStore, UnwrittenSshFileStore } from "../infra/ssh";
import { SshShell } from "../cli/hub/finetune/job-ops";
import { runUnderMocks } from "../cli/plan/mock-engine";
import { testKeyPair } from "./helpers/keys";
import { T } from "./helpers/mock-run";
import { LoopbackSshd, SSHD } from "./helpers/ssh";

// The job's own Pulumi program under Pulumi's mock engine, and the shell the job uses, run
// against a real sshd on loopback with the options and files that program wrote.

const work = mkdtempSync(path.join(tmpdir(), "ft-program-"));
const servers: LoopbackSshd[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(work, { recursive: true, force: true });
});

const deployer = testKeyPair("finetune-deployer");
const args = (over: Partial<FinetuneJobArgs> = {}): FinetuneJobArgs => ({
  cloudName: "ih-ft-hybrid-acme",
  region: "tor1",
  gpuSize: "gpu-l40sx1-48gb",
  image: "gpu-h100x1-base",
  volumeGiB: 92,
  droplet: true,
  sshKeys: ["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"],
  sshSources: ["192.0.2.250/32"],
  sshFiles: new UnwrittenSshFileStore(),
  sshDirectory: "hybrid-ft-acme-0123456789",
  ...over,
});
const run = (a: FinetuneJobArgs) =>
  runUnderMocks(() => finetuneJobProgram(a) as unknown as Record<string, unknown>, "hybrid-ft-acme", {});

describe("the job's Pulumi program", () => {
  it("holds a GPU droplet, the job's own volume, an SSH-only firewall and a VPC; nothing of the serving stack", async () => {
    const r = await run(args());
    const of = (type: string) => r.resources.filter((x) => x.type === type);
    expect(of(T.droplet)).toHaveLength(1);
    expect(of(T.droplet)[0].rawInputs).toMatchObject({
      size: "gpu-l40sx1-48gb",
      region: "tor1",
      image: "gpu-h100x1-base",
      sshKeys: ["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"],
    });
    const volumes = of(T.volume);
    expect(volumes.map((v) => v.rawInputs.name)).toEqual(["ih-ft-hybrid-acme-volume"]);
    expect(volumes[0].rawInputs).toMatchObject({ size: 92, region: "tor1", initialFilesystemType: "ext4" });
    // Never a model-cache volume: the job cannot attach, replace or delete the serving stack's.
    expect(JSON.stringify(r.resources.map((x) => x.rawInputs))).not.toMatch(/model-cache/);
    const [firewall] = of(T.firewall);
    expect(firewall.rawInputs.inboundRules).toEqual([
      { protocol: "tcp", portRange: "22", sourceAddresses: ["192.0.2.250/32"] },
    ]);
    expect(of(T.vpc)).toHaveLength(1);
    // The droplet mounts the job's volume where the trainer's container expects it.
    const userData = parse(String(of(T.droplet)[0].rawInputs.userData).replace(/^#cloud-config\n/, "")) as {
      mounts: string[][];
    };
    expect(userData.mounts[0][1]).toBe("/mnt/job");
    expect(Object.keys(r.outputs).sort()).toEqual(["host", "sshOptions", "volumeId"]);
  });

  it("without the droplet keeps only the volume (a failed or interrupted job, waiting for resume)", async () => {
    const r = await run(args({ droplet: false }));
    expect(r.resources.filter((x) => x.type === T.droplet)).toEqual([]);
    expect(r.resources.filter((x) => x.type === T.volume)).toHaveLength(1);
    expect(Object.keys(r.outputs)).toEqual(["volumeId"]);
  });

  it("refuses to open SSH to nobody (and so to everybody)", () => {
    expect(() => finetuneJobProgram(args({ sshSources: [] }))).toThrow(/no SSH source/);
  });
});

if (!SSHD) {
  if (process.env.CI) it("has Debian's openssh-server in CI (.ci/run installs it)", () => expect(SSHD).toBeDefined());
  else
    console.warn(
      "finetune-job-program.test.ts: SKIPPED the real-sshd part: no sshd here (apt-get install openssh-server)",
    );
}

describe.runIf(SSHD)("the job's shell against a real sshd, with the options the program wrote", () => {
  it("runs a script from stdin, uploads and downloads byte for byte, and refuses a stranger's host key", async () => {
    const sshDir = path.join(work, "ssh");
    const r = await run(args({ sshFiles: new DirectorySshFileStore(sshDir), privateKey: deployer.privateKey }));
    const sshOptions = r.outputs.sshOptions as string[];
    const userData = parse(
      String(r.resources.find((x) => x.type === T.droplet)!.rawInputs.userData).replace(/^#cloud-config\n/, ""),
    ) as { ssh_keys: { ed25519_private: string } };
    const sshd = await LoopbackSshd.start(path.join(work, "droplet"), userData.ssh_keys.ed25519_private, [
      deployer.publicKey,
    ]);
    servers.push(sshd);
    // The droplets take root; a loopback sshd run by this user lets only this user in.
    const shell = new SshShell({ host: "127.0.0.1", sshOptions }, userInfo().username, sshd.port);
    const ran = await shell.run('echo "job $((6 * 7))"\nexit 3\n');
    expect(ran.stdout.trim(), `${ran.stderr}\n${sshd.log}`).toBe("job 42");
    expect(ran.code).toBe(3);

    const local = path.join(work, "train.jsonl");
    const bytes = Buffer.from(
      Array.from({ length: 3000 }, (_, i) => JSON.stringify({ text: `line ${i} ✓` })).join("\n"),
    );
    writeFileSync(local, bytes);
    const remote = path.join(work, "remote-train.jsonl");
    await shell.upload(local, remote);
    await shell.download(remote, path.join(work, "back.jsonl"));
    expect(readFileSync(path.join(work, "back.jsonl")).equals(bytes)).toBe(true);

    // Another droplet's host key on the same address: refused, nothing runs.
    const stranger = testKeyPair("another droplet");
    const impostor = await LoopbackSshd.start(path.join(work, "impostor"), stranger.privateKey, [deployer.publicKey]);
    servers.push(impostor);
    const refused = await new SshShell({ host: "127.0.0.1", sshOptions }, userInfo().username, impostor.port).run(
      "echo should-not-run",
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain("should-not-run");
    expect(refused.stderr).toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
  });
});
