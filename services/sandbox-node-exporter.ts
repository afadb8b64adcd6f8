import { NODE_EXPORTER_IMAGE } from "./images";

/**
 * node_exporter on the sandbox node. Every other node runs it as a container of the pinned image;
 * the sandbox node has no Docker (a root daemon and its socket beside untrusted code, for one
 * exporter), so it runs the same program at the image's version as a systemd service: built at
 * setup from the Go module proxy (checked against sum.golang.org) with the release's recipe, as
 * runsc is, and listening on the node's private address only.
 *
 * Flags, against the containers' (services/monitoring.ts nodeExporterSpec): `--path.rootfs=/host`
 * and `--path.udev.data=/host/run/udev/data` point a container at the host's paths and are left
 * out (natively the defaults are the host's own); `--web.listen-address` names the private address
 * instead of `:9100`; the systemd collector is added, limited to the sandbox's own units, so an
 * alert sees the API stopped or restarting (it reads systemd over D-Bus, hence the dbus package).
 */

/** The version the node builds: the image's tag without its "v" (what `node_exporter --version` prints). */
export const SANDBOX_NODE_EXPORTER_VERSION = NODE_EXPORTER_IMAGE.tag.replace(/^v/, "");
const MODULE = "github.com/prometheus/node_exporter";
const COMMON_VERSION = "github.com/prometheus/common/version";

export const SANDBOX_NODE_EXPORTER_PATHS = {
  binary: "/usr/local/bin/node_exporter",
  /** Written by the deployment (the listen address); without it the unit does not start. */
  env: "/etc/inference-hub/node-exporter.env",
  unit: "/etc/systemd/system/inference-hub-node-exporter.service",
} as const;
export const SANDBOX_NODE_EXPORTER_SERVICE = "inference-hub-node-exporter.service";

/**
 * The release's link flags (node_exporter's .promu.yml), as tools/prometheus-tools.ts builds the
 * tests' copy: Revision is the module tag (the proxy names no commit), BuildDate is left out.
 */
export const SANDBOX_NODE_EXPORTER_LDFLAGS = [
  `-X ${COMMON_VERSION}.Version=${SANDBOX_NODE_EXPORTER_VERSION}`,
  `-X ${COMMON_VERSION}.Revision=${NODE_EXPORTER_IMAGE.tag}`,
  `-X ${COMMON_VERSION}.Branch=HEAD`,
  `-X ${COMMON_VERSION}.BuildUser=inference-hub@sandbox-node`,
].join(" ");

/**
 * Bash: true when `binary` is node_exporter at the pinned version (it prints "node_exporter, version
 * 1.12.1 (branch: ..." first). No pipe: under pipefail, a reader that stops early fails the writer.
 */
export const nodeExporterVersionIs = (binary: string): string =>
  `[[ "$("${binary}" --version 2>&1)" == "node_exporter, version ${SANDBOX_NODE_EXPORTER_VERSION} "* ]]`;

/**
 * Bash for the setup script (inside its `set -euo pipefail`, with `$cache` and the Go environment
 * in `$goenv`, whose toolchain, go1.26.8, is the one node_exporter's release builds with: go 1.26
 * in its .promu.yml): builds node_exporter unless the pinned one is installed. No `replace` line in
 * its go.mod, so `go install module@version` builds what the release builds.
 */
export function nodeExporterBuildScript(): string {
  const p = SANDBOX_NODE_EXPORTER_PATHS;
  return [
    `if ! ${nodeExporterVersionIs(p.binary)}; then`,
    '  mkdir -p "$cache/bin"',
    `  "\${goenv[@]}" go install -trimpath -tags netgo -ldflags '${SANDBOX_NODE_EXPORTER_LDFLAGS}' ${MODULE}@${NODE_EXPORTER_IMAGE.tag}`,
    `  ${nodeExporterVersionIs("$cache/bin/node_exporter")} || { echo "inference-hub-sandbox: the built node_exporter is not ${SANDBOX_NODE_EXPORTER_VERSION}" >&2; exit 1; }`,
    `  install -m 0755 "$cache/bin/node_exporter" ${p.binary}`,
    "fi",
  ].join("\n");
}

/** A regular expression matching exactly these unit names (node_exporter anchors it: `^(?:...)$`). */
export const unitNamesPattern = (units: readonly string[]): string =>
  units.map((u) => u.replace(/[.]/g, "[.]")).join("|");

/** The exporter's unit: unprivileged (DynamicUser), started once the deployment has written its address. */
export function nodeExporterUnit(watchedUnits: readonly string[]): string {
  const p = SANDBOX_NODE_EXPORTER_PATHS;
  return [
    "[Unit]",
    `Description=Prometheus node_exporter ${SANDBOX_NODE_EXPORTER_VERSION} for the hub's Prometheus (inference-hub)`,
    "After=network-online.target dbus.service",
    "Wants=network-online.target",
    `ConditionPathExists=${p.env}`,
    "",
    "[Service]",
    `EnvironmentFile=${p.env}`,
    [
      `ExecStart=${p.binary}`,
      // One word: systemd passes the variable's value as a single argument.
      "--web.listen-address=${NODE_EXPORTER_ADDRESS}",
      "--collector.systemd",
      `--collector.systemd.unit-include=${unitNamesPattern(watchedUnits)}`,
      "--collector.systemd.enable-restarts-metrics",
    ].join(" "),
    // Reads /proc, /sys and statfs() only; the prom/node-exporter image runs it as nobody too.
    "DynamicUser=yes",
    "NoNewPrivileges=yes",
    "Restart=always",
    "RestartSec=5",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/** The exporter's environment file: where it listens (the VPC address only; the firewall admits the gateway node). */
export function nodeExporterEnv(privateIp: string, port: number): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(privateIp))
    throw new Error(`the sandbox node's private address ${JSON.stringify(privateIp)} is not an IPv4 address`);
  return [
    "# node_exporter on the sandbox node (services/sandbox-node-exporter.ts); written by the deployment.",
    `NODE_EXPORTER_ADDRESS=${privateIp}:${port}`,
    "",
  ].join("\n");
}

/** Restarts the exporter (its address may be new) and waits until it answers on the private address. */
export function nodeExporterRestartScript(privateIp: string, port: number): string {
  const url = `http://${privateIp}:${port}/metrics`;
  return [
    "systemctl daemon-reload",
    `systemctl enable ${SANDBOX_NODE_EXPORTER_SERVICE} >/dev/null`,
    `systemctl restart ${SANDBOX_NODE_EXPORTER_SERVICE}`,
    `for _ in $(seq 1 30); do curl -fsS --max-time 3 '${url}' >/dev/null && exit 0; sleep 2; done`,
    `echo "node_exporter did not answer on ${url} within 60 s:" >&2`,
    `journalctl -u ${SANDBOX_NODE_EXPORTER_SERVICE} -n 40 --no-pager >&2 || true`,
    "exit 1",
  ].join("\n");
}

/** Run when monitoring is turned off: the exporter stops, and without its address it stays stopped. */
export const nodeExporterStopScript = (): string =>
  `systemctl stop ${SANDBOX_NODE_EXPORTER_SERVICE} || true; rm -f '${SANDBOX_NODE_EXPORTER_PATHS.env}'`;
