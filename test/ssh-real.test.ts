import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DirectorySshFileStore, HOME_SSH_ROOT, sshHomeDirectory, writePrivateFile } from "../infra/ssh";
import { testEnvironment } from "./helpers/deploy-env";
import { testKeyPair } from "./helpers/keys";
import { ProgramRun, runProgram, T } from "./helpers/mock-run";
import { LoopbackSshd, SSHD, systemSsh } from "./helpers/ssh";

// The real OpenSSH pair: the options, key file and known_hosts file the program writes must make
// the system ssh (what the Docker provider runs) log in with the configured key and no agent,
// trust exactly the node's own host key, and shrug off an address an earlier droplet used.

const work = mkdtempSync(path.join(tmpdir(), "ssh-real-"));
const servers: LoopbackSshd[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(work, { recursive: true, force: true });
});

if (!SSHD) {
  if (process.env.CI) it("has Debian's openssh-server in CI (.ci/run installs it)", () => expect(SSHD).toBeDefined());
  // eslint-disable-next-line no-console
  else
    console.warn(
      "ssh-real.test.ts: SKIPPED: no sshd here (apt-get install openssh-server); CI installs it and runs these",
    );
}

const deployer = testKeyPair("deployer");

interface NodeView {
  readonly sshOpts: string[];
  readonly hostPrivateKey: string;
  readonly hostPublicKey: string;
  readonly connection: Record<string, unknown>;
}

/** What the program gave one node: its Docker provider's ssh options, the host key its cloud-init installs, its Command connection. */
function nodeView(run: ProgramRun, node: string): NodeView {
  const provider = run.one("pulumi:providers:docker", `${node}-containers-docker`);
  const userData = parse(String(run.one(T.droplet, `${node}-droplet`).rawInputs.userData)) as {
    ssh_keys: { ed25519_private: string; ed25519_public: string };
  };
  const ready = run.one(T.command, `${node}-ready`);
  // Provider configuration reaches the engine JSON-encoded.
  const opts = provider.rawInputs.sshOpts;
  return {
    sshOpts: (typeof opts === "string" ? JSON.parse(opts) : opts) as string[],
    hostPrivateKey: userData.ssh_keys.ed25519_private,
    hostPublicKey: userData.ssh_keys.ed25519_public,
    connection: ready.rawInputs.connection as Record<string, unknown>,
  };
}

const startSshd = async (name: string, hostPrivateKey: string, port?: number) => {
  const s = await LoopbackSshd.start(path.join(work, name), hostPrivateKey, [deployer.publicKey], port);
  servers.push(s);
  return s;
};

describe.runIf(SSHD)("the deployer's SSH against a real sshd on loopback", () => {
  const sshDir = path.join(work, "deployer-files");
  let run: ProgramRun;

  it("the program writes the key file 0600 in 0700 directories, and a known_hosts per node holding only its key", async () => {
    run = await runProgram(
      { tier: "gpu", sshPublicKey: deployer.publicKey },
      { stack: "sshtest", secrets: { sshPrivateKey: deployer.privateKey }, env: testEnvironment({ sshDir }) },
    );
    const [stackDir] = readdirSync(sshDir);
    expect(stackDir).toMatch(/^sshtest-[0-9a-f]{10}$/);
    const keyFile = path.join(sshDir, stackDir, "deployer_key");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(sshDir, stackDir)).mode & 0o777).toBe(0o700);
    expect(statSync(sshDir).mode & 0o777).toBe(0o700);
    expect(readFileSync(keyFile, "utf8")).toBe(
      deployer.privateKey.endsWith("\n") ? deployer.privateKey : `${deployer.privateKey}\n`,
    );
    for (const node of ["cpu", "gpu-0"]) {
      const file = path.join(sshDir, stackDir, `${node}.known_hosts`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      // One line: the node's alias and the public half of the key its cloud-init installs.
      expect(readFileSync(file, "utf8")).toBe(`ih-sshtest-${node} ${nodeView(run, node).hostPublicKey}\n`);
    }
    // The options the Docker provider gets name these very files.
    const opts = nodeView(run, "cpu").sshOpts;
    expect(opts).toEqual(
      expect.arrayContaining([
        `UserKnownHostsFile=${path.join(sshDir, stackDir, "cpu.known_hosts")}`,
        `IdentityFile=${keyFile}`,
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=yes",
        "BatchMode=yes",
        "HostKeyAlias=ih-sshtest-cpu",
      ]),
    );
  });

  it("the system ssh logs in with those exact options, the configured key and no agent", async () => {
    const cpu = nodeView(run, "cpu");
    const sshd = await startSshd("cpu-sshd", cpu.hostPrivateKey);
    const r = systemSsh(cpu.sshOpts, sshd.port);
    expect(r.stderr, `${r.stderr}\n--- sshd ---\n${sshd.log}`).not.toMatch(
      /Host key verification failed|Permission denied/,
    );
    expect(r.stdout.trim()).toBe("logged-in");
    expect(r.status).toBe(0);
    // The command provider's connection pins the same key the server presents.
    const scanned = spawnSync("ssh-keyscan", ["-t", "ed25519", "-p", String(sshd.port), "127.0.0.1"], {
      encoding: "utf8",
    })
      .stdout.trim()
      .split(" ")
      .slice(1)
      .join(" ");
    expect(cpu.connection.hostKey).toBe(scanned);
    expect(cpu.connection.hostKey).toBe(cpu.hostPublicKey);
    await sshd.stop();
  });

  it("refuses a different host key on the same address, and accepts the address's next droplet by its own key", async () => {
    const cpu = nodeView(run, "cpu");
    const gpu = nodeView(run, "gpu-0");
    expect(gpu.hostPublicKey).not.toBe(cpu.hostPublicKey);
    // First the cpu node answers on this address, then (recycled) the gpu node does.
    const first = await startSshd("first-droplet", cpu.hostPrivateKey);
    expect(systemSsh(cpu.sshOpts, first.port).status).toBe(0);
    await first.stop();
    const recycled = await startSshd("recycled-address", gpu.hostPrivateKey, first.port);
    // The cpu node's options expect the cpu key: a man in the middle (or another droplet) is refused.
    const refused = systemSsh(cpu.sshOpts, recycled.port);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect(refused.stdout).toBe("");
    // The droplet the program created there now is trusted by its own key, whatever the address served before.
    const accepted = systemSsh(gpu.sshOpts, recycled.port);
    expect(accepted.stdout.trim()).toBe("logged-in");
    expect(accepted.status).toBe(0);
    await recycled.stop();
  });

  it("without sshPrivateKey: no key file, the agent's key logs in, and nothing logs in without the agent", async () => {
    const agentRun = await runProgram(
      { tier: "cpu", sshPublicKey: deployer.publicKey },
      { stack: "sshagent", env: testEnvironment({ sshDir: path.join(work, "agent-files") }) },
    );
    const cpu = nodeView(agentRun, "cpu");
    expect(cpu.sshOpts.some((o) => o.startsWith("IdentityFile="))).toBe(false);
    expect(cpu.connection.privateKey).toBeUndefined();
    const sshd = await startSshd("agent-sshd", cpu.hostPrivateKey);
    const socket = path.join(work, "agent.sock");
    const agent = spawn("ssh-agent", ["-D", "-a", socket], { stdio: "ignore" });
    try {
      for (let i = 0; i < 50 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 100));
      const keyFile = path.join(work, "agent-key");
      writeFileSync(keyFile, deployer.privateKey, { mode: 0o600 });
      expect(
        spawnSync("ssh-add", [keyFile], { env: { ...process.env, SSH_AUTH_SOCK: socket }, encoding: "utf8" }).status,
      ).toBe(0);
      expect(systemSsh(cpu.sshOpts, sshd.port, { agentSocket: socket }).stdout.trim()).toBe("logged-in");
      const noAgent = systemSsh(cpu.sshOpts, sshd.port);
      expect(noAgent.status).not.toBe(0);
      expect(noAgent.stderr).toMatch(/Permission denied/);
    } finally {
      agent.kill();
      await sshd.stop();
    }
  });
});

describe("the deployer's SSH files", () => {
  it("ssh reads `~/.inference-hub/ssh/...` exactly where the home store writes, whatever $HOME says", () => {
    const option = `UserKnownHostsFile=${HOME_SSH_ROOT}/stack-0123456789/cpu.known_hosts`;
    for (const home of [process.env.HOME ?? "", "/nonexistent-home"]) {
      const r = spawnSync("ssh", ["-G", "-o", option, "example.invalid"], {
        encoding: "utf8",
        env: { ...process.env, HOME: home },
      });
      const line = r.stdout.split("\n").find((l) => l.startsWith("userknownhostsfile "));
      expect(line).toBe(
        `userknownhostsfile ${path.join(sshHomeDirectory(), ".inference-hub/ssh/stack-0123456789/cpu.known_hosts")}`,
      );
    }
  });

  it("refuses a symlinked directory in the path and paths that leave the root", () => {
    const root = path.join(work, "files-root");
    mkdirSync(root, { recursive: true });
    const elsewhere = path.join(work, "elsewhere");
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, path.join(root, "linked"));
    expect(() => writePrivateFile(root, "linked/key", "x")).toThrow(/not a directory/);
    expect(existsSync(path.join(elsewhere, "key"))).toBe(false);
    expect(() => writePrivateFile(root, "../escape", "x")).toThrow(/refusing/);
    expect(() => new DirectorySshFileStore("relative/dir")).toThrow(/absolute/);
  });

  it("tightens an existing directory to 0700 and replaces a file whole", () => {
    const root = path.join(work, "loose");
    mkdirSync(path.join(root, "stack"), { recursive: true, mode: 0o755 });
    writePrivateFile(root, "stack/k", "one\n");
    writePrivateFile(root, "stack/k", "two\n");
    expect(readFileSync(path.join(root, "stack/k"), "utf8")).toBe("two\n");
    expect(lstatSync(path.join(root, "stack")).mode & 0o777).toBe(0o700);
    expect(readdirSync(path.join(root, "stack"))).toEqual(["k"]);
  });
});
