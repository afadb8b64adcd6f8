import { stringify } from "yaml";
import { SANDBOX_FRONT_PORT, SANDBOX_HEALTH_PATH, SANDBOX_NODE_PORT } from "../programs/sandbox/protocol";
import { ROOTFS_RECIPE, rootfsBuildScript } from "../programs/sandbox/rootfs";
import { RUNSC_GO_TOOLCHAIN, RUNSC_LDFLAGS, RUNSC_PACKAGE, RUNSC_VERSION } from "../programs/sandbox/runsc-version";
import { SANDBOX_NODE_RUNTIME } from "../programs/sandbox/bundle";
import { CPU_NODE_NAME, type HubConfig } from "../stacks/hub-config";
import { GATEKEEPER_CONTAINER, GATEKEEPER_PORT } from "./auth";
import { NODE_IMAGE } from "./images";
import {
  AUTO_UPGRADES,
  AUTO_UPGRADES_PATH,
  CPU_CACHE_MOUNT,
  cloudInitFile,
  SSHD_DROP_IN,
  SSHD_DROP_IN_PATH,
} from "./node-setup";
import {
  nodeExporterBuildScript,
  nodeExporterUnit,
  nodeExporterVersionIs,
  SANDBOX_NODE_EXPORTER_PATHS,
  SANDBOX_NODE_EXPORTER_SERVICE,
  SANDBOX_NODE_EXPORTER_VERSION,
} from "./sandbox-node-exporter";
import type { ServiceSpec } from "./spec";
import { EXECUTIONS_PATH } from "../programs/gatekeeper/protocol";

/**
 * The code-execution sandbox (docs/sandbox.md), in two pieces:
 *  - the front, a container on the gateway node: the route's backend, holder of the sandbox
 *    token, author of each execution's audit report (programs/sandbox/front/);
 *  - the sandbox node, a droplet of its own with no Docker and no hub secret: gVisor's runsc, the
 *    languages' Debian tree, and the API (programs/sandbox/) as a systemd service run by Debian's
 *    own Node.js.
 */

export const SANDBOX_FRONT_CONTAINER = "sandbox-front";
/** The droplet image: Debian 13, whose nodejs (20.19) runs the API; seen as a DigitalOcean slug in public Pulumi and Terraform code (2026-12-07) ⚠ not checked against `doctl compute image list`. */
export const SANDBOX_NODE_IMAGE = "debian-13-x64";

const FRONT_ROOT = `${CPU_CACHE_MOUNT}/sandbox-front`;
export const SANDBOX_FRONT_DIRS = { app: `${FRONT_ROOT}/app`, config: `${FRONT_ROOT}/config` } as const;
export const SANDBOX_FRONT_FILES = {
  bundle: `${SANDBOX_FRONT_DIRS.app}/sandbox-front.js`,
  nodeUrl: `${SANDBOX_FRONT_DIRS.config}/node-url`,
} as const;

/** Where things live on the sandbox node. */
export const SANDBOX_NODE_PATHS = {
  bundle: "/opt/inference-hub/sandbox/sandbox.js",
  env: "/etc/inference-hub/sandbox.env",
  setup: "/usr/local/sbin/inference-hub-sandbox-setup",
  unit: "/etc/systemd/system/inference-hub-sandbox.service",
  runsc: "/usr/local/bin/runsc",
  rootfs: "/var/lib/inference-hub-sandbox/rootfs",
  buildCache: "/var/cache/inference-hub-sandbox",
  /** systemd's RuntimeDirectory: on tmpfs, so a reboot leaves no sandbox state behind. */
  state: "/run/inference-hub-sandbox",
} as const;
export const SANDBOX_SERVICE = "inference-hub-sandbox.service";
/** The first boot builds runsc (about 10 minutes on 2 vCPUs) and the Debian tree from the snapshot archive (slow at times). */
export const SANDBOX_SETUP_WAIT_SECONDS = 3600;
export const SANDBOX_SETUP_SERVICE = "inference-hub-sandbox-setup.service";
const SETUP_UNIT_PATH = `/etc/systemd/system/${SANDBOX_SETUP_SERVICE}`;
/** The units node_exporter reports on (services/monitoring.ts alerts on the API's). */
export const SANDBOX_WATCHED_UNITS = [SANDBOX_SERVICE, SANDBOX_SETUP_SERVICE] as const;

export function sandboxFrontSpec(hub: HubConfig): ServiceSpec | undefined {
  if (!hub.sandbox) return undefined;
  return {
    name: SANDBOX_FRONT_CONTAINER,
    role: "sandbox-front",
    program: "sandbox-front",
    node: CPU_NODE_NAME,
    image: NODE_IMAGE,
    command: ["node", "/app/sandbox-front.js"],
    env: {
      NODE_ENV: "production",
      SANDBOX_FRONT_PORT: String(SANDBOX_FRONT_PORT),
      // Written by the deployment once the sandbox node's private address is known.
      SANDBOX_NODE_URL_FILE: "/config/node-url",
      SANDBOX_AUDIT_URL: `http://${GATEKEEPER_CONTAINER}:${GATEKEEPER_PORT}${EXECUTIONS_PATH}`,
    },
    // The sandbox token opens the sandbox API and nothing else; the node knows only its digest.
    secretEnv: { SANDBOX_NODE_TOKEN: "sandboxToken" },
    port: SANDBOX_FRONT_PORT,
    mounts: [
      { hostPath: SANDBOX_FRONT_DIRS.app, containerPath: "/app", readOnly: true },
      { hostPath: SANDBOX_FRONT_DIRS.config, containerPath: "/config", readOnly: true },
    ],
    // Holds at most a few requests' files and results (each under 100 MB) at once.
    memoryLimitMiB: 256,
    health: {
      path: SANDBOX_HEALTH_PATH,
      test: [
        "CMD",
        "node",
        "-e",
        `fetch('http://127.0.0.1:${SANDBOX_FRONT_PORT}${SANDBOX_HEALTH_PATH}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
      ],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 20,
      retries: 3,
    },
  };
}

export const sandboxNodeUrl = (privateIp: string): string => `http://${privateIp}:${SANDBOX_NODE_PORT}`;

/** The API's environment file on the sandbox node: no secret in it, only the token's digest. */
export function sandboxNodeEnv(input: {
  readonly tokenSha256: string;
  readonly privateIp: string;
  readonly slots: number;
}): string {
  if (!/^[0-9a-f]{64}$/.test(input.tokenSha256)) throw new Error("the sandbox token digest must be 64 hex digits");
  if (!/^[0-9.]+$/.test(input.privateIp))
    throw new Error(`the sandbox node's private address ${JSON.stringify(input.privateIp)} is not an IPv4 address`);
  return [
    "# inference-hub sandbox API (programs/sandbox/config.ts); written by the deployment.",
    `SANDBOX_TOKEN_SHA256=${input.tokenSha256}`,
    // Only the VPC address: the firewall admits the gateway node alone, and nothing listens on the public one.
    `SANDBOX_HOST=${input.privateIp}`,
    `SANDBOX_PORT=${SANDBOX_NODE_PORT}`,
    `SANDBOX_RUNSC=${SANDBOX_NODE_PATHS.runsc}`,
    `SANDBOX_ROOTFS_DIR=${SANDBOX_NODE_PATHS.rootfs}`,
    `SANDBOX_STATE_DIR=${SANDBOX_NODE_PATHS.state}`,
    "SANDBOX_PLATFORM=systrap",
    `SANDBOX_SLOTS=${input.slots}`,
    "",
  ].join("\n");
}

/** runsc and node_exporter from the Go module proxy at their pins, then the languages' tree from the pinned Debian snapshot. */
export function sandboxSetupScript(): string {
  return [
    "#!/bin/bash",
    "# Builds gVisor's runsc, node_exporter and the sandbox languages' root file system (services/sandbox.ts). Idempotent.",
    "set -euo pipefail",
    'export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"',
    `cache=${SANDBOX_NODE_PATHS.buildCache}`,
    // Debian's go fetches the pinned toolchain (golang.org/toolchain, checked against sum.golang.org), as the tests' build uses.
    `goenv=(env HOME=/root GOPATH="$cache/go" GOCACHE="$cache/go-build" GOBIN="$cache/bin" GOTOOLCHAIN=${RUNSC_GO_TOOLCHAIN} GOPROXY=https://proxy.golang.org,direct GOSUMDB=sum.golang.org CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false)`,
    `if ! ${SANDBOX_NODE_PATHS.runsc} --version 2>/dev/null | grep -qx 'runsc version ${RUNSC_VERSION}'; then`,
    '  mkdir -p "$cache/bin"',
    `  "\${goenv[@]}" go install -trimpath -ldflags '${RUNSC_LDFLAGS}' ${RUNSC_PACKAGE}`,
    `  "$cache/bin/runsc" --version | grep -qx 'runsc version ${RUNSC_VERSION}' || { echo "inference-hub-sandbox: the built runsc is not ${RUNSC_VERSION}" >&2; exit 1; }`,
    `  install -m 0755 "$cache/bin/runsc" ${SANDBOX_NODE_PATHS.runsc}`,
    "fi",
    // Built whether or not monitoring is on, so turning it on or off never changes the user data (and replaces no droplet).
    nodeExporterBuildScript(),
    // The build cache is a few GB of the boot disk; the pinned versions never need it again.
    'rm -rf "$cache/go" "$cache/go-build" "$cache/bin"',
    rootfsBuildScript({ dir: SANDBOX_NODE_PATHS.rootfs, versions: "strict" })
      .split("\n")
      .filter((l) => !l.startsWith("#!") && !l.startsWith("set -euo"))
      .join("\n"),
  ].join("\n");
}

/** The API's unit: Debian's Node.js runs the bundle as root (runsc needs namespaces, mounts and cgroups). */
export function sandboxServiceUnit(): string {
  return [
    "[Unit]",
    "Description=inference-hub code-execution sandbox API (gVisor)",
    `After=network-online.target ${SANDBOX_SETUP_SERVICE}`,
    `Requires=${SANDBOX_SETUP_SERVICE}`,
    "Wants=network-online.target",
    // The deployment uploads both once the node is ready; until then there is nothing to run.
    `ConditionPathExists=${SANDBOX_NODE_PATHS.bundle}`,
    `ConditionPathExists=${SANDBOX_NODE_PATHS.env}`,
    "",
    "[Service]",
    `EnvironmentFile=${SANDBOX_NODE_PATHS.env}`,
    `ExecStart=/usr/bin/node ${SANDBOX_NODE_PATHS.bundle}`,
    "Restart=always",
    "RestartSec=2",
    "RuntimeDirectory=inference-hub-sandbox",
    "RuntimeDirectoryMode=0700",
    // The API destroys its sandboxes on SIGTERM; the next start sweeps whatever a kill left.
    "TimeoutStopSec=40",
    "ProtectHome=yes",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

function setupUnit(): string {
  return [
    "[Unit]",
    "Description=inference-hub sandbox: build runsc and the languages' root file system",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    `ExecStart=${SANDBOX_NODE_PATHS.setup}`,
    `TimeoutStartSec=${SANDBOX_SETUP_WAIT_SECONDS}`,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The sandbox node's cloud-config: no Docker, no volume, no secret; packages, the setup, the API's and node_exporter's units. */
export function sandboxCloudInitDocument(hostKey?: {
  readonly privateKey: string;
  readonly publicKey: string;
}): Record<string, unknown> {
  const file = cloudInitFile;
  return {
    package_update: true,
    // nodejs runs the API (the bundle targets Debian 13's Node 20); debootstrap builds the languages'
    // tree; golang-go fetches the pinned Go toolchain that builds runsc and node_exporter; dbus lets
    // node_exporter read the units' states.
    packages: ["nodejs", "debootstrap", "golang-go", "ca-certificates", "curl", "dbus", "unattended-upgrades"],
    ssh_pwauth: false,
    ...(hostKey
      ? { ssh_deletekeys: true, ssh_keys: { ed25519_private: hostKey.privateKey, ed25519_public: hostKey.publicKey } }
      : {}),
    write_files: [
      file(SSHD_DROP_IN_PATH, SSHD_DROP_IN),
      file(AUTO_UPGRADES_PATH, AUTO_UPGRADES, "0644", true),
      file(SANDBOX_NODE_PATHS.setup, sandboxSetupScript(), "0755"),
      file(SETUP_UNIT_PATH, setupUnit()),
      file(SANDBOX_NODE_PATHS.unit, sandboxServiceUnit()),
      file(SANDBOX_NODE_EXPORTER_PATHS.unit, nodeExporterUnit(SANDBOX_WATCHED_UNITS)),
    ],
    runcmd: [
      ["systemctl", "try-reload-or-restart", "ssh"],
      ["systemctl", "daemon-reload"],
      // In the foreground: cloud-init (and the readiness check behind it) ends when runsc and the tree are built.
      ["systemctl", "enable", "--now", SANDBOX_SETUP_SERVICE],
      ["systemctl", "enable", SANDBOX_SERVICE],
      // Starts only once the deployment writes its address (monitoring on); then at every boot.
      ["systemctl", "enable", SANDBOX_NODE_EXPORTER_SERVICE],
    ],
  };
}

export function renderSandboxCloudInit(hostKey?: { readonly privateKey: string; readonly publicKey: string }): string {
  return `#cloud-config\n${stringify(sandboxCloudInitDocument(hostKey), { version: "1.1", lineWidth: 0 })}`;
}

/** Run over SSH once the droplet answers: cloud-init done, runsc at the pin, the tree built, Node as the bundle expects. */
export function sandboxReadinessScript(): string {
  const nodeMajor = SANDBOX_NODE_RUNTIME.replace(/^node/, "");
  return [
    "#!/usr/bin/env bash",
    "# inference-hub readiness check for the sandbox node.",
    "set -euo pipefail",
    'export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"',
    'fail() { echo "not ready: sandbox: $*" >&2; exit 1; }',
    "rc=0",
    `timeout ${SANDBOX_SETUP_WAIT_SECONDS} cloud-init status --wait >/dev/null 2>&1 || rc=$?`,
    'case "$rc" in 0|2) ;; 124) fail "cloud-init still running (building runsc takes about 10 minutes)" ;; *) timeout 30 cloud-init status --long >&2 || true; tail -n 40 /var/log/cloud-init-output.log >&2 || true; fail "cloud-init reported an error (exit $rc)" ;; esac',
    `version=$(${SANDBOX_NODE_PATHS.runsc} --version 2>&1 | head -n1 || true)`,
    `[ "$version" = ${sq(`runsc version ${RUNSC_VERSION}`)} ] || fail "runsc is \${version:-missing}, expected ${RUNSC_VERSION} (journalctl -u ${SANDBOX_SETUP_SERVICE})"`,
    `[ -f ${SANDBOX_NODE_PATHS.rootfs}/manifest.json ] || fail "the languages' root file system is not built (journalctl -u ${SANDBOX_SETUP_SERVICE})"`,
    `${nodeExporterVersionIs(SANDBOX_NODE_EXPORTER_PATHS.binary)} || fail "node_exporter is not ${SANDBOX_NODE_EXPORTER_VERSION} (journalctl -u ${SANDBOX_SETUP_SERVICE})"`,
    `node_version=$(node --version 2>&1 || true); case "$node_version" in v${nodeMajor}.*) ;; *) fail "node is \${node_version:-missing}, the API bundle targets Node ${nodeMajor}" ;; esac`,
    'sshd_config=$(timeout 10 sshd -T 2>&1) || fail "sshd -T failed"',
    'grep -qx \'passwordauthentication no\' <<<"$sshd_config" || fail "ssh: password login is still enabled"',
    `echo "ready: sandbox runsc=${RUNSC_VERSION} node_exporter=${SANDBOX_NODE_EXPORTER_VERSION} rootfs=${ROOTFS_RECIPE.suite}@${ROOTFS_RECIPE.snapshot} $node_version"`,
    "",
  ].join("\n");
}

/** Bash that writes stdin to `path` atomically (the bundle, the env file), readable by root only unless `mode` says otherwise. */
export function sandboxInstallFileScript(path: string, mode: "0600" | "0644"): string {
  const dir = path.slice(0, path.lastIndexOf("/"));
  return `install -d -m 0755 ${sq(dir)} && (umask 077 && cat > ${sq(`${path}.tmp`)}) && chmod ${mode} ${sq(`${path}.tmp`)} && mv ${sq(`${path}.tmp`)} ${sq(path)}`;
}

/** Restarts the API with the new bundle and settings, and waits until it answers on its private address. */
export function sandboxRestartScript(privateIp: string): string {
  return [
    "set -euo pipefail",
    "systemctl daemon-reload",
    `systemctl enable ${SANDBOX_SERVICE} >/dev/null`,
    `systemctl restart ${SANDBOX_SERVICE}`,
    `for _ in $(seq 1 60); do curl -fsS --max-time 3 ${sq(`${sandboxNodeUrl(privateIp)}${SANDBOX_HEALTH_PATH}`)} >/dev/null && exit 0; sleep 2; done`,
    `echo "the sandbox API did not answer on ${sandboxNodeUrl(privateIp)}${SANDBOX_HEALTH_PATH} within 120 s:" >&2`,
    `journalctl -u ${SANDBOX_SERVICE} -n 40 --no-pager >&2 || true`,
    "exit 1",
  ].join("\n");
}
