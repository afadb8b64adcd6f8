import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
  VOLUME_SCRIPT_PATH,
  volumeDevicePath,
  volumeScript,
} from "../services/node-setup";
import { CLOUD_INIT_CLI_AVAILABLE, cloudInitProblems } from "./helpers/cloud-init-validate";

const gpuNode = (gpuVendor: "nvidia" | "amd", gpuCount: number): NodeSetupInput => ({
  nodeName: "gpu-0",
  role: "gpu",
  gpuVendor,
  gpuCount,
  volume: { name: "hub-model-cache", mountPath: MODEL_CACHE_MOUNT },
  dataDirs: ["huggingface", "vllm"],
});

const NODES: Record<string, NodeSetupInput> = {
  cpu: { nodeName: "cpu", role: "cpu", volume: { name: "hub-cpu-cache", mountPath: CPU_CACHE_MOUNT }, dataDirs: ["huggingface", "llama-cpp", "docling"] },
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
    if (CLOUD_INIT_CLI_AVAILABLE) expect(problems).toContainEqual(expect.stringMatching(/^cloud-init schema .*packages: 'nginx' is not of type 'array'/s));
  });

  it("rejects an unknown top-level key, which cloud-init 22.4.2 lets through", () => {
    expect(cloudInitProblems("#cloud-config\npakages: [nginx]\n")).toEqual(['unknown top-level key "pakages": no cloud-init 22.4.2 module reads it']);
  });

  it("rejects a missing #cloud-config header", () => {
    const problems = cloudInitProblems("packages: [nginx]\n");
    expect(problems).toContainEqual(expect.stringContaining('first line must be exactly "#cloud-config"'));
    if (CLOUD_INIT_CLI_AVAILABLE) expect(problems).toContainEqual(expect.stringContaining('needs to begin with "#cloud-config"'));
    expect(cloudInitProblems("#cloud-config \npackages: [nginx]\n")).not.toEqual([]);
  });

  it("rejects an error inside a list item and text that is not YAML", () => {
    expect(cloudInitProblems("#cloud-config\nwrite_files:\n  - content: x\n")).toContainEqual(expect.stringContaining("must have required property 'path'"));
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
    const py = spawnSync("python3", ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"], { input: text, encoding: "utf8" });
    expect(py.stderr).toBe("");
    expect(JSON.parse(py.stdout)).toEqual(parse(text));
  });

  it("refuses input that would break the shell text", () => {
    const base = NODES.cpu;
    expect(() => renderCloudInit({ ...base, dataDirs: ["../etc"] })).toThrow(/dataDir/);
    expect(() => renderCloudInit({ ...base, dataDirs: ["a b"] })).toThrow(/dataDir/);
    expect(() => renderCloudInit({ ...base, volume: { name: "Cache;rm", mountPath: CPU_CACHE_MOUNT } })).toThrow(/volume name/);
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

  it("waits a bounded time for the late attachment, then mounts, then creates the data dirs on the volume", () => {
    const input = NODES["nvidia 8 GPU"];
    const doc = rendered(input);
    const script = fileAt(doc, VOLUME_SCRIPT_PATH);
    expect(script.permissions).toBe("0755");
    expect(script.content).toBe(volumeScript(input));
    expect(bashSyntax(script.content).status).toBe(0);
    expect(commands(doc).at(-1)).toBe(VOLUME_SCRIPT_PATH);
    const at = (s: string) => script.content.indexOf(s);
    expect(at("seq 1 60")).toBeGreaterThan(0);
    // Mounts the module skipped while the device was missing, then checks before creating anything.
    expect(at("cloud-init single --name mounts --frequency always")).toBeGreaterThan(at("seq 1 60"));
    expect(at("mount -a")).toBeGreaterThan(at("cloud-init single"));
    expect(at('mountpoint -q "$mnt"')).toBeGreaterThan(at("mount -a"));
    expect(at("mkdir -p '/mnt/model-cache/huggingface' '/mnt/model-cache/vllm'")).toBeGreaterThan(at('mountpoint -q "$mnt"'));
  });

  it("installs Docker from Ubuntu's archive with rotated logs, and no full upgrade", () => {
    for (const [, input] of ALL) {
      const doc = rendered(input);
      expect(doc.package_update).toBe(true);
      expect(doc.package_upgrade).toBeUndefined();
      expect(doc.packages).toEqual(expect.arrayContaining(["docker.io", "unattended-upgrades"]));
      expect(commands(doc)).toContain("systemctl enable --now docker");
      const daemon = fileAt(doc, DOCKER_DAEMON_JSON_PATH);
      expect(JSON.parse(daemon.content)).toEqual({ "log-driver": "json-file", "log-opts": { "max-size": "50m", "max-file": "5" } });
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
      if (name.startsWith("amd")) expect(text).toMatch(/\[ -c \/dev\/kfd \] && \[ -d \/dev\/dri \] \|\| echo "inference-hub: ERROR/);
      else expect(text).not.toContain("/dev/kfd");
    }
    expect(commands(rendered(NODES["nvidia 1 GPU"])).join("\n")).not.toContain("/dev/kfd");
  });

  it("allows SSH keys only", () => {
    for (const [, input] of ALL) {
      const doc = rendered(input);
      expect(doc.ssh_pwauth).toBe(false);
      const lines = fileAt(doc, SSHD_DROP_IN_PATH).content.split("\n");
      expect(lines).toEqual(expect.arrayContaining(["PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password"]));
      expect(commands(doc)).toContain("systemctl try-reload-or-restart ssh");
    }
  });

  it("turns on unattended security upgrades, written after packages install", () => {
    const doc = rendered(NODES.cpu);
    const auto = fileAt(doc, AUTO_UPGRADES_PATH);
    expect(auto.defer).toBe(true);
    expect(auto.content.split("\n")).toEqual(expect.arrayContaining(['APT::Periodic::Update-Package-Lists "1";', 'APT::Periodic::Unattended-Upgrade "1";']));
    // The NVIDIA driver is held back from unattended upgrades only where there is one.
    expect(doc.write_files.some((f) => f.content.includes("Package-Blacklist"))).toBe(false);
    expect(rendered(NODES["nvidia 1 GPU"]).write_files.some((f) => f.content.includes('"libnvidia-";'))).toBe(true);
  });

  it("cloudInitDocument is what renderCloudInit prints", () => {
    for (const [, input] of ALL) expect(rendered(input)).toEqual(cloudInitDocument(input));
  });
});

// Runs the generated bash against stub commands: the logic, not only the text.
const work = mkdtempSync(path.join(tmpdir(), "node-setup-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
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
  mountpoint: 'exit "${FAKE_MOUNTPOINT_RC:-0}"',
  findmnt: 'echo "${FAKE_SOURCE:-/dev/sdz}"',
  readlink: `if [ "$2" = "$FAKE_DEV" ]; then echo /dev/sdz; else exec ${realReadlink} "$@"; fi`,
  sshd: 'echo "port 22"; echo "passwordauthentication ${FAKE_PASSWORD_AUTH:-no}"',
  "nvidia-smi": 'for i in $(seq 0 $((${FAKE_GPUS:-1} - 1))); do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)"; done',
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

function run(script: string, input: NodeSetupInput, env: Record<string, string> = {}) {
  const calls = path.join(work, `calls-${Math.random().toString(36).slice(2)}`);
  writeFileSync(calls, "");
  // --norc: Node's stdio are sockets, which makes bash source ~/.bashrc as if run by sshd.
  const r = spawnSync("bash", ["--norc", "-c", script], {
    encoding: "utf8",
    timeout: 30_000,
    env: { PATH: `${stubDir}:${process.env.PATH}`, CALLS: calls, FAKE_DEV: volumeDevicePath(input.volume.name), ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, calls: readFileSync(calls, "utf8").split("\n").filter(Boolean) };
}

/** A node whose volume is a temp dir, so the data-dir checks look at real directories. */
function stubbedNode(base: NodeSetupInput, createDirs = true): NodeSetupInput {
  const mountPath = mkdtempSync(path.join(work, "mnt-"));
  if (createDirs) for (const d of base.dataDirs) mkdirSync(path.join(mountPath, d));
  return { ...base, volume: { ...base.volume, mountPath } };
}

describe("the volume script", () => {
  it("gives up after 300 s with a clear message and creates nothing when the device never appears", () => {
    const input = { ...NODES.cpu, volume: { name: "never-attached-test-volume", mountPath: CPU_CACHE_MOUNT } };
    expect(existsSync(volumeDevicePath(input.volume.name))).toBe(false);
    const r = run(volumeScript(input), input);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`inference-hub: ERROR volume device ${volumeDevicePath(input.volume.name)} did not appear within 300 s`);
    expect(r.calls).toEqual(Array(60).fill("sleep 5"));
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

  it("prints one summary line when everything is in place", () => {
    const cpu = stubbedNode(NODES.cpu);
    const r = run(readinessScript(cpu), cpu);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`ready: cpu (cpu) docker=27.5.1 volume=/dev/sdz@${cpu.volume.mountPath} gpus=none\n`);

    const gpu = stubbedNode(NODES["nvidia 8 GPU"]);
    const g = run(readinessScript(gpu), gpu, { FAKE_GPUS: "8" });
    expect(g.stderr).toBe("");
    expect(g.stdout).toBe(`ready: gpu-0 (gpu nvidia) docker=27.5.1 volume=/dev/sdz@${gpu.volume.mountPath} gpus=8\n`);
  });

  it("fails with one line saying what is wrong and what was seen", () => {
    const gpu = stubbedNode(NODES["nvidia 8 GPU"]);
    const script = readinessScript(gpu);
    const cases: [Record<string, string>, string][] = [
      [{ FAKE_GPUS: "7" }, "not ready: gpu-0: gpu: nvidia-smi -L lists 7 GPUs, expected 8"],
      [{ FAKE_GPUS: "8", FAKE_RUNTIMES: "io.containerd.runc.v2 runc " }, "not ready: gpu-0: docker: nvidia runtime not registered (runtimes: io.containerd.runc.v2 runc )"],
      [{ FAKE_GPUS: "8", FAKE_FABRIC_RC: "3" }, "not ready: gpu-0: gpu: nvidia-fabricmanager is inactive, needed for NVSwitch"],
      [{ FAKE_DOCKER_DOWN: "1" }, "not ready: gpu-0: docker: daemon not answering (docker info: Cannot connect to the Docker daemon at unix:///var/run/docker.sock)"],
      [{ FAKE_DOCKER_VERSION: "" }, "not ready: gpu-0: docker: daemon not answering (docker info shows no server version)"],
      [{ FAKE_MOUNTPOINT_RC: "1" }, `not ready: gpu-0: volume: ${gpu.volume.mountPath} is not a mount point (device ${volumeDevicePath(gpu.volume.name)} absent; see /var/log/cloud-init-output.log)`],
      [{ FAKE_SOURCE: "/dev/vda1" }, `not ready: gpu-0: volume: ${gpu.volume.mountPath} is mounted from /dev/vda1, expected ${volumeDevicePath(gpu.volume.name)} (/dev/sdz)`],
      [{ FAKE_PASSWORD_AUTH: "yes" }, "not ready: gpu-0: ssh: password login is still enabled (passwordauthentication yes)"],
      [{ FAKE_CLOUD_INIT_RC: "124" }, "not ready: gpu-0: cloud-init still running after 1500 s (status: running)"],
    ];
    for (const [env, line] of cases) {
      const r = run(script, gpu, env);
      expect(r.status, JSON.stringify(env)).toBe(1);
      expect(r.stdout, JSON.stringify(env)).toBe("");
      expect(r.stderr, JSON.stringify(env)).toBe(`${line}\n`);
    }

    const empty = stubbedNode(NODES.cpu, false);
    expect(run(readinessScript(empty), empty).stderr).toBe(`not ready: cpu: volume: ${empty.volume.mountPath}/huggingface is missing\n`);
  });

  it("shows cloud-init's own report when cloud-init failed", () => {
    const cpu = stubbedNode(NODES.cpu);
    const r = run(readinessScript(cpu), cpu, { FAKE_CLOUD_INIT_RC: "1" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("not ready: cpu: cloud-init reported an error (exit 1)\nstatus: error\nerrors: runcmd failed\n--- last lines of /var/log/cloud-init-output.log ---");
  });

  it("goes on after recoverable cloud-init errors, with a warning", () => {
    const cpu = stubbedNode(NODES.cpu);
    const r = run(readinessScript(cpu), cpu, { FAKE_CLOUD_INIT_RC: "2" });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain("warning: cpu: cloud-init finished with recoverable errors:");
  });

  it("fails on an AMD node without the ROCm driver", () => {
    const amd = stubbedNode(NODES["amd 8 GPU"]);
    const r = run(readinessScript(amd), amd);
    expect(r.status).toBe(1);
    // The test machine has no /dev/kfd, like a droplet whose amdgpu module did not load.
    if (!existsSync("/dev/kfd")) expect(r.stderr).toBe("not ready: gpu-0: gpu: /dev/kfd missing: the ROCm (amdgpu) kernel driver is not loaded\n");
  });
});
