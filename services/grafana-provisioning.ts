import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { jobExporting, type ScrapeJob } from "../stacks/catalogue/metrics";
import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { DASHBOARDS_DIR, DATASOURCE_UID, GRAFANA_DIRS, IN_CONTAINER, PROMETHEUS_URL } from "./grafana";
import { hubServiceSpecs } from "./index";
import { prometheusConfig } from "./monitoring";

/**
 * What Grafana reads, per stack: its datasource, its dashboards provider, and the dashboards of
 * monitoring/grafana/dashboards whose data this stack collects. Apart from services/grafana.ts so
 * that the route table (which imports Grafana's port and prefix) does not import every service.
 */

// ---------------------------------------------------------------------------------------------
// Provisioning (Grafana's file format: apiVersion 1, datasources / providers)

export function datasourcesProvisioning(): Record<string, unknown> {
  return {
    apiVersion: 1,
    datasources: [
      {
        name: "Prometheus",
        uid: DATASOURCE_UID,
        type: "prometheus",
        access: "proxy",
        url: PROMETHEUS_URL,
        isDefault: true,
        editable: false,
        jsonData: { httpMethod: "POST" },
      },
    ],
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
        // The files are the truth: the UI cannot save over a provisioned dashboard (allowUiUpdates),
        // and a dashboard whose file a tier switch removes is removed from Grafana too (disableDeletion false).
        disableDeletion: false,
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
  readonly templating?: {
    readonly list?: readonly { readonly name: string; readonly type: string; readonly query?: unknown }[];
  };
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
export function dashboardQueries(
  dashboard: GrafanaDashboard,
): { readonly panel: string; readonly refId: string; readonly expr: string }[] {
  const out: { panel: string; refId: string; expr: string }[] = [];
  const visit = (panels: readonly GrafanaPanel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? [])
        if (typeof t.expr === "string") out.push({ panel: p.title ?? p.type, refId: t.refId ?? "?", expr: t.expr });
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
const PROMQL_WORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "bool",
  "and",
  "or",
  "unless",
  "inf",
  "nan",
  "Inf",
  "NaN",
  "atan2",
]);

/**
 * The jobs this stack's Prometheus scrapes: the job names of the prometheus.yml the plan renders
 * (services/monitoring.ts), so a dashboard is provisioned only where its data is collected.
 */
export function scrapedJobs(hub: HubConfig): Set<string> {
  if (!hub.monitoring) return new Set();
  const cpuContainers = hubServiceSpecs(hub)
    .filter((s) => s.node === CPU_NODE_NAME)
    .map((s) => ({ name: s.name, program: s.program, port: s.port }));
  const config = prometheusConfig(hub, cpuContainers) as { scrape_configs: readonly { readonly job_name: string }[] };
  return new Set(config.scrape_configs.map((c) => c.job_name));
}

/** The jobs a dashboard's queries need, from the catalogue; unknown names are reported, not guessed. */
export function dashboardJobs(dashboard: GrafanaDashboard): {
  readonly jobs: Set<ScrapeJob>;
  readonly unknown: string[];
} {
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
  return (
    Math.round(hub.cost.lines.filter((l) => l.item !== "GPU nodes").reduce((sum, l) => sum + l.monthlyUsd, 0) * 100) /
    100
  );
}

/** Constant template variables the stack fills in (the dashboards hold placeholders). */
export function stackConstants(hub: HubConfig): Record<string, string> {
  return { fixed_monthly_usd: fixedMonthlyUsd(hub).toFixed(2), budget_usd: String(hub.budgetUsd) };
}

/** A dashboard with the stack's constants filled in (constant variables' query and current value). */
export function withConstants(
  dashboard: GrafanaDashboard,
  constants: Readonly<Record<string, string>>,
): GrafanaDashboard {
  const list = dashboard.templating?.list?.map((v) =>
    v.type === "constant" && Object.hasOwn(constants, v.name)
      ? { ...v, query: constants[v.name], current: { text: constants[v.name], value: constants[v.name] } }
      : v,
  );
  return list ? { ...dashboard, templating: { ...dashboard.templating, list } } : dashboard;
}

/**
 * The dashboards a stack provisions: those whose every metric comes from a job this stack scrapes
 * (no GPU dashboard on the cpu tier, no spend dashboard without a controller).
 */
export function provisionedDashboards(
  hub: HubConfig,
  all: readonly DashboardFile[] = repositoryDashboards(),
): DashboardFile[] {
  const scraped = scrapedJobs(hub);
  const constants = stackConstants(hub);
  return all
    .filter(({ dashboard }) => {
      const { jobs, unknown } = dashboardJobs(dashboard);
      return unknown.length === 0 && [...jobs].every((j) => scraped.has(j));
    })
    .map(({ file, dashboard }) => ({ file, dashboard: withConstants(dashboard, constants) }));
}

export const renderProvisioningYaml = (doc: unknown): string =>
  stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });

/** Every file Grafana reads, by host path, for a stack. */
export function grafanaFiles(
  hub: HubConfig,
): { readonly path: string; readonly content: string; readonly restartsGrafana: boolean }[] {
  return [
    // Datasources are read at start only; dashboards are polled (updateIntervalSeconds).
    {
      path: `${GRAFANA_DIRS.provisioning}/datasources/hub.yaml`,
      content: renderProvisioningYaml(datasourcesProvisioning()),
      restartsGrafana: true,
    },
    {
      path: `${GRAFANA_DIRS.provisioning}/dashboards/hub.yaml`,
      content: renderProvisioningYaml(dashboardsProvisioning()),
      restartsGrafana: true,
    },
    ...provisionedDashboards(hub).map((d) => ({
      path: `${GRAFANA_DIRS.dashboards}/${d.file}`,
      content: `${JSON.stringify(d.dashboard, null, 2)}\n`,
      restartsGrafana: false,
    })),
  ];
}
