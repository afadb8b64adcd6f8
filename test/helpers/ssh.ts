import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { userInfo } from "node:os";
import * as path from "node:path";
import { freePort } from "./loopback";

/** Debian's openssh-server: the real sshd the SSH tests log in to. */
export const SSHD = ["/usr/sbin/sshd", "/usr/bin/sshd"].find((p) => existsSync(p));

/** ssh-keygen's MD5 fingerprint of a public key, as DigitalOcean shows it (aa:bb:...). */
export function sshKeygenMd5(publicKey: string): string {
  const r = spawnSync("ssh-keygen", ["-l", "-E", "md5", "-f", "-"], { input: `${publicKey}\n`, encoding: "utf8" });
  const m = /MD5:([0-9a-f:]{47})/.exec(r.stdout);
  if (!m) throw new Error(`ssh-keygen -l failed: ${r.stderr}`);
  return m[1];
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("data", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** A real sshd on a loopback port with the given host key and authorized keys; `stop()` ends it. */
export class LoopbackSshd {
  private process?: ChildProcess;
  log = "";
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(
    dir: string,
    hostPrivateKey: string,
    authorizedKeys: readonly string[],
    port?: number,
  ): Promise<LoopbackSshd> {
    if (!SSHD) throw new Error("sshd is not installed");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // sshd refuses to start without its privilege-separation directory (the Debian unit creates it).
    if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    const hostKey = path.join(dir, "host_key");
    writeFileSync(hostKey, hostPrivateKey.endsWith("\n") ? hostPrivateKey : `${hostPrivateKey}\n`, { mode: 0o600 });
    const authorized = path.join(dir, "authorized_keys");
    writeFileSync(authorized, authorizedKeys.map((k) => `${k}\n`).join(""), { mode: 0o600 });
    const sshd = new LoopbackSshd(port ?? (await freePort()), dir);
    const config = path.join(dir, "sshd_config");
    writeFileSync(
      config,
      [
        `Port ${sshd.port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${authorized}`,
        `PidFile ${path.join(dir, "sshd.pid")}`,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        // The test's files sit in a temp directory: skip the ownership checks meant for home directories.
        "StrictModes no",
        "LogLevel VERBOSE",
        "",
      ].join("\n"),
    );
    const test = spawnSync(SSHD, ["-t", "-f", config], { encoding: "utf8" });
    if (test.status !== 0) throw new Error(`sshd -t refused the test config: ${test.stderr}`);
    sshd.process = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
    sshd.process.stderr!.on("data", (d: Buffer) => (sshd.log += d.toString()));
    for (let i = 0; i < 100; i++) {
      if (await accepts(sshd.port)) return sshd;
      if (sshd.process.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    sshd.stop();
    throw new Error(`sshd did not start on 127.0.0.1:${sshd.port}: ${sshd.log}`);
  }

  stop(): Promise<void> {
    const p = this.process;
    if (!p || p.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGTERM");
    });
  }

  get directory(): string {
    return this.dir;
  }
}

/** The system ssh with exactly these options, no agent unless given, a command that prints a word. */
export function systemSsh(options: readonly string[], port: number, env: { agentSocket?: string } = {}) {
  const childEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, LANG: "C" };
  if (env.agentSocket) childEnv.SSH_AUTH_SOCK = env.agentSocket;
  // The droplets take root; a test sshd run by another user can only let that user in.
  const r = spawnSync(
    "ssh",
    [...options, "-p", String(port), `${userInfo().username}@127.0.0.1`, "echo", "logged-in"],
    { encoding: "utf8", env: childEnv, timeout: 30_000 },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
