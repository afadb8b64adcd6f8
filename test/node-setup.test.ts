import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  AUTO_UPGRADES_PATH,
  cloudInitDocument,
  CPU_CACHE_MOUNT,
  DOCKER_DAEMON_JSON_PATH,
  MODEL_CACHE_MOUNT,
  NodeSetupInput,
  readinessScript,
  renderCloudInit,
  SSHD_DROP_IN_PATH,
  systemdEscapePath,
  VOLUME_SCRIPT_PATH,
  VOLUME_UNIT,
  VOLUME_UNIT_PATH,
  volumeDevicePath,
  volumeScript,
  volumeUnit,
} from "../services/node-setup";
import { CLOUD_INIT_CLI_AVAILABLE, cloudInitProblems } from "./helpers/cloud-init-validate";
import { testKeyPair } from "./helpers/keys";

// systemd's own tools (Debian's systemd package) judge the unit; CI must have them.
const SYSTEMD_ESCAPE = spawnSync("systemd-escape", ["--version"]).status === 0 || Boolean(process.env.CI);
const SYSTEMD_ANALYZE = spawnSync("systemd-analyze", ["--version"]).status === 0 || Boolean(process.env.CI);
const systemdEscape = (p: string) => spawnSync("systemd-escape", ["--path", p], { encoding: "utf8" }).stdout.trim();

const gpuNode = (gpuVendor: "nvidia" | "amd", gpuCount: number): NodeSetupInput => ({
  nodeName: "gpu-0",
  role: "gpu",
  gpuVendor,
  gpuCount,
  volume: { name: "hub-model-cache", mountPath: MODEL_CACHE_MOUNT },
  dataDirs: ["huggingface", "vllm"],
  hostKey: HOST_KEY,
});

const HOST_KEY = testKeyPair("node-setup host");
const NODES: Record<string, NodeSetupInput> = {
  cpu: {
    nodeName: "cpu",
    role: "cpu",
    volume: { name: "hub-cpu-cache", mountPath: CPU_CACHE_MOUNT },
    dataDirs: ["huggingface", "llama-cpp", "docling"],
    hostKey: HOST_KEY,
  },
  "nvidia 1 GPU": gpuNode("nvidia", 1),
  "nvidia 8 GPU": gpuNode("nvidia", 8),
  "amd 1 GPU": gpuNode("amd", 1),
  "amd 8 GPU": gpuNode("amd", 8),
};
const ALL = Object.entries(NODES);

interface WriteFile {
  path: string;
  content: string;
  permissions?: string;
  defer?: boolean;
}
interface CloudConfig {
  package_update?: boolean;
  package_upgrade?: boolean;
  packages: string[];
  ssh_pwauth: boolean;
  write_files: WriteFile[];
  mounts: string[][];
  runcmd: (string | string[])[];
}

/** What cloud-init would read: the rendered text, parsed back. */
const rendered = (input: NodeSetupInput) => parse(renderCloudInit(input)) as CloudConfig;
const fileAt = (doc: CloudConfig, p: string) => {
  const f = doc.write_files.find((w) => w.path === p);
  if (!f) throw new Error(`no write_files entry for ${p}`);
  return f;
};
const commands = (doc: CloudConfig) => doc.runcmd.map((c) => (Array.isArray(c) ? c.join(" ") : c));
const bashSyntax = (script: string) => spawnSync("bash", ["-n"], { input: script, encoding: "utf8" });

describe("the validator itself", () => {
  it("accepts a minimal valid document", () => {
    expect(cloudInitProblems("#cloud-config\npackages: [nginx]\n")).toEqual([]);
  });

  it("rejects a wrong type", () => {
    const problems = cloudInitProblems("#cloud-config\npackages: nginx\n");
    expect(problems).toContainEqual(expect.stringContaining("/packages must be array"));
    if (CLOUD_INIT_CLI_AVAILABLE)
      expect(problems).toContainEqual(
        expect.stringMatching(/^cloud-init schema .*packages: 'nginx' is not of type 'array'/s),
      );
  });

  it("rejects an unknown top-level key, which cloud-init 22.4.2 lets through", () => {
    expect(cloudInitProblems("#cloud-config\npakages: [nginx]\n")).toEqual([
      'unknown top-level key "pakages": no cloud-init 22.4.2 module reads it',
    ]);
  });

  it("rejects a missing #cloud-config header", () => {
    const problems = cloudInitProblems("packages: [nginx]\n");
    expect(problems).toContainEqual(expect.stringContaining('first line must be exactly "#cloud-config"'));
    if (CLOUD_INIT_CLI_AVAILABLE)
      expect(problems).toContainEqual(expect.stringContaining('needs to begin with "#cloud-config"'));
    expect(cloudInitProblems("#cloud-config \npackages: [nginx]\n")).not.toEqual([]);
  });

  it("rejects an error inside a list item and text that is not YAML", () => {
    expect(cloudInitProblems("#cloud-config\nwrite_files:\n  - content: x\n")).toContainEqual(
      expect.stringContaining("must have required property 'path'"),
    );
    expect(cloudInitProblems("#cloud-config\npackages: [nginx\n")).not.toEqual([]);
  });

  it.runIf(process.env.CI)("has the real cloud-init validator in CI", () => {
    expect(CLOUD_INIT_CLI_AVAILABLE).toBe(true);
  });
});

describe("every node's cloud-config is accepted by cloud-init 22.4.2", () => {
  it.each(ALL)("%s", (_, input) => {
    const text = renderCloudInit(input);
    expect(text.split("\n")[0]).toBe("#cloud-config");
    expect(cloudInitProblems(text)).toEqual([]);
  });

  // cloud-init parses with PyYAML (YAML 1.1): "no", "on" or 0644 unquoted would change meaning.
  it.runIf(CLOUD_INIT_CLI_AVAILABLE).each(ALL)("%s reads the same under PyYAML", (_, input) => {
    const text = renderCloudInit(input);
    const py = spawnSync(
      "python3",
      ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
      { input: text, encoding: "utf8" },
    );
    expect(py.stderr).toBe("");
    expect(JSON.parse(py.stdout)).toEqual(parse(text));
  });

  it("refuses input that would break the shell text", () => {
    const base = NODES.cpu;
    expect(() => renderCloudInit({ ...base, dataDirs: ["../etc"] })).toThrow(/dataDir/);
    expect(() => renderCloudInit({ ...base, dataDirs: ["a b"] })).toThrow(/dataDir/);
    expect(() => renderCloudInit({ ...base, volume: { name: "Cache;rm", mountPath: CPU_CACHE_MOUNT } })).toThrow(
      /volume name/,
    );
    expect(() => renderCloudInit({ ...base, volume: { name: "c", mountPath: "mnt/x" } })).toThrow(/mountPath/);
    expect(() => renderCloudInit({ ...base, gpuCount: 1 })).toThrow(/cpu node/);
    expect(() => readinessScript({ ...gpuNode("nvidia", 1), gpuCount: undefined })).toThrow(/gpuCount/);
  });
});

describe("what the cloud-config does", () => {
  it("mounts the volume by its by-id path with nofail, through fstab", () => {
    for (const [, input] of ALL) {
      const doc = rendered(input);
      expect(volumeDevicePath(input.volume.name)).toBe(`/dev/disk/by-id/scsi-0DO_Volume_${input.volume.name}`);
      expect(doc.mounts).toHaveLength(1);
      const [device, mountPath, fsType, options] = doc.mounts[0];
      expect(device).toBe(volumeDevicePath(input.volume.name));
      expect(mountPath).toBe(input.volume.mountPath);
      expect(fsType).toBe("ext4");
      expect(options.split(",")).toEqual(["defaults", "nofail", "discard", "noatime"]);
    }
  });

  it("mounts whenever the device arrives: a unit the device's arrival starts, enabled first thing, started at once if the device is already here", () => {
    for (const [, input] of ALL) {
      const doc = rendered(input);
      const script = fileAt(doc, VOLUME_SCRIPT_PATH);
      expect(script.permissions).toBe("0755");
      expect(script.content).toBe(volumeScript(input));
      expect(bashSyntax(script.content).status).toBe(0);
      const unit = fileAt(doc, VOLUME_UNIT_PATH).content.split("\n");
      const device = `${systemdEscape(volumeDevicePath(input.volume.name))}.device`;
      expect(unit).toEqual(
        expect.arrayContaining([
          `WantedBy=${device}`,
          `BindsTo=${device}`,
          `After=${device} ${systemdEscape(input.volume.mountPath)}.mount`,
          `ExecStart=${VOLUME_SCRIPT_PATH}`,
          "Type=oneshot",
          "RemainAfterExit=yes",
        ]),
      );
      const cmds = commands(doc);
      expect(cmds.slice(0, 2)).toEqual([
        `systemctl enable ${VOLUME_UNIT}`,
        `if [ -b '${volumeDevicePath(input.volume.name)}' ]; then systemctl start --no-block ${VOLUME_UNIT}; fi`,
      ]);
      // Nothing in cloud-init waits for the volume any more.
      expect(cmds.join("\n")).not.toContain(VOLUME_SCRIPT_PATH);
    }
  });

  it("makes the bare mount point immutable once, before cloud-init first mounts the volume", () => {
    const doc = rendered(NODES.cpu) as CloudConfig & { bootcmd: string[][] };
    expect(doc.bootcmd).toEqual([
      [
        "cloud-init-per",
        "instance",
        "inference-hub-mount-point",
        "sh",
        "-c",
        `mkdir -p '${CPU_CACHE_MOUNT}' && { mountpoint -q '${CPU_CACHE_MOUNT}' || chattr +i '${CPU_CACHE_MOUNT}'; }`,
      ],
    ]);
    expect(bashSyntax(doc.bootcmd[0][5]).status).toBe(0);
  });

  it("installs the pinned host key as the node's only host key", () => {
    const doc = rendered(NODES.cpu) as CloudConfig & { ssh_keys: Record<string, string>; ssh_deletekeys: boolean };
    expect(doc.ssh_keys).toEqual({ ed25519_private: HOST_KEY.privateKey, ed25519_public: HOST_KEY.publicKey });
    expect(doc.ssh_deletekeys).toBe(true);
    expect("ssh_keys" in (rendered({ ...NODES.cpu, hostKey: undefined }) as object)).toBe(false);
  });

  it.runIf(SYSTEMD_ESCAPE)("names units the way systemd does (systemd-escape --path)", () => {
    for (const p of [
      volumeDevicePath("ih-hybrid-model-cache-0"),
      volumeDevicePath("ih-a-b-cpu-cache"),
      MODEL_CACHE_MOUNT,
      CPU_CACHE_MOUNT,
      "/mnt/a.b_c/.hidden",
      "/",
    ]) {
      expect(systemdEscapePath(p), p).toBe(systemdEscape(p));
    }
  });

  it.runIf(SYSTEMD_ANALYZE)("the unit passes systemd-analyze verify", () => {
    for (const [name, input] of ALL) {
      const root = mkdtempSync(path.join(work, "systemd-root-"));
      // Only the system's own units and ours: verify resolves dependencies inside --root.
      cpSync("/lib/systemd/system", path.join(root, "lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
      mkdirSync(path.join(root, "etc/systemd/system"), { recursive: true });
      writeFileSync(path.join(root, VOLUME_UNIT_PATH), volumeUnit(input));
      mkdirSync(path.join(root, path.dirname(VOLUME_SCRIPT_PATH)), { recursive: true });
      writeFileSync(path.join(root, VOLUME_SCRIPT_PATH), volumeScript(input), { mode: 0o755 });
      const r = spawnSync("systemd-analyze", ["verify", `--root=${root}`, VOLUME_UNIT_PATH], { encoding: "utf8" });
      expect(r.stderr, name).toBe("");
      expect(r.status, name).toBe(0);
    }
  });

  it("installs Docker from Ubuntu's archive with rotated logs, and no full upgrade", () => {
    for (const [, input] of ALL) {
      const doc = rendered(input);
      expect(doc.package_update).toBe(true);
      expect(doc.package_upgrade).toBeUndefined();
      expect(doc.packages).toEqual(expect.arrayContaining(["docker.io", "unattended-upgrades"]));
      expect(commands(doc)).toContain("systemctl enable --now docker");
      const daemon = fileAt(doc, DOCKER_DAEMON_JSON_PATH);
      expect(JSON.parse(daemon.content)).toEqual({
        "log-driver": "json-file",
        "log-opts": { "max-size": "50m", "max-file": "5" },
      });
    }
  });

  it("registers the NVIDIA runtime after daemon.json is written, then restarts Docker", () => {
    for (const input of [NODES["nvidia 1 GPU"], NODES["nvidia 8 GPU"]]) {
      const doc = rendered(input);
      // Not deferred: write_files runs in the init stage, runcmd in the final stage.
      expect(fileAt(doc, DOCKER_DAEMON_JSON_PATH).defer).toBeUndefined();
      const cmds = commands(doc);
      const configure = cmds.indexOf("nvidia-ctk runtime configure --runtime=docker");
      expect(configure).toBeGreaterThan(cmds.indexOf("systemctl enable --now docker"));
      expect(cmds.indexOf("systemctl restart docker")).toBe(configure + 1);
    }
  });

  it("checks the ROCm devices on AMD nodes and never runs nvidia-ctk off NVIDIA", () => {
    for (const name of ["cpu", "amd 1 GPU", "amd 8 GPU"]) {
      const text = commands(rendered(NODES[name])).join("\n");
      expect(text).not.toContain("nvidia");
      if (name.startsWith("amd"))
        expect(text).toMatch(/\[ -c \/dev\/kfd \] && \[ -d \/dev\/dri \] \|\| echo "inference-hub: ERROR/);
      else expect(text).not.toContain("/dev/kfd");
    }
    expect(commands(rendered(NODES["nvidia 1 GPU"])).join("\n")).not.toContain("/dev/kfd");
  });

  it("allows SSH keys only", () => {
    for (const [, input] of ALL) {
      const doc = rendered(input);
      expect(doc.ssh_pwauth).toBe(false);
      const lines = fileAt(doc, SSHD_DROP_IN_PATH).content.split("\n");
      expect(lines).toEqual(
        expect.arrayContaining([
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "PermitRootLogin prohibit-password",
        ]),
      );
      expect(commands(doc)).toContain("systemctl try-reload-or-restart ssh");
    }
  });

  it("turns on unattended security upgrades, written after packages install", () => {
    const doc = rendered(NODES.cpu);
    const auto = fileAt(doc, AUTO_UPGRADES_PATH);
    expect(auto.defer).toBe(true);
    expect(auto.content.split("\n")).toEqual(
      expect.arrayContaining(['APT::Periodic::Update-Package-Lists "1";', 'APT::Periodic::Unattended-Upgrade "1";']),
    );
    // The NVIDIA driver is held back from unattended upgrades only where there is one.
    expect(doc.write_files.some((f) => f.content.includes("Package-Blacklist"))).toBe(false);
    expect(rendered(NODES["nvidia 1 GPU"]).write_files.some((f) => f.content.includes('"libnvidia-";'))).toBe(true);
  });

  it("cloudInitDocument is what renderCloudInit prints", async () => {
    for (const [, input] of ALL) expect(rendered(input)).toEqual(cloudInitDocument(input));
  });
});

// Runs the generated bash against stub commands: the logic, not only the text.
const work = mkdtempSync(path.join(tmpdir(), "node-setup-test-"));
afterAll(() => {
  // Unmount and detach the loop volume before deleting the tree it lives in.
  loop?.tearDown();
  rmSync(work, { recursive: true, force: true });
});
const realReadlink = spawnSync("sh", ["-c", "command -v readlink"], { encoding: "utf8" }).stdout.trim();

const STUBS: Record<string, string> = {
  "cloud-init": `case "$1 $2" in
  "status --wait") exit "\${FAKE_CLOUD_INIT_RC:-0}" ;;
  "status --long") echo "status: error"; echo "errors: runcmd failed" ;;
  status*) echo "status: running" ;;
  *) echo "cloud-init $*" >>"$CALLS" ;;
esac`,
  docker: `[ -z "\${FAKE_DOCKER_DOWN:-}" ] || { echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1; }
case "$*" in *Runtimes*) echo "\${FAKE_RUNTIMES-io.containerd.runc.v2 nvidia runc }" ;; *) echo "\${FAKE_DOCKER_VERSION-27.5.1}" ;; esac`,
  // FAKE_MOUNTED_AFTER=n: not a mount point for the first n checks (a late attachment), then one.
  mountpoint:
    'n=$(( $(cat "$CALLS.mountpoint" 2>/dev/null || echo 0) + 1 )); echo "$n" >"$CALLS.mountpoint"; if [ -n "${FAKE_MOUNTED_AFTER:-}" ]; then [ "$n" -gt "$FAKE_MOUNTED_AFTER" ]; exit; fi; exit "${FAKE_MOUNTPOINT_RC:-0}"',
  findmnt: 'echo "${FAKE_SOURCE:-/dev/sdz}"',
  readlink: `if [ "$2" = "$FAKE_DEV" ]; then echo /dev/sdz; else exec ${realReadlink} "$@"; fi`,
  sshd: 'echo "port 22"; echo "passwordauthentication ${FAKE_PASSWORD_AUTH:-no}"',
  "nvidia-smi":
    'for i in $(seq 0 $((${FAKE_GPUS:-1} - 1))); do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)"; done',
  systemctl: 'case "$*" in *--quiet*) exit "${FAKE_FABRIC_RC:-0}" ;; *) echo inactive; exit 3 ;; esac',
  sleep: 'echo "sleep $1" >>"$CALLS"',
  mount: 'echo "mount $*" >>"$CALLS"',
  mkdir: 'echo "mkdir $*" >>"$CALLS"',
};
const stubDir = path.join(work, "bin");
mkdirSync(stubDir);
for (const [name, body] of Object.entries(STUBS)) {
  writeFileSync(path.join(stubDir, name), `#!/bin/bash\n${body}\n`);
  chmodSync(path.join(stubDir, name), 0o755);
}

/** Runs a script against the stubs. Asynchronous: a 60-step wait must not block the test worker. */
async function run(script: string, input: NodeSetupInput, env: Record<string, string> = {}) {
  const calls = path.join(work, `calls-${Math.random().toString(36).slice(2)}`);
  writeFileSync(calls, "");
  // --norc: Node's stdio are sockets, which makes bash source ~/.bashrc as if run by sshd.
  const child = spawn("bash", ["--norc", "-c", script], {
    timeout: 60_000,
    env: {
      PATH: `${stubDir}:${process.env.PATH}`,
      CALLS: calls,
      FAKE_DEV: volumeDevicePath(input.volume.name),
      ...env,
    },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const status = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { status, stdout, stderr, calls: readFileSync(calls, "utf8").split("\n").filter(Boolean) };
}

/** An ext4 image on a loop device, its stand-in by-id symlink and mount point; undefined where loop devices cannot be set up. */
function setUpLoopVolume() {
  if (process.getuid?.() !== 0) return undefined;
  const root = mkdtempSync(path.join(work, "loop-"));
  const image = path.join(root, "volume.img");
  const ok = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" });
  if (ok("truncate", ["-s", "32M", image]).status !== 0 || ok("mkfs.ext4", ["-q", "-F", image]).status !== 0)
    return undefined;
  const attached = ok("losetup", ["--find", "--show", image]);
  if (attached.status !== 0) return undefined;
  const device = attached.stdout.trim();
  const byIdPath = path.join(root, "by-id", "scsi-0DO_Volume_loop-test-volume");
  const mountPath = path.join(root, "mnt");
  mkdirSync(path.dirname(byIdPath));
  const bin = path.join(root, "bin");
  mkdirSync(bin);
  // Docker and systemd are not part of this test: record what the script asks of them.
  const stubs = {
    docker: `case "$1" in ps) echo "\${FAKE_WAITING_IDS:-}" ;; start) shift; echo "docker start $*" >>"$CALLS" ;; esac`,
    systemctl: "exit 0",
  };
  for (const [name, body] of Object.entries(stubs))
    writeFileSync(path.join(bin, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  return {
    device,
    byIdPath,
    mountPath,
    attach: () => ok("ln", ["-sfn", device, byIdPath]),
    unmount: () => ok("umount", [mountPath]),
    runScript(script: string, env: Record<string, string> = {}) {
      const calls = path.join(root, `calls-${Math.random().toString(36).slice(2)}`);
      writeFileSync(calls, "");
      const r = spawnSync("bash", ["--norc", "-c", script], {
        encoding: "utf8",
        timeout: 60_000,
        env: { PATH: `${bin}:${process.env.PATH}`, CALLS: calls, ...env },
      });
      return {
        status: r.status,
        stdout: r.stdout,
        stderr: r.stderr,
        calls: readFileSync(calls, "utf8").split("\n").filter(Boolean),
      };
    },
    tearDown() {
      while (ok("umount", [mountPath]).status === 0);
      ok("losetup", ["-d", device]);
      if (existsSync(mountPath)) ok("chattr", ["-i", mountPath]);
    },
  };
}

/** A node whose volume is a temp dir, so the data-dir checks look at real directories. */
function stubbedNode(base: NodeSetupInput, createDirs = true): NodeSetupInput {
  const mountPath = mkdtempSync(path.join(work, "mnt-"));
  if (createDirs) for (const d of base.dataDirs) mkdirSync(path.join(mountPath, d));
  return { ...base, volume: { ...base.volume, mountPath } };
}

describe("the volume script, with stub commands", () => {
  it("exits with a clear message and creates nothing when the device is not there", async () => {
    const input = {
      ...NODES.cpu,
      volume: { name: "never-attached-test-volume", mountPath: path.join(work, "never-mounted") },
    };
    expect(existsSync(volumeDevicePath(input.volume.name))).toBe(false);
    const r = await run(volumeScript(input), input);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `inference-hub-volume: ERROR ${volumeDevicePath(input.volume.name)} is not attached: ${input.volume.mountPath} is NOT mounted; this runs again by itself when the volume is attached\n`,
    );
    expect(r.calls).toEqual([]);
    expect(existsSync(input.volume.mountPath)).toBe(false);
  });
});

// The real thing where the machine allows it: an ext4 image on a loop device stands in for the
// DigitalOcean volume, a symlink in a temp dir for its /dev/disk/by-id path.
const loop = setUpLoopVolume();
if (!loop)
  console.warn(
    "node-setup.test.ts: the loop-device volume tests are SKIPPED: losetup/mount need root and a free loop device here",
  );

describe.runIf(loop)("the volume script, for real on a loop device", () => {
  const l = loop!;
  const input: NodeSetupInput = {
    ...NODES["nvidia 1 GPU"],
    volume: { name: "loop-test-volume", mountPath: l.mountPath },
  };
  const script = () => volumeScript(input, l.byIdPath);
  const findmnt = (column: string) =>
    spawnSync("findmnt", ["-n", "-o", column, "--mountpoint", l.mountPath], { encoding: "utf8" }).stdout.trim();

  it("before the attachment: fails, and leaves nothing to write to", () => {
    const r = l.runScript(script());
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`ERROR ${l.byIdPath} is not attached`);
    expect(findmnt("SOURCE")).toBe("");
  });

  it("when the device arrives: mounts it with nofail options, creates the data directories on it, starts the containers that waited", () => {
    l.attach();
    const r = l.runScript(script(), { FAKE_WAITING_IDS: "3f2a9c1d 77aa01be" });
    expect(r.stderr).toBe(`inference-hub-volume: volume ${l.byIdPath} mounted at ${l.mountPath}\n`);
    expect(r.status).toBe(0);
    expect(findmnt("SOURCE")).toBe(l.device);
    expect(findmnt("OPTIONS").split(",")).toEqual(expect.arrayContaining(["noatime", "discard"]));
    for (const d of input.dataDirs) expect(existsSync(path.join(l.mountPath, d)), d).toBe(true);
    expect(r.calls).toEqual(["docker start 3f2a9c1d 77aa01be"]);
  });

  it("run again while mounted (a reboot, the device re-announced): changes nothing", () => {
    writeFileSync(path.join(l.mountPath, "huggingface", "weights.bin"), "w");
    const r = l.runScript(script());
    expect(r.status).toBe(0);
    expect(
      spawnSync("findmnt", ["-n", "-o", "SOURCE", "--mountpoint", l.mountPath], { encoding: "utf8" })
        .stdout.trim()
        .split("\n"),
    ).toEqual([l.device]);
    expect(readFileSync(path.join(l.mountPath, "huggingface", "weights.bin"), "utf8")).toBe("w");
  });

  it("while the volume is away, its bare mount point refuses every write; attached again, the files are back", () => {
    l.unmount();
    expect(spawnSync("lsattr", ["-d", l.mountPath], { encoding: "utf8" }).stdout).toMatch(/^-*i/);
    expect(() => mkdirSync(path.join(l.mountPath, "huggingface"))).toThrow(/EPERM|operation not permitted/i);
    expect(readdirSync(l.mountPath)).toEqual([]);
    expect(l.runScript(script()).status).toBe(0);
    expect(readFileSync(path.join(l.mountPath, "huggingface", "weights.bin"), "utf8")).toBe("w");
  });
});

describe("the readiness script", () => {
  it.each(ALL)("%s: is valid bash that fails fast and waits for cloud-init", (_, input) => {
    const script = readinessScript(input);
    expect(bashSyntax(script).stderr).toBe("");
    expect(bashSyntax(script).status).toBe(0);
    expect(script.split("\n")).toContain("set -euo pipefail");
    expect(script).toContain("cloud-init status --wait");
    expect(script).toMatch(/^timeout \d+ cloud-init status --wait/m);
    expect(script).toContain("cloud-init status --long >&2");
    expect(script).toContain("tail -n 60 /var/log/cloud-init-output.log >&2");
    expect(script).toContain("docker info");
    expect(script).toContain(`dev='${volumeDevicePath(input.volume.name)}'`);
  });

  it("checks the GPU count with the right number, the NVIDIA way or the AMD way", () => {
    for (const [name, input] of ALL) {
      const script = readinessScript(input);
      const count = input.gpuCount;
      if (count === undefined) expect(script).not.toMatch(/-eq \d|nvidia|\/dev\/kfd/);
      else expect(script).toContain(`[ "$gpus" -eq ${count} ]`);
      if (name.startsWith("nvidia")) {
        expect(script).toContain("nvidia-smi -L");
        expect(script).toContain('*" nvidia "*');
        expect(script).not.toContain("/dev/kfd");
      }
      if (name.startsWith("amd")) {
        expect(script).toContain("[ -c /dev/kfd ]");
        expect(script).toContain("amdgpu");
        expect(script).not.toContain("nvidia");
      }
    }
    expect(readinessScript(NODES["nvidia 8 GPU"])).toContain("nvidia-fabricmanager");
    expect(readinessScript(NODES["nvidia 1 GPU"])).not.toContain("nvidia-fabricmanager");
  });

  it("prints one summary line when everything is in place", async () => {
    const cpu = stubbedNode(NODES.cpu);
    const r = await run(readinessScript(cpu), cpu);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`ready: cpu (cpu) docker=27.5.1 volume=/dev/sdz@${cpu.volume.mountPath} gpus=none\n`);

    const gpu = stubbedNode(NODES["nvidia 8 GPU"]);
    const g = await run(readinessScript(gpu), gpu, { FAKE_GPUS: "8" });
    expect(g.stderr).toBe("");
    expect(g.stdout).toBe(`ready: gpu-0 (gpu nvidia) docker=27.5.1 volume=/dev/sdz@${gpu.volume.mountPath} gpus=8\n`);
  });

  it("fails with one line saying what is wrong and what was seen", async () => {
    const gpu = stubbedNode(NODES["nvidia 8 GPU"]);
    const script = readinessScript(gpu);
    const cases: [Record<string, string>, string][] = [
      [{ FAKE_GPUS: "7" }, "not ready: gpu-0: gpu: nvidia-smi -L lists 7 GPUs, expected 8"],
      [
        { FAKE_GPUS: "8", FAKE_RUNTIMES: "io.containerd.runc.v2 runc " },
        "not ready: gpu-0: docker: nvidia runtime not registered (runtimes: io.containerd.runc.v2 runc )",
      ],
      [
        { FAKE_GPUS: "8", FAKE_FABRIC_RC: "3" },
        "not ready: gpu-0: gpu: nvidia-fabricmanager is inactive, needed for NVSwitch",
      ],
      [
        { FAKE_DOCKER_DOWN: "1" },
        "not ready: gpu-0: docker: daemon not answering (docker info: Cannot connect to the Docker daemon at unix:///var/run/docker.sock)",
      ],
      [
        { FAKE_DOCKER_VERSION: "" },
        "not ready: gpu-0: docker: daemon not answering (docker info shows no server version)",
      ],
      [
        { FAKE_MOUNTPOINT_RC: "1" },
        `not ready: gpu-0: volume: ${gpu.volume.mountPath} is not mounted after 300 s (device ${volumeDevicePath(gpu.volume.name)} absent); it mounts by itself once the volume is attached: check the attachment, and systemctl status inference-hub-volume.service`,
      ],
      [
        { FAKE_SOURCE: "/dev/vda1" },
        `not ready: gpu-0: volume: ${gpu.volume.mountPath} is mounted from /dev/vda1, expected ${volumeDevicePath(gpu.volume.name)} (/dev/sdz)`,
      ],
      [
        { FAKE_PASSWORD_AUTH: "yes" },
        "not ready: gpu-0: ssh: password login is still enabled (passwordauthentication yes)",
      ],
      [{ FAKE_CLOUD_INIT_RC: "124" }, "not ready: gpu-0: cloud-init still running after 1500 s (status: running)"],
    ];
    for (const [env, line] of cases) {
      const r = await run(script, gpu, env);
      // A volume that never mounts is polled for 300 s, every 5 s, before the verdict.
      if (env.FAKE_MOUNTPOINT_RC) expect(r.calls).toEqual(Array(60).fill("sleep 5"));
      expect(r.status, JSON.stringify(env)).toBe(1);
      expect(r.stdout, JSON.stringify(env)).toBe("");
      expect(r.stderr, JSON.stringify(env)).toBe(`${line}\n`);
    }

    const empty = stubbedNode(NODES.cpu, false);
    expect((await run(readinessScript(empty), empty)).stderr).toBe(
      `not ready: cpu: volume: ${empty.volume.mountPath}/huggingface is missing\n`,
    );
  });

  it("waits for a volume that is mounted late, polling every 5 s", async () => {
    const cpu = stubbedNode(NODES.cpu);
    const late = await run(readinessScript(cpu), cpu, { FAKE_MOUNTED_AFTER: "3" });
    expect(late.stderr).toBe("");
    expect(late.status).toBe(0);
    expect(late.calls).toEqual(["sleep 5", "sleep 5", "sleep 5"]);
    // Never mounted: see "fails with one line ..." (60 polls, then the message).
  });

  it("shows cloud-init's own report when cloud-init failed", async () => {
    const cpu = stubbedNode(NODES.cpu);
    const r = await run(readinessScript(cpu), cpu, { FAKE_CLOUD_INIT_RC: "1" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      "not ready: cpu: cloud-init reported an error (exit 1)\nstatus: error\nerrors: runcmd failed\n--- last lines of /var/log/cloud-init-output.log ---",
    );
  });

  it("goes on after recoverable cloud-init errors, with a warning", async () => {
    const cpu = stubbedNode(NODES.cpu);
    const r = await run(readinessScript(cpu), cpu, { FAKE_CLOUD_INIT_RC: "2" });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain("warning: cpu: cloud-init finished with recoverable errors:");
  });

  it("fails on an AMD node without the ROCm driver", async () => {
    const amd = stubbedNode(NODES["amd 8 GPU"]);
    const r = await run(readinessScript(amd), amd);
    expect(r.status).toBe(1);
    // The test machine has no /dev/kfd, like a droplet whose amdgpu module did not load.
    if (!existsSync("/dev/kfd"))
      expect(r.stderr).toBe("not ready: gpu-0: gpu: /dev/kfd missing: the ROCm (amdgpu) kernel driver is not loaded\n");
  });
});
