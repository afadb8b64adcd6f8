import { stringify } from "yaml";

export const MODEL_CACHE_MOUNT = "/mnt/model-cache";
export const CPU_CACHE_MOUNT = "/mnt/cpu-cache";

export interface NodeSetupInput {
  readonly nodeName: string;
  readonly role: "cpu" | "gpu";
  readonly gpuVendor?: "nvidia" | "amd";
  /** GPUs the droplet must show (1 or 8). */
  readonly gpuCount?: number;
  /** The DigitalOcean block-storage volume this node mounts (created with initialFilesystemType ext4). */
  readonly volume: { readonly name: string; readonly mountPath: string };
  /** Directories to create on the volume, relative to mountPath (e.g. "huggingface", "vllm"). */
  readonly dataDirs: readonly string[];
}

/** Bounded wait for the volume: the VolumeAttachment lands after the droplet boots. */
export const VOLUME_WAIT_SECONDS = 300;
const VOLUME_POLL_SECONDS = 5;
/** Package installs plus the volume wait take minutes; longer than this means cloud-init is stuck. */
export const CLOUD_INIT_WAIT_SECONDS = 1500;

export const VOLUME_SCRIPT_PATH = "/usr/local/sbin/inference-hub-volume";
export const DOCKER_DAEMON_JSON_PATH = "/etc/docker/daemon.json";
export const SSHD_DROP_IN_PATH = "/etc/ssh/sshd_config.d/60-inference-hub.conf";
export const AUTO_UPGRADES_PATH = "/etc/apt/apt.conf.d/20auto-upgrades";
export const NVIDIA_HOLD_PATH = "/etc/apt/apt.conf.d/51inference-hub-nvidia-hold";

/** Rotated json-file logs: Docker's default keeps container logs forever and fills the boot disk. */
export const DOCKER_DAEMON_CONFIG = {
  "log-driver": "json-file",
  // Docker rejects numbers here: log-opts values must be strings.
  "log-opts": { "max-size": "50m", "max-file": "5" },
} as const;

export function volumeDevicePath(volumeName: string): string {
  return `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`;
}

interface Gpu {
  readonly vendor: "nvidia" | "amd";
  readonly count: number;
}

// Every value below ends up in shell text: accept only plain names so no quoting can break.
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// DigitalOcean's rule: lowercase letters, digits and "-", starting with a letter, at most 64.
const VOLUME_NAME = /^[a-z][a-z0-9-]{0,63}$/;
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

function validPath(p: string, absolute: boolean): boolean {
  const parts = (absolute ? p.replace(/^\//, "") : p).split("/");
  return (absolute ? p.startsWith("/") : !p.startsWith("/")) && parts.length > 0 && parts.every((s) => SEGMENT.test(s) && s !== "." && s !== "..");
}

/** Checks the input and returns the GPU spec, or undefined on a CPU node. */
function checkInput(input: NodeSetupInput): Gpu | undefined {
  const problems: string[] = [];
  if (!NODE_NAME.test(input.nodeName)) problems.push(`nodeName ${JSON.stringify(input.nodeName)} must be letters, digits, ".", "_" or "-"`);
  if (!VOLUME_NAME.test(input.volume.name)) problems.push(`volume name ${JSON.stringify(input.volume.name)} is not a valid DigitalOcean volume name`);
  if (!validPath(input.volume.mountPath, true)) problems.push(`mountPath ${JSON.stringify(input.volume.mountPath)} must be a plain absolute path`);
  for (const d of input.dataDirs) if (!validPath(d, false)) problems.push(`dataDir ${JSON.stringify(d)} must be a plain relative path inside the volume`);
  let gpu: Gpu | undefined;
  if (input.role === "gpu") {
    if (!input.gpuVendor) problems.push("a gpu node needs gpuVendor");
    if (input.gpuCount === undefined || !Number.isInteger(input.gpuCount) || input.gpuCount < 1) problems.push(`a gpu node needs a positive integer gpuCount (got ${input.gpuCount})`);
    if (input.gpuVendor && input.gpuCount !== undefined) gpu = { vendor: input.gpuVendor, count: input.gpuCount };
  } else if (input.gpuVendor !== undefined || input.gpuCount !== undefined) {
    problems.push("a cpu node takes neither gpuVendor nor gpuCount");
  }
  if (problems.length > 0) throw new Error(`node setup for ${input.nodeName}: ${problems.join("; ")}`);
  return gpu;
}

/** Single-quotes a word for bash. */
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Waits for the volume, mounts it through fstab and creates the data directories. A script file
 * rather than inline runcmd so it can be syntax-checked and rerun by hand.
 */
export function volumeScript(input: NodeSetupInput): string {
  const dev = volumeDevicePath(input.volume.name);
  const mnt = input.volume.mountPath;
  const tries = Math.ceil(VOLUME_WAIT_SECONDS / VOLUME_POLL_SECONDS);
  const dirs = input.dataDirs.map((d) => sq(`${mnt}/${d}`)).join(" ");
  return [
    "#!/bin/bash",
    `# Mounts volume ${input.volume.name} for inference-hub node ${input.nodeName}.`,
    "set -uo pipefail",
    `dev=${sq(dev)}`,
    `mnt=${sq(mnt)}`,
    "# Bounded: never hang cloud-init when the attachment fails.",
    `for _ in $(seq 1 ${tries}); do`,
    '  [ -b "$dev" ] && break',
    `  sleep ${VOLUME_POLL_SECONDS}`,
    "done",
    'if [ ! -b "$dev" ]; then',
    `  echo "inference-hub: ERROR volume device $dev did not appear within ${VOLUME_WAIT_SECONDS} s: $mnt is NOT mounted (is the volume attached?)" >&2`,
    "  exit 1",
    "fi",
    "# cloud-init's mounts module skips devices missing at boot: rerun it now that the device is here.",
    'timeout 120 cloud-init single --name mounts --frequency always || echo "inference-hub: WARNING rerunning the cloud-init mounts module failed" >&2',
    "mount -a || true",
    'if ! mountpoint -q "$mnt"; then',
    '  echo "inference-hub: ERROR $dev is present but $mnt is not mounted (check /etc/fstab and the filesystem)" >&2',
    "  exit 1",
    "fi",
    "# Only on the mounted volume: on the boot disk these would silently fill it with weights.",
    ...(dirs ? [`mkdir -p ${dirs}`] : []),
    'echo "inference-hub: volume $dev mounted at $mnt"',
    "",
  ].join("\n");
}

const SSHD_DROP_IN = [
  "# inference-hub: keys only. sshd keeps the first value it reads, so a lower-numbered file can override this.",
  "PasswordAuthentication no",
  "KbdInteractiveAuthentication no",
  "PermitRootLogin prohibit-password",
  "",
].join("\n");

const AUTO_UPGRADES = ['APT::Periodic::Update-Package-Lists "1";', 'APT::Periodic::Unattended-Upgrade "1";', ""].join("\n");

// A driver upgrade under running containers breaks NVML ("Driver/library version mismatch").
const NVIDIA_HOLD = [
  "// inference-hub: upgrade the NVIDIA driver deliberately (with a reboot), never unattended.",
  "Unattended-Upgrade::Package-Blacklist {",
  '    "nvidia-";',
  '    "libnvidia-";',
  "};",
  "",
].join("\n");

const AMD_DEVICE_CHECK = '[ -c /dev/kfd ] && [ -d /dev/dri ] || echo "inference-hub: ERROR /dev/kfd or /dev/dri missing: the ROCm (amdgpu) kernel driver is not loaded, containers will see no GPU" >&2';

export function cloudInitDocument(input: NodeSetupInput): Record<string, unknown> {
  const gpu = checkInput(input);
  const file = (path: string, content: string, permissions = "0644", defer = false) => ({ path, content, owner: "root:root", permissions, ...(defer ? { defer: true } : {}) });

  const writeFiles = [
    // Init stage, before packages install, so Docker starts with rotation and nvidia-ctk merges into it.
    file(DOCKER_DAEMON_JSON_PATH, `${JSON.stringify(DOCKER_DAEMON_CONFIG, null, 2)}\n`),
    file(SSHD_DROP_IN_PATH, SSHD_DROP_IN),
    // Deferred until after package installs so a package's postinst cannot replace it.
    file(AUTO_UPGRADES_PATH, AUTO_UPGRADES, "0644", true),
    file(VOLUME_SCRIPT_PATH, volumeScript(input), "0755"),
    ...(gpu?.vendor === "nvidia" ? [file(NVIDIA_HOLD_PATH, NVIDIA_HOLD)] : []),
  ];

  const runcmd: (string | string[])[] = [
    // The drop-in was written after sshd may have started; a no-op when sshd is socket-activated and idle.
    ["systemctl", "try-reload-or-restart", "ssh"],
    ["systemctl", "enable", "--now", "docker"],
  ];
  if (gpu?.vendor === "nvidia") {
    // The GPU images ship the toolkit but no Docker: register the runtime now that Docker exists.
    runcmd.push(["nvidia-ctk", "runtime", "configure", "--runtime=docker"], ["systemctl", "restart", "docker"]);
  } else if (gpu?.vendor === "amd") {
    // ROCm containers get the GPUs through these device nodes; say so early if they are missing.
    runcmd.push(AMD_DEVICE_CHECK);
  }
  // Last: it may wait minutes for the attachment; its failure is logged, and the readiness check reports it.
  runcmd.push([VOLUME_SCRIPT_PATH]);

  return {
    package_update: true,
    // No package_upgrade: slow, and on GPU images it can pull a kernel the driver was not built for.
    packages: ["docker.io", "unattended-upgrades"],
    ssh_pwauth: false,
    write_files: writeFiles,
    // Written only if the device exists when the module runs; the volume script reruns it otherwise.
    mounts: [[volumeDevicePath(input.volume.name), input.volume.mountPath, "ext4", "defaults,nofail,discard,noatime", "0", "2"]],
    runcmd,
  };
}

export function renderCloudInit(input: NodeSetupInput): string {
  // cloud-init reads YAML 1.1 (PyYAML): quote "no", "on", "0644" and the like as 1.1 would read them.
  return `#cloud-config\n${stringify(cloudInitDocument(input), { version: "1.1", lineWidth: 0 })}`;
}

/**
 * Bash run as root over SSH once the droplet answers: waits for cloud-init, then checks what the
 * services need. Each failure prints one line (what is wrong, what was seen) and exits non-zero.
 */
export function readinessScript(input: NodeSetupInput): string {
  const gpu = checkInput(input);
  const dev = volumeDevicePath(input.volume.name);
  const lines = [
    "#!/usr/bin/env bash",
    `# inference-hub readiness check for node ${input.nodeName}.`,
    "set -euo pipefail",
    // A non-login SSH session may lack the sbin directories (sshd).
    'export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"',
    `node=${sq(input.nodeName)}`,
    `dev=${sq(dev)}`,
    `mnt=${sq(input.volume.mountPath)}`,
    'fail() { echo "not ready: $node: $*" >&2; exit 1; }',
    // First line of captured output, for one-line messages.
    "first() { head -n1 <<<\"$1\"; }",
    "",
    "# Bounded: a stuck apt mirror or volume would otherwise hold the deployment forever.",
    "rc=0",
    `timeout ${CLOUD_INIT_WAIT_SECONDS} cloud-init status --wait >/dev/null 2>&1 || rc=$?`,
    'case "$rc" in',
    "  0) ;;",
    "  # Newer cloud-init: done with recoverable errors (e.g. deprecated keys); the checks below judge the result.",
    '  2) echo "warning: $node: cloud-init finished with recoverable errors:" >&2; timeout 30 cloud-init status --long >&2 || true ;;',
    `  124) fail "cloud-init still running after ${CLOUD_INIT_WAIT_SECONDS} s ($(timeout 30 cloud-init status 2>&1 | tail -n1))" ;;`,
    '  *) echo "not ready: $node: cloud-init reported an error (exit $rc)" >&2',
    "     timeout 30 cloud-init status --long >&2 || true",
    '     echo "--- last lines of /var/log/cloud-init-output.log ---" >&2',
    "     tail -n 60 /var/log/cloud-init-output.log >&2 || true",
    "     exit 1 ;;",
    "esac",
    "",
    "docker_version=$(timeout 60 docker info --format '{{.ServerVersion}}' 2>&1) || fail \"docker: daemon not answering (docker info: $(first \"$docker_version\"))\"",
    // An empty version means no daemon answered, whatever the exit status.
    'docker_version=$(first "$docker_version")',
    '[ -n "$docker_version" ] || fail "docker: daemon not answering (docker info shows no server version)"',
    "",
    'timeout 10 mountpoint -q "$mnt" || fail "volume: $mnt is not a mount point (device $dev $([ -b "$dev" ] && echo present || echo absent); see /var/log/cloud-init-output.log)"',
    'want=$(readlink -f "$dev" || true)',
    'got=$(timeout 10 findmnt -n -o SOURCE --mountpoint "$mnt" | tail -n1 || true)',
    '[ "$got" = "$want" ] || fail "volume: $mnt is mounted from ${got:-nothing}, expected $dev ($want)"',
    ...input.dataDirs.map((d) => `[ -d "$mnt"/${sq(d)} ] || fail ${sq(`volume: ${input.volume.mountPath}/${d} is missing`)}`),
    "",
    // sshd keeps the first value it reads: check the effective setting, not our file.
    'sshd_config=$(timeout 10 sshd -T 2>&1) || fail "ssh: sshd -T failed: $(first "$sshd_config")"',
    "grep -qx 'passwordauthentication no' <<<\"$sshd_config\" || fail \"ssh: password login is still enabled ($(grep -m1 '^passwordauthentication' <<<\"$sshd_config\" || echo 'no passwordauthentication line'))\"",
    "",
  ];

  let gpus = "none";
  if (gpu?.vendor === "nvidia") {
    gpus = "$gpus";
    lines.push(
      'gpu_list=$(timeout 60 nvidia-smi -L 2>&1) || fail "gpu: nvidia-smi -L failed: $(first "$gpu_list")"',
      "gpus=$(grep -c '^GPU ' <<<\"$gpu_list\" || true)",
      `[ "$gpus" -eq ${gpu.count} ] || fail "gpu: nvidia-smi -L lists $gpus GPUs, expected ${gpu.count}"`,
      "runtimes=$(timeout 60 docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' 2>&1) || fail \"docker: cannot list runtimes: $(first \"$runtimes\")\"",
      'case " $runtimes " in *" nvidia "*) ;; *) fail "docker: nvidia runtime not registered (runtimes: $runtimes)" ;; esac',
    );
    if (gpu.count > 1) {
      // NVSwitch systems: without the fabric manager CUDA reports "system not yet initialized".
      lines.push('timeout 10 systemctl is-active --quiet nvidia-fabricmanager || fail "gpu: nvidia-fabricmanager is $(timeout 10 systemctl is-active nvidia-fabricmanager || true), needed for NVSwitch"');
    }
  } else if (gpu?.vendor === "amd") {
    gpus = "$gpus";
    lines.push(
      '[ -c /dev/kfd ] || fail "gpu: /dev/kfd missing: the ROCm (amdgpu) kernel driver is not loaded"',
      // Render nodes bound to amdgpu: a VM's display adapter has render nodes too, so plain renderD* over-counts.
      "gpus=0",
      "for n in /sys/class/drm/renderD*; do",
      '  driver=$(readlink -f "$n/device/driver" 2>/dev/null || true)',
      '  if [ "${driver##*/}" = amdgpu ]; then gpus=$((gpus + 1)); fi',
      "done",
      `[ "$gpus" -eq ${gpu.count} ] || fail "gpu: $gpus amdgpu render nodes, expected ${gpu.count} (/dev/dri: $(ls /dev/dri 2>/dev/null | tr '\\n' ' '))"`,
    );
  }

  const kind = gpu ? `gpu ${gpu.vendor}` : "cpu";
  lines.push("", `echo "ready: $node (${kind}) docker=$docker_version volume=$want@$mnt gpus=${gpus}"`, "");
  return lines.join("\n");
}
