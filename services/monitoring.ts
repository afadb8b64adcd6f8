import type { HubConfig, MonitoringPlan } from "../stacks/hub-config";
import { CODER_SERVED_NAME, CPU_NODE_NAME, OCR_SERVED_NAME } from "../stacks/hub-config";
import { SANDBOX_NODE_NAME } from "../stacks/sandbox";
import type { GpuWindow } from "../stacks/windows";
import { parseWindows } from "../stacks/windows";
import { GATEKEEPER_CONTAINER, GATEKEEPER_PORT } from "./auth";
import { cpuPlacement, memoryLimitMiB } from "./coder";
import {
  AMD_DEVICE_METRICS_EXPORTER_IMAGE,
  ALERTMANAGER_IMAGE,
  DCGM_EXPORTER_IMAGE,
  NODE_EXPORTER_IMAGE,
  PROMETHEUS_IMAGE,
} from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import { GATEWAY_METRICS_PORT, GPU_SERVICE_PORTS } from "./ports";
import { AUTOSCALER_CONTAINER, type Route, routeTable } from "./routes";
// services/sandbox.ts must not import this file (it would be a cycle).
import { SANDBOX_SERVICE } from "./sandbox";
import type { ServiceSpec } from "./spec";

/**
 * Collection and alerting: Prometheus and Alertmanager on the CPU node, node_exporter on every
 * droplet, the GPU exporter (DCGM on NVIDIA, AMD's device-metrics-exporter on AMD) on every GPU
 * node. Everything is rendered from structured objects here; infra/services.ts writes the files.
 *
 * Targets: the CPU node's containers are fixed by the plan, so they are static_configs in
 * prometheus.yml (a change restarts Prometheus, as a changed Traefik static file does). GPU
 * nodes come and go with `gpu on/off` and the autoscaler, so their targets are file_sd files,
 * rewritten with the routes file and read by Prometheus without a restart: nothing is scraped
 * that the route table does not name. The sandbox node (no Docker) runs node_exporter as a systemd
 * service (services/sandbox-node-exporter.ts); its target is a file of its own in the `node` job,
 * written once that exporter answers.
 */

/** Default ports of each program (their docs and flag defaults). */
export const MONITORING_PORTS = {
  /** Prometheus --web.listen-address default 0.0.0.0:9090. */
  prometheus: 9090,
  /** Alertmanager --web.listen-address default :9093. */
  alertmanager: 9093,
  /** node_exporter --web.listen-address default :9100. */
  nodeExporter: 9100,
  /** dcgm-exporter DCGM_EXPORTER_LISTEN default ":9400". */
  dcgmExporter: 9400,
  /** device-metrics-exporter standalone: `docker run ... -p 5000:5000` (ROCm's docs). */
  amdExporter: 5000,
} as const;

export const PROMETHEUS_ROUTE_PREFIX = "/prometheus";
export const ALERTMANAGER_ROUTE_PREFIX = "/alertmanager";
export const PROMETHEUS_CONTAINER = "prometheus";
export const ALERTMANAGER_CONTAINER = "alertmanager";
export const NODE_EXPORTER_CONTAINER = "node-exporter";
export const GPU_EXPORTER_CONTAINER = "gpu-exporter";

/** Job names are a contract with the dashboards (monitoring/grafana). */
export const JOBS = {
  traefik: "traefik",
  gatekeeper: "gatekeeper",
  autoscaler: "autoscaler",
  vllm: "vllm",
  llamacpp: "llamacpp",
  node: "node",
  dcgm: "dcgm",
  amdgpu: "amdgpu",
  prometheus: "prometheus",
  alertmanager: "alertmanager",
} as const;

const PROMETHEUS_ROOT = `${CPU_CACHE_MOUNT}/prometheus`;
const ALERTMANAGER_ROOT = `${CPU_CACHE_MOUNT}/alertmanager`;
/**
 * Host directories on the CPU cache volume. The targets and secrets live inside the config
 * directory, which is mounted once, read-only: a mount inside it would need a mount point
 * created on a read-only mount, and runc refuses that ("read-only file system"), so the
 * containers would never start. No mount sits inside another (services/gateway.ts).
 */
export const MONITORING_DIRS = {
  prometheusConfig: `${PROMETHEUS_ROOT}/config`,
  prometheusTargets: `${PROMETHEUS_ROOT}/config/targets`,
  prometheusSecrets: `${PROMETHEUS_ROOT}/config/secrets`,
  prometheusData: `${PROMETHEUS_ROOT}/data`,
  alertmanagerConfig: `${ALERTMANAGER_ROOT}/config`,
  alertmanagerSecrets: `${ALERTMANAGER_ROOT}/config/secrets`,
  alertmanagerData: `${ALERTMANAGER_ROOT}/data`,
} as const;

/** The same directories inside the containers (targets and secrets reach them through the config mount). */
export const MONITORING_IN_CONTAINER = {
  prometheusConfig: "/etc/prometheus",
  prometheusTargets: "/etc/prometheus/targets",
  prometheusSecrets: "/etc/prometheus/secrets",
  // The image's own data directory (Dockerfile: VOLUME ["/prometheus"]).
  prometheusData: "/prometheus",
  alertmanagerConfig: "/etc/alertmanager",
  alertmanagerSecrets: "/etc/alertmanager/secrets",
  alertmanagerData: "/alertmanager",
} as const;

/** Files the plan renders; infra/ writes them under MONITORING_DIRS. */
export const MONITORING_FILES = {
  prometheusConfig: "prometheus.yml",
  rules: "hub-rules.yml",
  alertmanagerConfig: "alertmanager.yml",
  /** The backends' key, sent to llama.cpp's /metrics (llama-server guards every path but /health and /models). */
  llamaCppKey: "llamacpp-key",
  smtpPassword: "smtp-password",
  webhookUrl: "webhook-url",
} as const;

/** One file_sd file per GPU-node job. */
export const targetsFile = (job: string): string => `${job}.json`;
/** The sandbox node's node_exporter: a second file of the `node` job, written after that exporter answers. */
export const SANDBOX_NODE_TARGETS_FILE = `${JOBS.node}-${SANDBOX_NODE_NAME}.json`;

/** The `node` job's file_sd files. */
export const nodeTargetFiles = (hub: HubConfig): string[] => [
  targetsFile(JOBS.node),
  ...(hub.sandbox ? [SANDBOX_NODE_TARGETS_FILE] : []),
];

/** The user the prom/* images run as. */
export const PROM_IMAGE_UID = 65534;

export const SCRAPE_INTERVAL_SECONDS = 15;

const monitoringOf = (hub: HubConfig): MonitoringPlan | undefined => hub.monitoring;

// ---------------------------------------------------------------------------------------------
// Containers

const wgetCheck = (url: string): string[] => ["CMD", "wget", "-q", "-O", "/dev/null", url];

export function prometheusSpec(hub: HubConfig): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, "prometheus");
  const c = MONITORING_IN_CONTAINER;
  return {
    name: PROMETHEUS_CONTAINER,
    role: "prometheus",
    program: "prometheus",
    node: CPU_NODE_NAME,
    image: PROMETHEUS_IMAGE,
    // Flags of cmd/prometheus/main.go at v0.315.0; retention lives in prometheus.yml (the flags are deprecated in 3.15).
    command: [
      `--config.file=${c.prometheusConfig}/${MONITORING_FILES.prometheusConfig}`,
      `--storage.tsdb.path=${c.prometheusData}`,
      `--web.listen-address=:${MONITORING_PORTS.prometheus}`,
      // Grafana and an SSH tunnel both reach it under /prometheus.
      `--web.route-prefix=${PROMETHEUS_ROUTE_PREFIX}`,
      `--web.external-url=http://localhost:${MONITORING_PORTS.prometheus}${PROMETHEUS_ROUTE_PREFIX}`,
    ],
    env: {},
    secretEnv: {},
    port: MONITORING_PORTS.prometheus,
    // On the private address only; the gateway firewall admits the VPC alone.
    publishOnPrivateIp: true,
    mounts: [
      // Holds targets/ and secrets/ too: one mount, none inside another.
      { hostPath: MONITORING_DIRS.prometheusConfig, containerPath: c.prometheusConfig, readOnly: true },
      { hostPath: MONITORING_DIRS.prometheusData, containerPath: c.prometheusData },
    ],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    health: {
      path: `${PROMETHEUS_ROUTE_PREFIX}/-/healthy`,
      test: wgetCheck(`http://127.0.0.1:${MONITORING_PORTS.prometheus}${PROMETHEUS_ROUTE_PREFIX}/-/healthy`),
      intervalSeconds: 30,
      timeoutSeconds: 5,
      startPeriodSeconds: 120,
      retries: 3,
    },
  };
}

export function alertmanagerSpec(hub: HubConfig): ServiceSpec {
  const { node, workload } = cpuPlacement(hub, "alertmanager");
  const c = MONITORING_IN_CONTAINER;
  return {
    name: ALERTMANAGER_CONTAINER,
    role: "alertmanager",
    program: "alertmanager",
    node: CPU_NODE_NAME,
    image: ALERTMANAGER_IMAGE,
    // Flags of cmd/alertmanager/main.go at v0.34.1.
    command: [
      `--config.file=${c.alertmanagerConfig}/${MONITORING_FILES.alertmanagerConfig}`,
      `--storage.path=${c.alertmanagerData}`,
      `--web.listen-address=:${MONITORING_PORTS.alertmanager}`,
      `--web.route-prefix=${ALERTMANAGER_ROUTE_PREFIX}`,
      `--web.external-url=http://localhost:${MONITORING_PORTS.alertmanager}${ALERTMANAGER_ROUTE_PREFIX}`,
      // One Alertmanager, no peers: an empty address turns the HA gossip listener (:9094) off.
      "--cluster.listen-address=",
    ],
    env: {},
    secretEnv: {},
    port: MONITORING_PORTS.alertmanager,
    // Reached by Prometheus on the Docker network; published on the private address for an SSH tunnel (no firewall rule admits it).
    publishOnPrivateIp: true,
    mounts: [
      // Holds secrets/ too.
      { hostPath: MONITORING_DIRS.alertmanagerConfig, containerPath: c.alertmanagerConfig, readOnly: true },
      { hostPath: MONITORING_DIRS.alertmanagerData, containerPath: c.alertmanagerData },
    ],
    memoryLimitMiB: memoryLimitMiB(node, workload),
    health: {
      path: `${ALERTMANAGER_ROUTE_PREFIX}/-/healthy`,
      test: wgetCheck(`http://127.0.0.1:${MONITORING_PORTS.alertmanager}${ALERTMANAGER_ROUTE_PREFIX}/-/healthy`),
      intervalSeconds: 30,
      timeoutSeconds: 5,
      startPeriodSeconds: 30,
      retries: 3,
    },
  };
}

/** node_exporter as its README runs it in Docker: host network and PID namespace, the host's / read-only at /host with rslave propagation. */
export function nodeExporterSpec(node: string): ServiceSpec {
  return {
    name: NODE_EXPORTER_CONTAINER,
    role: "node-exporter",
    program: "node-exporter",
    node,
    image: NODE_EXPORTER_IMAGE,
    // --path.rootfs does not move udev's data (default /run/udev/data, the container's own, empty): without this the
    // diskstats collector logs "Failed to open directory" and loses the disks' device properties (seen on the real engine).
    command: [
      "--path.rootfs=/host",
      "--path.udev.data=/host/run/udev/data",
      `--web.listen-address=:${MONITORING_PORTS.nodeExporter}`,
    ],
    env: {},
    secretEnv: {},
    port: MONITORING_PORTS.nodeExporter,
    // On the host's network it listens on every interface; the cloud firewalls admit 9100 from the VPC only.
    hostNamespaces: true,
    mounts: [{ hostPath: "/", containerPath: "/host", readOnly: true, propagation: "rslave" }],
    memoryLimitMiB: 128,
    health: {
      path: "/metrics",
      test: wgetCheck(`http://127.0.0.1:${MONITORING_PORTS.nodeExporter}/metrics`),
      intervalSeconds: 30,
      timeoutSeconds: 5,
      startPeriodSeconds: 10,
      retries: 3,
    },
  };
}

/** GPU telemetry: DCGM exporter on NVIDIA (GPU runtime as vLLM has, SYS_ADMIN for profiling fields), AMD's exporter on ROCm devices. */
export function gpuExporterSpec(node: string, vendor: "nvidia" | "amd"): ServiceSpec {
  if (vendor === "amd") {
    return {
      name: GPU_EXPORTER_CONTAINER,
      role: "gpu-exporter",
      program: "amd-device-metrics-exporter",
      node,
      image: AMD_DEVICE_METRICS_EXPORTER_IMAGE,
      command: [],
      env: {},
      secretEnv: {},
      port: MONITORING_PORTS.amdExporter,
      publishOnPrivateIp: true,
      gpu: { vendor: "amd" },
      mounts: [],
      memoryLimitMiB: 256,
      // What the image ships was not checked (no shell or HTTP client is known to be in it): no Docker check; Prometheus' `up` watches it.
      health: {
        path: "/metrics",
        test: ["NONE"],
        intervalSeconds: 30,
        timeoutSeconds: 5,
        startPeriodSeconds: 30,
        retries: 3,
      },
    };
  }
  return {
    name: GPU_EXPORTER_CONTAINER,
    role: "gpu-exporter",
    program: "dcgm-exporter",
    node,
    image: DCGM_EXPORTER_IMAGE,
    // The image's entrypoint starts dcgm-exporter with its default counters (default-counters.csv).
    command: [],
    env: { DCGM_EXPORTER_LISTEN: `:${MONITORING_PORTS.dcgmExporter}` },
    secretEnv: {},
    port: MONITORING_PORTS.dcgmExporter,
    publishOnPrivateIp: true,
    gpu: { vendor: "nvidia" },
    capAdd: ["SYS_ADMIN"],
    mounts: [],
    memoryLimitMiB: 512,
    // bash is in the ubuntu22.04 variant; /dev/tcp needs no HTTP client.
    health: {
      path: "/metrics",
      test: ["CMD", "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${MONITORING_PORTS.dcgmExporter}`],
      intervalSeconds: 30,
      timeoutSeconds: 5,
      startPeriodSeconds: 60,
      retries: 3,
    },
  };
}

/** Every monitoring container on every node that exists now. */
export function monitoringSpecs(hub: HubConfig): ServiceSpec[] {
  const plan = monitoringOf(hub);
  if (!plan) return [];
  const specs = [prometheusSpec(hub), alertmanagerSpec(hub)];
  if (!plan.exporters) return specs;
  specs.push(nodeExporterSpec(CPU_NODE_NAME));
  if (hub.gpu?.on) {
    for (const node of hub.nodes.filter((n) => n.kind === "gpu"))
      specs.push(nodeExporterSpec(node.name), gpuExporterSpec(node.name, hub.gpu.size.vendor));
  }
  return specs;
}

// ---------------------------------------------------------------------------------------------
// prometheus.yml

interface StaticConfig {
  readonly targets: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
}

interface ScrapeConfig {
  readonly job_name: string;
  readonly metrics_path?: string;
  readonly static_configs?: readonly StaticConfig[];
  readonly file_sd_configs?: readonly { readonly files: readonly string[]; readonly refresh_interval?: string }[];
  readonly authorization?: { readonly type: "Bearer"; readonly credentials_file: string };
}

/** What the plan knows of the CPU node's other containers: the autoscaler's and llama.cpp's ports come from their specs. */
export interface CpuContainer {
  readonly name: string;
  readonly program: string;
  readonly port: number;
}

/** GPU-node jobs whose targets come from file_sd (only in tiers that have GPU nodes). */
export function gpuJobs(hub: HubConfig): string[] {
  if (!hub.gpu) return [];
  const plan = monitoringOf(hub);
  const exporterJobs = plan?.exporters ? [JOBS.node, hub.gpu.size.vendor === "amd" ? JOBS.amdgpu : JOBS.dcgm] : [];
  return [JOBS.vllm, ...exporterJobs];
}

export function prometheusConfig(hub: HubConfig, cpuContainers: readonly CpuContainer[]): Record<string, unknown> {
  const plan = monitoringOf(hub);
  if (!plan) throw new Error("prometheusConfig: monitoring is off for this stack");
  const c = MONITORING_IN_CONTAINER;
  const fileSd = (job: string): ScrapeConfig => ({
    job_name: job,
    file_sd_configs: [
      {
        files: (job === JOBS.node ? nodeTargetFiles(hub) : [targetsFile(job)]).map(
          (f) => `${c.prometheusTargets}/${f}`,
        ),
        refresh_interval: "1m",
      },
    ],
  });
  const scrape: ScrapeConfig[] = [
    {
      job_name: JOBS.prometheus,
      metrics_path: `${PROMETHEUS_ROUTE_PREFIX}/metrics`,
      static_configs: [{ targets: [`localhost:${MONITORING_PORTS.prometheus}`] }],
    },
    {
      job_name: JOBS.alertmanager,
      metrics_path: `${ALERTMANAGER_ROUTE_PREFIX}/metrics`,
      static_configs: [{ targets: [`${ALERTMANAGER_CONTAINER}:${MONITORING_PORTS.alertmanager}`] }],
    },
    // Traefik's VPC-only metrics entry point (services/gateway.ts METRICS_VPC_ROUTER).
    { job_name: JOBS.traefik, static_configs: [{ targets: [`gateway:${GATEWAY_METRICS_PORT}`] }] },
    // The gatekeeper's own port on the Docker network, never a public entry point.
    { job_name: JOBS.gatekeeper, static_configs: [{ targets: [`${GATEKEEPER_CONTAINER}:${GATEKEEPER_PORT}`] }] },
  ];
  const autoscaler = cpuContainers.find((s) => s.name === AUTOSCALER_CONTAINER);
  if (autoscaler)
    scrape.push({
      job_name: JOBS.autoscaler,
      static_configs: [{ targets: [`${autoscaler.name}:${autoscaler.port}`] }],
    });
  const llama = cpuContainers.filter((s) => s.program === "llama.cpp");
  if (llama.length) {
    scrape.push({
      job_name: JOBS.llamacpp,
      static_configs: llama.map((s) => ({
        targets: [`${s.name}:${s.port}`],
        labels: { role: s.name, node: CPU_NODE_NAME },
      })),
      authorization: { type: "Bearer", credentials_file: `${c.prometheusSecrets}/${MONITORING_FILES.llamaCppKey}` },
    });
  }
  for (const job of gpuJobs(hub)) scrape.push(fileSd(job));
  if (plan.exporters && !scrape.some((s) => s.job_name === JOBS.node)) scrape.push(fileSd(JOBS.node));
  return {
    global: {
      scrape_interval: `${SCRAPE_INTERVAL_SECONDS}s`,
      evaluation_interval: `${SCRAPE_INTERVAL_SECONDS}s`,
      external_labels: { stack_tier: hub.tier },
    },
    rule_files: [`${c.prometheusConfig}/${MONITORING_FILES.rules}`],
    alerting: {
      alertmanagers: [
        {
          path_prefix: ALERTMANAGER_ROUTE_PREFIX,
          static_configs: [{ targets: [`${ALERTMANAGER_CONTAINER}:${MONITORING_PORTS.alertmanager}`] }],
        },
      ],
    },
    storage: { tsdb: { retention: { time: `${plan.retentionDays}d`, size: `${plan.retentionSizeGiB}GB` } } },
    scrape_configs: scrape,
  };
}

export interface TargetGroup {
  readonly targets: string[];
  readonly labels: Record<string, string>;
}

/**
 * The file_sd files, from the route table and the nodes' private addresses: vLLM where a route
 * names a replica, the exporters on every GPU node that exists, node_exporter on the CPU node and
 * the sandbox node. An empty list is a valid file: the job then has no target.
 */
export function scrapeTargets(
  hub: HubConfig,
  routes: readonly Route[],
  privateIps: Readonly<Record<string, string>>,
): Record<string, TargetGroup[]> {
  const plan = monitoringOf(hub);
  if (!plan) return {};
  const files: Record<string, TargetGroup[]> = {};
  const gpuNodes = hub.gpu?.on ? hub.nodes.filter((n) => n.kind === "gpu" && privateIps[n.name]) : [];
  if (hub.gpu) {
    const vllm: TargetGroup[] = [];
    for (const route of routes) {
      for (const backend of route.primary) {
        if (backend.address.kind !== "vpc") continue;
        const ip = privateIps[backend.node];
        if (!ip) continue;
        const model = backend.port === GPU_SERVICE_PORTS.ocr ? OCR_SERVED_NAME : CODER_SERVED_NAME;
        vllm.push({ targets: [`${ip}:${backend.port}`], labels: { replica: backend.node, model, node: backend.node } });
      }
    }
    files[targetsFile(JOBS.vllm)] = vllm;
  }
  if (!plan.exporters) return files;
  const cpuIp = privateIps[CPU_NODE_NAME];
  files[targetsFile(JOBS.node)] = [
    ...(cpuIp ? [{ targets: [`${cpuIp}:${MONITORING_PORTS.nodeExporter}`], labels: { node: CPU_NODE_NAME } }] : []),
    ...gpuNodes.map((n) => ({
      targets: [`${privateIps[n.name]}:${MONITORING_PORTS.nodeExporter}`],
      labels: { node: n.name },
    })),
  ];
  const sandboxIp = privateIps[SANDBOX_NODE_NAME];
  if (hub.sandbox)
    files[SANDBOX_NODE_TARGETS_FILE] = sandboxIp
      ? [{ targets: [`${sandboxIp}:${MONITORING_PORTS.nodeExporter}`], labels: { node: SANDBOX_NODE_NAME } }]
      : [];
  if (hub.gpu) {
    const amd = hub.gpu.size.vendor === "amd";
    const port = amd ? MONITORING_PORTS.amdExporter : MONITORING_PORTS.dcgmExporter;
    files[targetsFile(amd ? JOBS.amdgpu : JOBS.dcgm)] = gpuNodes.map((n) => ({
      targets: [`${privateIps[n.name]}:${port}`],
      labels: { node: n.name },
    }));
  }
  return files;
}

// ---------------------------------------------------------------------------------------------
// alertmanager.yml

/** Which secret receivers the stack has configured (the program knows; the plan sees the keys). */
export interface AlertSecrets {
  readonly webhook: boolean;
  readonly smtpPassword: boolean;
}

export const ALERT_RECEIVER = "hub";
export const NO_RECEIVER = "ui-only";

export const NO_ALERT_RECEIVER_WARNING =
  "alertEmail and alertWebhookUrl are unset: alerts are shown only in Prometheus (/prometheus/alerts) and Alertmanager (/alertmanager), reached over an SSH tunnel; nothing is sent. Set alertEmail (with alertSmtpSmarthost, alertSmtpFrom) or the secret alertWebhookUrl.";

/** Whether any alert leaves the hub; without one, they are shown only in Prometheus and Alertmanager. */
export const hasAlertReceiver = (hub: HubConfig, secrets: AlertSecrets): boolean =>
  Boolean(monitoringOf(hub)?.email) || secrets.webhook;

/** alertmanager.yml: secrets only by file (smtp_auth_password_file, url_file), so this file holds none. */
export function alertmanagerConfig(hub: HubConfig, secrets: AlertSecrets): Record<string, unknown> {
  const plan = monitoringOf(hub);
  if (!plan) throw new Error("alertmanagerConfig: monitoring is off for this stack");
  const dir = MONITORING_IN_CONTAINER.alertmanagerSecrets;
  const email = plan.email;
  const global: Record<string, unknown> = { resolve_timeout: "5m" };
  if (email) {
    global.smtp_smarthost = email.smarthost;
    global.smtp_from = email.from;
    global.smtp_require_tls = true;
    if (email.user) global.smtp_auth_username = email.user;
    if (email.user && secrets.smtpPassword) global.smtp_auth_password_file = `${dir}/${MONITORING_FILES.smtpPassword}`;
  }
  const receiver: Record<string, unknown> = { name: ALERT_RECEIVER };
  if (email) receiver.email_configs = [{ to: email.to, send_resolved: true }];
  if (secrets.webhook)
    receiver.webhook_configs = [{ url_file: `${dir}/${MONITORING_FILES.webhookUrl}`, send_resolved: true }];
  const any = hasAlertReceiver(hub, secrets);
  return {
    global,
    route: {
      receiver: any ? ALERT_RECEIVER : NO_RECEIVER,
      group_by: ["alertname", "node"],
      group_wait: "30s",
      group_interval: "5m",
      repeat_interval: "4h",
    },
    // A receiver with no integration is valid: alerts stay visible in the UI and go nowhere.
    receivers: [any ? receiver : { name: NO_RECEIVER }],
  };
}

// ---------------------------------------------------------------------------------------------
// Alert rules

/** Thresholds, named so docs/monitoring.md and the rule unit tests read the same values. */
export const ALERT_THRESHOLDS = {
  /** A GPU node with no coder request for this long is idle. */
  gpuIdleMinutes: 60,
  /** Fraction of the GPU budget spent this month. */
  budgetFraction: 0.8,
  /** Share of client requests answered 5xx (503 excluded: the hub's deliberate "GPU off"). */
  errorRatio: 0.05,
  errorMinutes: 10,
  /** Client requests per second below which an error ratio means nothing. */
  errorMinRatePerSecond: 0.05,
  /** The oldest unshipped audit record, while shipping fails. */
  spoolAgeSeconds: 600,
  /** Days before a certificate expires (Let's Encrypt renews at 30). */
  certificateDays: 14,
  nodeDownMinutes: 5,
  /** Free share of a boot disk or the CPU cache volume (the model caches are filled by design). */
  diskFreeFraction: 0.1,
  /** Share of a node's RAM the kernel could still hand out (MemAvailable). */
  memoryAvailableFraction: 0.1,
  /** Minutes a disk or memory condition lasts before it alerts. */
  nodeResourceMinutes: 10,
  /** Restarts of the sandbox API within sandboxRestartWindowMinutes: a crash loop that Restart=always hides. */
  sandboxRestarts: 3,
  sandboxRestartWindowMinutes: 15,
  /** Minutes the sandbox keeps turning executions away (503: every slot busy, the queue full). */
  sandboxBusyMinutes: 10,
  /** Sandbox requests failing (5xx other than 503) in 10 minutes: at least this many and this share. */
  sandboxFailures: 3,
  sandboxFailureRatio: 0.05,
  /** Minutes a GPU may stay up outside its windows (the scheduled pipeline's own tick is a few minutes). */
  outsideWindowMinutes: 30,
} as const;

/** Minutes east of UTC of a time zone at one instant. */
export function utcOffsetMinutes(timeZone: string, at: Date): number {
  const f = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
  });
  const p: Record<string, number> = {};
  for (const part of f.formatToParts(at)) if (part.type !== "literal") p[part.type] = Number(part.value);
  const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute);
  return Math.round((wall - Math.floor(at.getTime() / 60_000) * 60_000) / 60_000);
}

const WEEK_MINUTES = 7 * 1440;

/**
 * PromQL that has a value exactly while the clock is inside one of the windows. PromQL knows UTC
 * only, so each window is shifted by its zone's offset at `at` (the plan's time): the rule is
 * rendered on every deploy, and for the weeks around a DST change it can be an hour off until the
 * next one.
 */
export function insideWindowsExpr(windows: readonly GpuWindow[], at: Date): string {
  const ranges: string[] = [];
  for (const w of windows) {
    const offset = utcOffsetMinutes(w.timeZone, at);
    // The local minute of the week, 0 = Sunday 00:00 local.
    const local = `((day_of_week() * 1440 + hour() * 60 + minute() + ${offset + WEEK_MINUTES}) % ${WEEK_MINUTES})`;
    for (const day of [...w.days].sort()) ranges.push(`(${local} >= ${day * 1440 + w.start} < ${day * 1440 + w.end})`);
  }
  return ranges.join(" or ");
}

interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

const minutes = (n: number) => `${n}m`;

/** The hub's alerts, for what this stack runs. `at` fixes the windows' UTC offsets (see insideWindowsExpr). */
export function alertRules(hub: HubConfig, at: Date = new Date()): { groups: { name: string; rules: AlertRule[] }[] } {
  const t = ALERT_THRESHOLDS;
  const rules: AlertRule[] = [];
  const publicEntryPoints = 'entrypoint=~"web|websecure|legacy"';
  rules.push({
    alert: "HubHighErrorRate",
    expr: `(sum(rate(traefik_entrypoint_requests_total{${publicEntryPoints},code=~"5..",code!="503"}[5m])) / sum(rate(traefik_entrypoint_requests_total{${publicEntryPoints}}[5m]))) > ${t.errorRatio} and sum(rate(traefik_entrypoint_requests_total{${publicEntryPoints}}[5m])) > ${t.errorMinRatePerSecond}`,
    for: minutes(t.errorMinutes),
    labels: { severity: "warning" },
    annotations: {
      summary: `More than ${t.errorRatio * 100}% of client requests failed with a 5xx for ${t.errorMinutes} minutes`,
      description:
        "{{ $value | humanizePercentage }} of requests on the public entry points answered 5xx (503 gpu_off excluded). See Traefik's access log and the backends' containers.",
    },
  });
  rules.push({
    alert: "HubAuditSpoolGrowing",
    expr: `hub_gatekeeper_spool_oldest_pending_age_seconds > ${t.spoolAgeSeconds} and on() increase(hub_gatekeeper_ship_failures_total[10m]) > 0`,
    for: "5m",
    labels: { severity: "critical" },
    annotations: {
      summary: "Audit records are not reaching PostgreSQL",
      description:
        "The oldest audit record waiting in the gatekeeper's spool is {{ $value | humanizeDuration }} old and shipping keeps failing: check auditDatabaseUrl's database.",
    },
  });
  rules.push({
    alert: "HubAuditDiskFull",
    expr: "hub_gatekeeper_disk_full == 1",
    for: "1m",
    labels: { severity: "critical" },
    annotations: {
      summary: "The gatekeeper's audit spool disk is full",
      description: "The gatekeeper cannot write audit records on the CPU cache volume: grow cpuCacheGiB or free space.",
    },
  });
  rules.push({
    alert: "HubCertificateExpiresSoon",
    expr: `(traefik_tls_certs_not_after - time()) / 86400 < ${t.certificateDays}`,
    for: "1h",
    labels: { severity: "warning" },
    annotations: {
      summary: `A TLS certificate expires in under ${t.certificateDays} days`,
      description:
        "Certificate {{ $labels.cn }} expires in {{ $value | humanize }} days; Let's Encrypt renewal (HTTP-01 on port 80) is failing. See Traefik's log.",
    },
  });
  if (monitoringOf(hub)?.exporters) {
    rules.push(...nodeResourceRules());
    rules.push({
      alert: "HubNodeDown",
      expr: `up{job="${JOBS.node}"} == 0`,
      for: minutes(t.nodeDownMinutes),
      labels: { severity: "critical" },
      annotations: {
        summary: "A node stopped answering",
        description: "node_exporter on {{ $labels.node }} ({{ $labels.instance }}) has not answered for 5 minutes.",
      },
    });
  }
  rules.push({
    alert: "HubScrapeTargetDown",
    expr: `up{job=~"${[JOBS.traefik, JOBS.gatekeeper, JOBS.autoscaler].join("|")}"} == 0`,
    for: "5m",
    labels: { severity: "warning" },
    annotations: {
      summary: "A hub program's metrics are unreachable",
      description: "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
    },
  });
  if (hub.gpu) {
    // The controller's own gauges: GPU spend so far this month against the GPU budget it enforces.
    rules.push({
      alert: "HubBudgetNearlySpent",
      expr: `hub_autoscaler_month_spend_usd > ${t.budgetFraction} * hub_autoscaler_gpu_budget_usd and hub_autoscaler_gpu_budget_usd > 0`,
      for: "5m",
      labels: { severity: "warning" },
      annotations: {
        summary: `GPU spend passed ${t.budgetFraction * 100}% of this month's budget`,
        description: `\${{ $value | printf "%.2f" }} of GPU spend so far this month (budgetUsd ${hub.budgetUsd}); the autoscaler refuses wakes that would exceed the budget.`,
      },
    });
    // An hour of scrapes with no request finished or running. count_over_time waits for a full hour of data, so a new replica is not "idle".
    const samplesPerHour = (t.gpuIdleMinutes * 60) / SCRAPE_INTERVAL_SECONDS;
    rules.push({
      alert: "HubGpuIdle",
      expr: `sum by (replica) (increase(vllm:e2e_request_latency_seconds_count{job="${JOBS.vllm}",model="${CODER_SERVED_NAME}"}[${t.gpuIdleMinutes}m])) == 0 and on(replica) max by (replica) (max_over_time(vllm:num_requests_running{job="${JOBS.vllm}",model="${CODER_SERVED_NAME}"}[${t.gpuIdleMinutes}m])) == 0 and on(replica) min by (replica) (count_over_time(up{job="${JOBS.vllm}",model="${CODER_SERVED_NAME}"}[${t.gpuIdleMinutes}m])) >= ${Math.floor(samplesPerHour * 0.95)}`,
      for: "5m",
      labels: { severity: "warning" },
      annotations: {
        summary: `GPU replica {{ $labels.replica }} has served no coder request for ${t.gpuIdleMinutes} minutes`,
        description:
          "It is billed by the second while idle: turn it off (npm run hub -- gpu off) or check the autoscaler.",
      },
    });
    const windows = parseWindows(hub.settings.gpuWindows).windows;
    if (hub.tier === "hybrid" && windows.length) {
      rules.push({
        alert: "HubGpuOutsideWindows",
        expr: `count(up{job="${JOBS.vllm}",model="${CODER_SERVED_NAME}"} == 1) > 0 unless on() (${insideWindowsExpr(windows, at)})`,
        for: minutes(t.outsideWindowMinutes),
        labels: { severity: "warning" },
        // The offsets, not the date: the file (and Prometheus) changes only when an offset does.
        annotations: {
          summary: "A GPU node is up outside its gpuWindows",
          description: `{{ $value }} GPU replica(s) answering outside ${hub.settings.gpuWindows.join(", ")} (read with UTC offsets ${[...new Set(windows.map((w) => `${w.timeZone} ${utcOffsetMinutes(w.timeZone, at)} min`))].join(", ")}). A pin (gpu on --for) explains it; otherwise check the autoscaler.`,
        },
      });
    }
  }
  if (hub.sandbox) rules.push(...sandboxRules(hub));
  return { groups: [{ name: "inference-hub", rules }] };
}

/** Disks and memory on every droplet (node_exporter's node_filesystem_* and node_memory_*). */
function nodeResourceRules(): AlertRule[] {
  const t = ALERT_THRESHOLDS;
  const node = `job="${JOBS.node}"`;
  // The boot disk (Docker's images; on the sandbox node runsc and the languages' tree) and the CPU cache volume.
  const disks = `${node},mountpoint=~"/|${CPU_CACHE_MOUNT}"`;
  return [
    {
      alert: "HubNodeDiskAlmostFull",
      expr: `node_filesystem_avail_bytes{${disks}} / node_filesystem_size_bytes{${disks}} < ${t.diskFreeFraction}`,
      for: minutes(t.nodeResourceMinutes),
      labels: { severity: "warning" },
      annotations: {
        summary: `{{ $labels.mountpoint }} on {{ $labels.node }} has less than ${t.diskFreeFraction * 100}% free`,
        description:
          "{{ $value | humanizePercentage }} of {{ $labels.mountpoint }} on {{ $labels.node }} is free. A full boot disk stops the node's containers (on the sandbox node, every execution); a full CPU cache volume stops Prometheus and the audit spool. Free space (docker system prune on a Docker node), or grow cpuCacheGiB.",
      },
    },
    {
      alert: "HubNodeMemoryLow",
      expr: `node_memory_MemAvailable_bytes{${node}} / node_memory_MemTotal_bytes{${node}} < ${t.memoryAvailableFraction}`,
      for: minutes(t.nodeResourceMinutes),
      labels: { severity: "warning" },
      annotations: {
        summary: `{{ $labels.node }} has less than ${t.memoryAvailableFraction * 100}% of its memory available`,
        description:
          "{{ $value | humanizePercentage }} of {{ $labels.node }}'s RAM is available; the kernel will soon kill the largest process. Check the plan's RAM fit (npm run plan) or choose a larger size.",
      },
    },
  ];
}

/**
 * The sandbox (docs/sandbox.md): its API's systemd unit, as node_exporter's systemd collector
 * reports it on the sandbox node, and its route's answers, as Traefik counts them (the front
 * passes the node's 503 `sandbox_busy` on; it answers 502 itself when the node does not answer).
 */
function sandboxRules(hub: HubConfig): AlertRule[] {
  const t = ALERT_THRESHOLDS;
  const rules: AlertRule[] = [];
  if (monitoringOf(hub)?.exporters) {
    const onNode = `job="${JOBS.node}",node="${SANDBOX_NODE_NAME}"`;
    rules.push({
      alert: "HubSandboxApiDown",
      expr: `node_systemd_unit_state{${onNode},name="${SANDBOX_SERVICE}",state="active"} == 0 or node_scrape_collector_success{${onNode},collector="systemd"} == 0`,
      for: minutes(t.nodeDownMinutes),
      labels: { severity: "critical" },
      annotations: {
        summary: "The sandbox API is not running",
        description: `${SANDBOX_SERVICE} on the sandbox node is not active (or node_exporter cannot read systemd over D-Bus): every execution fails. See journalctl -u ${SANDBOX_SERVICE} on the node.`,
      },
    });
    rules.push({
      alert: "HubSandboxApiRestarting",
      expr: `increase(node_systemd_service_restart_total{${onNode},name="${SANDBOX_SERVICE}"}[${t.sandboxRestartWindowMinutes}m]) > ${t.sandboxRestarts}`,
      labels: { severity: "warning" },
      annotations: {
        summary: "The sandbox API keeps restarting",
        description: `systemd restarted ${SANDBOX_SERVICE} {{ $value | humanize }} times in ${t.sandboxRestartWindowMinutes} minutes; executions in flight fail each time. See journalctl -u ${SANDBOX_SERVICE} on the node.`,
      },
    });
  }
  const route = routeTable(hub).find((r) => r.scope === "sandbox");
  if (!route) return rules;
  // Traefik's file provider names the router <name>@file.
  const router = `router="${route.name}@file"`;
  const failed = `traefik_router_requests_total{${router},code=~"5..",code!="503"}`;
  rules.push({
    alert: "HubSandboxBusy",
    expr: `sum(rate(traefik_router_requests_total{${router},code="503"}[5m])) > 0`,
    for: minutes(t.sandboxBusyMinutes),
    labels: { severity: "warning" },
    annotations: {
      summary: `The sandbox has turned executions away for ${t.sandboxBusyMinutes} minutes`,
      description:
        "{{ $value | humanize }} requests/s answered 503 on the sandbox route: every slot busy and the queue full (sandbox_busy). A larger sandboxSize adds a slot per vCPU.",
    },
  });
  rules.push({
    alert: "HubSandboxFailing",
    expr: `sum(increase(${failed}[10m])) / sum(increase(traefik_router_requests_total{${router}}[10m])) > ${t.sandboxFailureRatio} and sum(increase(${failed}[10m])) >= ${t.sandboxFailures}`,
    for: "5m",
    labels: { severity: "warning" },
    annotations: {
      summary: "Sandbox requests are failing",
      description: `{{ $value | humanizePercentage }} of sandbox requests answered 5xx (503 excluded) in 10 minutes: the front cannot reach the sandbox node (502; its log says "sandbox node did not answer") or the API failed. See the sandbox-front container's log and journalctl -u ${SANDBOX_SERVICE} on the node.`,
    },
  });
  return rules;
}
