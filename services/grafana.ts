import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { jobExporting, type ScrapeJob } from "../stacks/catalogue/metrics";
import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { GRAFANA_IMAGE } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import type { ServiceSpec } from "./spec";

/**
 * Grafana OSS on the CPU node, reached only through the gateway at /grafana/ with an `admin` key.
 * Only the image runs: Grafana's Go module is AGPL, so nothing of it is built or vendored here.
 *
 * Login model: auth.proxy keyed on X-Hub-Key-Id. The gatekeeper sets that header on an allowed
 * request to the key's public id, and the gateway deletes any client's own (strip-client-ids), so
 * the one credential is the hub's admin API key: revoking it ends Grafana access at once, every
 * visit is in the gatekeeper's audit log, and there is no second password to keep. Grafana's own
 * login form, basic auth, anonymous access and its initial admin account are all off. Grafana
 * publishes no port: only containers on the CPU node's Docker network can reach it (see the README
 * for what that leaves open). Option names: conf/defaults.ini ([auth.proxy], [auth.anonymous],
 * [security] disable_initial_admin_creation, [server] serve_from_sub_path), read 2026-12-02.
 */
export const GRAFANA_CONTAINER = "grafana";
/** Grafana's default http_port (conf/defaults.ini [server]). */
export const GRAFANA_PORT = 3000;
/** The public prefix; Grafana serves under it itself (serve_from_sub_path), so the gateway passes paths unchanged. */
export const GRAFANA_PATH_PREFIX = "/grafana/";
/** The header Grafana's auth.proxy reads the user from; the gatekeeper is its only writer. */
export const GRAFANA_USER_HEADER = "X-Hub-Key-Id";

/**
 * Prometheus as the monitoring branch runs it: container `prometheus` on the CPU node's Docker
 * network, :9090, route prefix /prometheus (owners.md "Prometheus job names").
 */
export const PROMETHEUS_URL = "http://prometheus:9090/prometheus";
export const DATASOURCE_UID = "hub-prometheus";

const ROOT = `${CPU_CACHE_MOUNT}/grafana`;
/** Host directories on the CPU cache volume: Grafana's database survives a node rebuild. */
export const GRAFANA_DIRS = {
  data: `${ROOT}/data`,
  provisioning: `${ROOT}/provisioning`,
  dashboards: `${ROOT}/dashboards`,
} as const;
/**
 * Paths in Grafana's image (its Dockerfile: GF_PATHS_DATA=/var/lib/grafana,
 * GF_PATHS_PROVISIONING=/etc/grafana/provisioning, whose subdirectories it creates). Only the two
 * subdirectories we fill are mounted, so the image's others (plugins, alerting, ...) stay.
 */
const IN_CONTAINER = { data: "/var/lib/grafana", datasources: "/etc/grafana/provisioning/datasources", providers: "/etc/grafana/provisioning/dashboards", dashboards: "/etc/grafana/dashboards" } as const;

/** The JSON dashboards in the repository (monitoring/grafana/dashboards). */
export const DASHBOARDS_DIR = path.join(__dirname, "..", "monitoring", "grafana", "dashboards");

/**
 * Grafana's documented minimum: 512 MB of memory, 1 CPU (grafana.com/docs/grafana/latest/setup-grafana/installation/,
 * "Hardware recommendations"; read 2026-12-02). The container is limited to the same.
 */
export const GRAFANA_MEMORY_MIB = 512;

export function grafanaRootUrl(hub: HubConfig): string {
  // Without a domain the browser's host is the reserved IP, known only after deploy: Grafana's
  // %(protocol)s://%(domain)s placeholders keep links relative enough to work (it warns about the mismatch).
  return hub.gateway.domain ? `https://${hub.gateway.domain}${GRAFANA_PATH_PREFIX}` : `%(protocol)s://%(domain)s${GRAFANA_PATH_PREFIX}`;
}

export function grafanaSpec(hub: HubConfig): ServiceSpec {
  return {
    name: GRAFANA_CONTAINER,
    role: "grafana",
    program: "grafana",
    node: CPU_NODE_NAME,
    image: GRAFANA_IMAGE,
    // The image's own entrypoint (/run.sh) reads GF_* into grafana.ini's settings.
    command: [],
    env: {
      GF_SERVER_HTTP_PORT: String(GRAFANA_PORT),
      GF_SERVER_ROOT_URL: grafanaRootUrl(hub),
      GF_SERVER_SERVE_FROM_SUB_PATH: "true",
      GF_AUTH_PROXY_ENABLED: "true",
      GF_AUTH_PROXY_HEADER_NAME: GRAFANA_USER_HEADER,
      GF_AUTH_PROXY_HEADER_PROPERTY: "username",
      GF_AUTH_PROXY_AUTO_SIGN_UP: "true",
      GF_AUTH_PROXY_ENABLE_LOGIN_TOKEN: "false",
      // Editors may explore and build their own dashboards; the provisioned ones stay read-only.
      GF_USERS_AUTO_ASSIGN_ORG_ROLE: "Editor",
      GF_USERS_ALLOW_SIGN_UP: "false",
      GF_AUTH_ANONYMOUS_ENABLED: "false",
      GF_AUTH_BASIC_ENABLED: "false",
      GF_AUTH_DISABLE_LOGIN_FORM: "true",
      GF_AUTH_DISABLE_SIGNOUT_MENU: "true",
      // No admin/admin account waiting for someone to find a way to the login form.
      GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION: "true",
      GF_SECURITY_COOKIE_SECURE: hub.gateway.domain ? "true" : "false",
      GF_ANALYTICS_REPORTING_ENABLED: "false",
      GF_ANALYTICS_CHECK_FOR_UPDATES: "false",
      GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES: "false",
      GF_SNAPSHOTS_EXTERNAL_ENABLED: "false",
    },
    secretEnv: {},
    port: GRAFANA_PORT,
    mounts: [
      { hostPath: GRAFANA_DIRS.data, containerPath: IN_CONTAINER.data },
      { hostPath: `${GRAFANA_DIRS.provisioning}/datasources`, containerPath: IN_CONTAINER.datasources, readOnly: true },
      { hostPath: `${GRAFANA_DIRS.provisioning}/dashboards`, containerPath: IN_CONTAINER.providers, readOnly: true },
      { hostPath: GRAFANA_DIRS.dashboards, containerPath: IN_CONTAINER.dashboards, readOnly: true },
    ],
    memoryLimitMiB: GRAFANA_MEMORY_MIB,
    health: {
      path: `${GRAFANA_PATH_PREFIX}api/health`,
      // Grafana's Dockerfile installs curl in both its Alpine and Ubuntu variants.
      test: ["CMD", "curl", "-fsS", "-o", "/dev/null", `http://127.0.0.1:${GRAFANA_PORT}${GRAFANA_PATH_PREFIX}api/health`],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 60,
      retries: 3,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Provisioning (Grafana's file format: apiVersion 1, datasources / providers)

export function datasourcesProvisioning(): Record<string, unknown> {
  return {
    apiVersion: 1,
    datasources: [{ name: "Prometheus", uid: DATASOURCE_UID, type: "prometheus", access: "proxy", url: PROMETHEUS_URL, isDefault: true, editable: false, jsonData: { httpMethod: "POST" } }],
  };
}

export function dashboardsProvisioning(): Record<string, unknown> {
  return {
    apiVersion: 1,
    providers: [
      {
        name: "inference-hub",
        orgId: 1,
        folder: "Inference hub",
        type: "file",
        // The files in the repository are the truth: no edits or deletions from the UI survive.
        disableDeletion: true,
        allowUiUpdates: false,
        updateIntervalSeconds: 30,
        options: { path: IN_CONTAINER.dashboards, foldersFromFilesStructure: false },
      },
    ],
  };
}

export interface DashboardFile {
  readonly file: string;
  readonly dashboard: GrafanaDashboard;
}

/** The fields of Grafana's dashboard JSON this code reads (the full shape is @grafana/schema's Dashboard). */
export interface GrafanaDashboard {
  readonly uid: string;
  readonly title: string;
  readonly panels?: readonly GrafanaPanel[];
  readonly templating?: { readonly list?: readonly { readonly name: string; readonly type: string; readonly query?: unknown }[] };
  readonly [key: string]: unknown;
}
export interface GrafanaPanel {
  readonly title?: string;
  readonly type: string;
  readonly targets?: readonly { readonly expr?: string; readonly refId?: string; readonly [key: string]: unknown }[];
  readonly panels?: readonly GrafanaPanel[];
  readonly [key: string]: unknown;
}

/** Every dashboard in the repository, parsed. */
export function repositoryDashboards(dir = DASHBOARDS_DIR): DashboardFile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => ({ file, dashboard: JSON.parse(readFileSync(path.join(dir, file), "utf8")) as GrafanaDashboard }));
}

/** Every panel query of a dashboard (rows' nested panels included), with where it sits. */
export function dashboardQueries(dashboard: GrafanaDashboard): { readonly panel: string; readonly refId: string; readonly expr: string }[] {
  const out: { panel: string; refId: string; expr: string }[] = [];
  const visit = (panels: readonly GrafanaPanel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (typeof t.expr === "string") out.push({ panel: p.title ?? p.type, refId: t.refId ?? "?", expr: t.expr });
      visit(p.panels);
    }
  };
  visit(dashboard.panels);
  return out;
}

/**
 * Metric names a PromQL expression selects: identifiers followed by `{`, `[`, whitespace, `)`,
 * an operator or the end, that are neither functions, keywords, label names inside braces, nor
 * template variables. A name missing from the catalogue fails a test, so a miss here is loud.
 */
export function metricNamesIn(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const withoutBraces = withoutStrings.replace(/\{[^}]*\}/g, "{}");
  const withoutGrouping = withoutBraces.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const names = new Set<string>();
  for (const m of withoutGrouping.matchAll(/(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?/g)) {
    const [, name, call] = m;
    if (call) continue; // a function
    if (PROMQL_WORDS.has(name)) continue;
    names.add(name);
  }
  return [...names];
}
const PROMQL_WORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "inf", "nan", "Inf", "NaN", "atan2"]);

/** The jobs a stack's Prometheus scrapes (owners.md job names), as the monitoring branch plans them. */
export function scrapedJobs(hub: HubConfig): Set<ScrapeJob> {
  const jobs = new Set<ScrapeJob>(["traefik", "gatekeeper", "prometheus", "alertmanager"]);
  if (hub.tier !== "local") jobs.add("node");
  const vllm = hub.coder.backend === "vllm" || hub.ocr.engine === "deepseek-ocr";
  if (vllm) jobs.add("vllm");
  if (hub.coder.backend === "llama.cpp" || hub.fallbackCoder) jobs.add("llamacpp");
  if (hub.gpu) {
    // The controller runs wherever there are GPU nodes to scale.
    jobs.add("autoscaler");
    if (hub.gpu.size.vendor === "nvidia") jobs.add("dcgm");
  }
  return jobs;
}

/** The jobs a dashboard's queries need, from the catalogue; unknown names are reported, not guessed. */
export function dashboardJobs(dashboard: GrafanaDashboard): { readonly jobs: Set<ScrapeJob>; readonly unknown: string[] } {
  const jobs = new Set<ScrapeJob>();
  const unknown: string[] = [];
  for (const q of dashboardQueries(dashboard)) {
    for (const name of metricNamesIn(q.expr)) {
      const job = jobExporting(name);
      if (job === undefined) unknown.push(name);
      else if (job !== "scrape") jobs.add(job);
    }
  }
  return { jobs, unknown };
}

/** The always-on part of the month (everything but GPU droplets), USD: what the spend panels add to the GPU ledger. */
export function fixedMonthlyUsd(hub: HubConfig): number {
  return Math.round(hub.cost.lines.filter((l) => l.item !== "GPU nodes").reduce((sum, l) => sum + l.monthlyUsd, 0) * 100) / 100;
}

/** Constant template variables the stack fills in (the dashboards hold placeholders). */
export function stackConstants(hub: HubConfig): Record<string, string> {
  return { fixed_monthly_usd: fixedMonthlyUsd(hub).toFixed(2), budget_usd: String(hub.budgetUsd) };
}

/** A dashboard with the stack's constants filled in (constant variables' query and current value). */
export function withConstants(dashboard: GrafanaDashboard, constants: Readonly<Record<string, string>>): GrafanaDashboard {
  const list = dashboard.templating?.list?.map((v) => (v.type === "constant" && Object.hasOwn(constants, v.name) ? { ...v, query: constants[v.name], current: { text: constants[v.name], value: constants[v.name] } } : v));
  return list ? { ...dashboard, templating: { ...dashboard.templating, list } } : dashboard;
}

/**
 * The dashboards a stack provisions: those whose every metric comes from a job this stack scrapes
 * (no GPU dashboard on the cpu tier, no spend dashboard without a controller).
 */
export function provisionedDashboards(hub: HubConfig, all: readonly DashboardFile[] = repositoryDashboards()): DashboardFile[] {
  const scraped = scrapedJobs(hub);
  const constants = stackConstants(hub);
  return all
    .filter(({ dashboard }) => {
      const { jobs, unknown } = dashboardJobs(dashboard);
      return unknown.length === 0 && [...jobs].every((j) => scraped.has(j));
    })
    .map(({ file, dashboard }) => ({ file, dashboard: withConstants(dashboard, constants) }));
}

export const renderProvisioningYaml = (doc: unknown): string => stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });

/** Every file Grafana reads, by host path, for a stack. */
export function grafanaFiles(hub: HubConfig): { readonly path: string; readonly content: string; readonly restartsGrafana: boolean }[] {
  return [
    // Datasources are read at start only; dashboards are polled (updateIntervalSeconds).
    { path: `${GRAFANA_DIRS.provisioning}/datasources/hub.yaml`, content: renderProvisioningYaml(datasourcesProvisioning()), restartsGrafana: true },
    { path: `${GRAFANA_DIRS.provisioning}/dashboards/hub.yaml`, content: renderProvisioningYaml(dashboardsProvisioning()), restartsGrafana: true },
    ...provisionedDashboards(hub).map((d) => ({ path: `${GRAFANA_DIRS.dashboards}/${d.file}`, content: `${JSON.stringify(d.dashboard, null, 2)}\n`, restartsGrafana: false })),
  ];
}
